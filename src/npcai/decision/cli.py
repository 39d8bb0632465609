"""``npcai recommend SUBCOMMAND``: apply a treatment-decision study to patients.

A thin dispatcher: each study's recommendation lives in its own module of this package that
defines ``register(app: typer.Typer) -> None`` and adds one subcommand to :data:`app`
(``residual``: study 002's CCRT / IC+CCRT / IBT rule, :mod:`npcai.decision.cli_residual`).
"""
from __future__ import annotations

import importlib

import typer

__all__ = ["app", "register", "SUBCOMMAND_MODULES"]

app = typer.Typer(help="Recommend a treatment with a finished decision study (research use only).",
                  no_args_is_help=True)

#: one module per study's recommendation, each with ``register(app)``
SUBCOMMAND_MODULES: list[str] = [
    "npcai.decision.cli_residual",     # npcai recommend residual (study 002)
    "npcai.decision.cli_decision",     # npcai recommend decision (study 004)
]


def register(root: typer.Typer) -> None:
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(app)
    root.add_typer(app, name="recommend")
