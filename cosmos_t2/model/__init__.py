"""The Cosmos-Transfer2.5 network: config, DiT backbone, control branch, checkpoint loading."""

from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet, resample_mask_to_latent

__all__ = ["ControlInput", "TransferConfig", "TransferNet", "resample_mask_to_latent"]
