"""Lazy package exports, so that ``npcai --help`` does not import torch or scipy.

A package's ``__init__`` lists which submodule defines each public name; the submodule is
imported on first attribute access (PEP 562).
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """Return ``(__getattr__, __dir__)`` for ``package`` given ``{name: submodule}``."""

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            # cache on the package; this also wins over a submodule of the same name
            # (e.g. npcai.stats.table1 the function vs the module)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
