"""Reading a local weights file (``--weights PATH``), shared by classifiers and segmenters."""
from __future__ import annotations

from pathlib import Path

from npcai.errors import NpcaiError

__all__ = ["read_state_dict"]


def read_state_dict(path: str | Path) -> dict:
    """The state dict in a ``.pth``/``.pt``/``.bin``/``.safetensors`` file.

    Unwraps the usual containers (``state_dict``, ``model``, ``model_state_dict``, e.g. a
    Lightning checkpoint); fails with one line naming the file when it is missing or unreadable.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: weights file not found; pass --weights PATH to a local "
                         f"state dict or safetensors file, or --no-pretrained")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / wrong format
        raise NpcaiError(f"{path}: could not read weights ({type(exc).__name__}: {exc}); "
                         f"pass a torch state dict or safetensors file") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise NpcaiError(f"{path}: not a state dict; pass a torch state dict or safetensors file")
    return state
