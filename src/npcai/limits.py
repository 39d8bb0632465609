"""Upper limits on sizes the user chooses, checked before anything is allocated.

An image side of 100000 px asks for a 40 GB array per slice: the command would fail deep
inside numpy, OpenCV or torch after minutes, or take the machine down. Every option that
sets an image side goes through :func:`check_image_side`, which refuses it with the limit
and the reason.

Examples:
    >>> check_image_side(224, what="--size", minimum=32)
    224
"""
from __future__ import annotations

from npcai.errors import NpcaiError

__all__ = ["MAX_IMAGE_SIDE", "check_image_side"]

#: Largest image side (px) any npcai option accepts: 4x the 512 px matrix of a high-resolution
#: MR or CT slice. One float32 slice of this side is 64 MB; a batch of 32 is 2 GB.
MAX_IMAGE_SIDE = 2048


def check_image_side(value: int, *, what: str, minimum: int, hint: str = "") -> int:
    """Return ``value`` as an int if ``minimum <= value <= MAX_IMAGE_SIDE``; else a one-line error.

    Args:
        value: the requested side in pixels.
        what: how the user gave it (e.g. ``"--size"``), named in the message.
        minimum: the smallest side that works for this use.
        hint: what is typical, appended to the message (e.g. ``"224 is typical"``).
    """
    side = int(value)
    extra = f"; {hint}" if hint else ""
    if side < minimum:
        raise NpcaiError(f"{what} {side}: too small; use at least {minimum} pixels{extra}")
    if side > MAX_IMAGE_SIDE:
        gb = side * side * 4 / 1e9
        raise NpcaiError(f"{what} {side}: too large; at most {MAX_IMAGE_SIDE} pixels (one float32 image "
                         f"of {side} x {side} px takes {gb:,.0f} GB, and clinical slices are at most "
                         f"512-1024 px){extra}")
    return side
