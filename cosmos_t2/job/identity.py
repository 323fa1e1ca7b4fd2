"""A job's content identities and the environment they depend on: what the sidecar records so a result can be
re-checked (`cosmos-t2 reproduce`).

Identities (`identity`): sha256 of the mp4 file, of the decoded YUV planes (the H.264 decode is exact by the
standard, so this one does not depend on the container, its metadata or on swscale), and of the latents
(each chunk's fp32 tensor bytes in order, shape first: independent of the safetensors file around them).

Environment (`environment`): everything those bytes were measured to depend on: the CPU's SIMD flags and the
pins in force (`cosmos_t2.reproducible`), the `av` wheel with its libavcodec and the x264 build that wrote the
stream (read from the stream's own SEI), torch and, on CUDA, the GPU, driver, CUDA, cuDNN, the attention kernel
and deterministic mode. `reproduce` names the fields that differ when a rerun's bytes do.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import av
import torch

from cosmos_t2.reproducible import numerics_record
from cosmos_t2.weights.hashes import sha256_file

_X264_SEI = re.compile(rb"x264 - core (\d+[^ ]*(?: r\d+ [0-9a-f]+)?)")
SEI_SEARCH_BYTES = 1 << 16  # the SEI sits in the first access unit, near the start of a faststart mp4's mdat


def latents_sha256(chunks: list[torch.Tensor]) -> str:
    """sha256 of the per-chunk latents as the latents file stores them (fp32, contiguous), shapes included."""
    digest = hashlib.sha256()
    for chunk in chunks:
        tensor = chunk.detach().float().cpu().contiguous()
        digest.update(repr(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def yuv_sha256(path: Path) -> str:
    """sha256 of every decoded frame's Y, U and V planes (visible area only, no line padding)."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            digest.update(frame.to_ndarray().tobytes())  # the stream's own format (yuv420p): no conversion
    return digest.hexdigest()


def x264_build(path: Path) -> str | None:
    """The x264 build that encoded the stream ("165 r3222 b35605a"), from the SEI x264 writes; None if absent."""
    with open(path, "rb") as f:
        head = f.read(SEI_SEARCH_BYTES)
    found = _X264_SEI.search(head)
    if found is None:  # a long moov before mdat: look through the whole file
        found = _X264_SEI.search(Path(path).read_bytes())
    return found.group(1).decode() if found else None


def video_identity(path: Path) -> dict[str, str | None]:
    return {"video_sha256": sha256_file(path), "yuv_sha256": yuv_sha256(path)}


def environment(
    device: torch.device, acceleration: dict[str, Any] | None, video: Path | None
) -> dict[str, Any]:
    """The environment of a job's bytes (see the module doc); `acceleration`: the sidecar's section."""
    env: dict[str, Any] = {
        "cpu": numerics_record(),
        "av": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "x264": x264_build(video) if video is not None else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "deterministic": bool(acceleration and acceleration.get("deterministic")),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "driver": _driver_version(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "attention_kernel": (acceleration or {}).get("attention_kernel"),
        }
    return env


def _driver_version() -> str | None:
    """The NVIDIA kernel driver's version ("580.95.05"), else the CUDA version the driver supports."""
    try:
        found = re.search(r"Kernel Module\s+([\d.]+)", Path("/proc/driver/nvidia/version").read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        version = int(torch._C._cuda_getDriverVersion())  # e.g. 13000
    except (AttributeError, RuntimeError):
        return None
    return f"cuda {version // 1000}.{version % 1000 // 10}"
