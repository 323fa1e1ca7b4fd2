"""The official files of a model folder: which Hugging Face repository each comes from, and its licence.

One entry per slot of the `--model-dir` layout (`weights.locate`) plus the depth and segmentation models
the controls stage runs. Repository ids, file names and pinned revisions are those NVIDIA's inference
downloads (`packages/cosmos-oss/cosmos_oss/checkpoints_transfer2.py` and `checkpoints.py` in
nvidia-cosmos/cosmos-transfer2.5); the control models are the transformers-format repositories
`controls.models` loads. The network checkpoints come from the control registry's checkpoint UUIDs, so a
modality's file is known wherever its UUID is.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosmos_t2.controls.models import FETCHED_FOLDERS
from cosmos_t2.controls.registry import MODALITIES

COSMOS_REPO = "nvidia/Cosmos-Transfer2.5-2B"
NVIDIA_LICENCE = "NVIDIA Open Model License (gated: accept it on the model page, then `hf auth login`)"
# The repository's folder for each modality (vis is "blur" there).
COSMOS_FOLDERS = {"edge": "edge", "vis": "blur", "depth": "depth", "seg": "seg"}
# Checkpoint UUID -> the revision NVIDIA's inference pins it at.
PINNED_REVISIONS = {
    "61f5694b-0ad5-4ecd-8ad7-c8545627d125": "b67b64abda3801a9aceddbff2bdb86126c06db74",  # edge
    "ba2f44f2-c726-4fe7-949f-597069d9b91c": "eb5325b77d358944da58a690157dd2b8071bbf85",  # vis (blur)
    "626e6618-bfcd-4d9a-a077-1409e2ce353f": "dea7737ca29dd8d9086413c6dc5724b8250a0bb4",  # depth
    "5136ef49-6d8d-42e8-8abf-7dac722a304a": "23057a4167b89de89a4a397fdbf3887994d115eb",  # seg
    "41f07f13-f2e4-4e34-ba4c-86f595acbc20": "bbaeedb2b57cc8b14a44653099e2551adb69dcc7",  # distilled edge
}
# Folder models: only what transformers loads (no duplicate .pt / .bin copies of the weights).
FOLDER_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.jinja", "*.model")


@dataclass(frozen=True)
class OfficialFile:
    """One slot of a model folder and where it comes from."""

    slot: str  # the name in the model folder: "edge.pt", "tokenizer.pth", "text_encoder", ...
    what: str
    repo: str
    revision: str
    filename: str | None  # a file of the repository, or None: the repository as a folder
    licence: str
    modality: str | None = None  # network checkpoints: the control they carry
    distilled: bool = False

    @property
    def is_folder(self) -> bool:
        return self.filename is None

    @property
    def source(self) -> str:
        where = f"{self.repo}/{self.filename}" if self.filename else self.repo
        return f"{where}@{self.revision[:12]}"


@dataclass(frozen=True)
class Selection:
    """What a model folder should hold: the network checkpoints of `modalities`, the VAE, and the rest
    as asked. `control_models`: the depth model for depth, GroundingDINO + SAM2 for seg."""

    modalities: tuple[str, ...] = ("edge", "vis", "depth", "seg")
    distilled: bool = False
    text_encoder: bool = True
    image_encoder: bool = False
    control_models: bool = True


def _checkpoint(modality: str, uuid: str, distilled: bool) -> OfficialFile | None:
    folder = COSMOS_FOLDERS.get(modality)
    if folder is None or uuid not in PINNED_REVISIONS:  # a modality without a published checkpoint
        return None
    prefix = "distilled/general" if distilled else "general"
    return OfficialFile(
        slot=f"{modality}_distilled.pt" if distilled else f"{modality}.pt",
        what=f"Cosmos-Transfer2.5-2B {modality} {'distilled 4-step ' if distilled else ''}checkpoint",
        repo=COSMOS_REPO,
        revision=PINNED_REVISIONS[uuid],
        filename=f"{prefix}/{folder}/{uuid}_ema_bf16.pt",
        licence=NVIDIA_LICENCE,
        modality=modality,
        distilled=distilled,
    )


VAE = OfficialFile(
    slot="tokenizer.pth",
    what="Wan2.1 VAE (the tokenizer), as NVIDIA ships it",
    repo="nvidia/Cosmos-Predict2.5-2B",
    revision="f176dc95b4a70f53ce01c4b302851595e7322b00",
    filename="tokenizer.pth",
    licence="Wan2.1 VAE: Apache-2.0; this copy sits in an NVIDIA Open Model License repository (gated)",
)
TEXT_ENCODER = OfficialFile(
    slot="text_encoder",
    what="Cosmos-Reason1-7B, the text encoder",
    repo="nvidia/Cosmos-Reason1-7B",
    revision="3210bec0495fdc7a8d3dbb8d58da5711eab4b423",
    filename=None,
    licence=NVIDIA_LICENCE,
)


def _hub_folder(slot: str, what: str, repo: str, licence: str) -> OfficialFile:
    """A third-party model taken whole as a folder at its `main` (NVIDIA's inference pins none of these)."""
    return OfficialFile(slot=slot, what=what, repo=repo, revision="main", filename=None, licence=licence)


_CHECK_CARD = "Apache-2.0 (check the model card)"
IMAGE_ENCODER = _hub_folder(
    "image_encoder",
    "SigLIP2 so400m-patch16-naflex, the style-reference encoder",
    "google/siglip2-so400m-patch16-naflex",
    _CHECK_CARD,
)
DEPTH_MODEL = _hub_folder(
    FETCHED_FOLDERS["depth_model_dir"],
    "Depth Anything V2 Small, computes depth controls (`controls --depth-model-dir`)",
    "depth-anything/Depth-Anything-V2-Small-hf",
    "Apache-2.0 for the Small model (Base/Large are CC-BY-NC-4.0; check the model card)",
)
GROUNDING_MODEL = _hub_folder(
    FETCHED_FOLDERS["grounding_model_dir"],
    "GroundingDINO base, boxes for seg controls and mask prompts (`controls`, `masks --grounding-model-dir`)",
    "IDEA-Research/grounding-dino-base",
    _CHECK_CARD,
)
SAM2_MODEL = _hub_folder(
    FETCHED_FOLDERS["seg_model_dir"],
    "SAM2 hiera-large (transformers format), seg controls and mask prompts (`controls`, `masks --seg-model-dir`)",
    "facebook/sam2-hiera-large",
    _CHECK_CARD,
)


def official_files(selection: Selection) -> list[OfficialFile]:
    """The slots `selection` asks for, in the model folder's order (network, VAE, encoders, control models)."""
    out: list[OfficialFile] = []
    for name in selection.modalities:
        entry = MODALITIES.get(name)
        if entry is None:
            continue
        for uuid in entry.checkpoints:
            found = _checkpoint(name, uuid, distilled=False)
            if found is not None:
                out.append(found)
        if selection.distilled:
            for uuid in entry.distilled_checkpoints:
                found = _checkpoint(name, uuid, distilled=True)
                if found is not None:
                    out.append(found)
    out.append(VAE)
    if selection.text_encoder:
        out.append(TEXT_ENCODER)
    if selection.image_encoder:
        out.append(IMAGE_ENCODER)
    if selection.control_models:
        if "depth" in selection.modalities:
            out.append(DEPTH_MODEL)
        if "seg" in selection.modalities:
            out.extend([GROUNDING_MODEL, SAM2_MODEL])
    return out
