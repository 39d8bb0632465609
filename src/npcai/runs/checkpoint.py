"""Checkpoints without pickle execution, written without ever leaving a truncated file.

Loading uses ``torch.load(..., weights_only=True)``: only tensors, containers and plain
values are unpickled, never arbitrary objects, so a checkpoint handed over with a run folder
cannot run code. A checkpoint that needs more (a pickled object of any other class) is
refused with one line naming the file.

Saving writes to a hidden temporary name *in the destination folder* and renames it over the
final name (same filesystem, atomic); on any error the temporary file is removed, so a full
or read-only disk never leaves a ``best.ckpt`` that looks complete.
:func:`safe_checkpoint_io` plugs both into Lightning's ``Trainer(plugins=[...])``.

Examples:
    >>> state = load_checkpoint("runs/r1/checkpoints/best.ckpt")   # doctest: +SKIP
    >>> sorted(state)[:3]                                          # doctest: +SKIP
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from npcai.errors import NpcaiError

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_weights", "safe_checkpoint_io"]


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to ``.<name>.tmp-<pid>`` beside ``path``, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; refuse one that needs arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: checkpoint missing; train the run again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        why = next((line for line in lines if "global" in line.lower()), None)
        if why is None:
            raise NpcaiError(f"{path}: not a readable checkpoint ({lines[0][:200] if lines else 'unpickling failed'}); "
                             "train the run again") from None
        raise NpcaiError(f"{path}: refused: the checkpoint holds pickled objects that are not plain "
                         f"weights ({why[:200]}); only load checkpoints written by npcai, or train the run "
                         "again") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NpcaiError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200]}); "
                         "train the run again") from None
    if not isinstance(state, dict):
        raise NpcaiError(f"{path}: not a checkpoint (a {type(state).__name__}, not a dict); train the run again")
    return state


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> int:
    """Load a Lightning checkpoint's network weights into ``model``; returns its epoch.

    The weights are the ``ema_model.*`` ones (the weight average that validation scored) when
    the run trained with ``ema``, else ``model.*``."""
    state = load_checkpoint(path)
    sd = state.get("state_dict")
    if not isinstance(sd, dict):
        raise NpcaiError(f"{path}: no state_dict in the checkpoint; train the run again")
    prefix = "ema_model." if any(k.startswith("ema_model.") for k in sd) else "model."
    weights = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise NpcaiError(f"{path}: weights do not fit the run's network ({str(exc).splitlines()[0][:200]}); "
                         "the checkpoint belongs to another run") from None
    return int(state.get("epoch", -1))


def safe_checkpoint_io():
    """A Lightning ``CheckpointIO`` plugin: atomic save in the destination folder, ``weights_only``
    load (built on demand, so that prediction does not import Lightning)."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class SafeCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
            save_checkpoint(checkpoint, path)

        def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
            return load_checkpoint(path)

    return SafeCheckpointIO()
