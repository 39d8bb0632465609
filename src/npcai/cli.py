"""The ``npcai`` command line.

Thin by design: each concern's commands live in its package (``npcai/<package>/cli.py``)
and only parse options, call the library and print. This module builds the root app,
registers those commands, and turns :class:`npcai.errors.NpcaiError` into one line on
stderr with exit code 2 (a full traceback with ``--debug``).
"""
from __future__ import annotations

import importlib
import logging
import sys

import typer

from npcai.errors import NpcaiError

__all__ = ["app", "main"]

app = typer.Typer(
    name="npcai",
    help="From a hospital's NPC MRI export to validated deep-learning prognosis models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = [
    "npcai.cohort.cli_phantom",   # npcai phantom
    "npcai.cohort.cli_ingest",    # npcai ingest, npcai validate
    "npcai.imaging.cli",          # npcai roi build|preview
    "npcai.segmentation.cli",     # npcai segment train|evaluate|compare|predict
    "npcai.models.cli",           # npcai train, npcai ensemble
    "npcai.stats.cli",            # npcai evaluate, npcai compare, npcai table1
    "npcai.explain.cli",          # npcai explain
    "npcai.studies.cli",          # npcai study run
    "npcai.serve.cli",            # npcai serve
    "npcai.survival.cli",         # npcai survival km|cox|stepwise|nomogram|calibrate|risk-groups|subgroups|match|cindex
]


@app.callback()
def _root() -> None:
    """From a hospital's NPC MRI export to validated deep-learning prognosis models.

    Add --debug to any command for a full traceback instead of the one-line error.
    """


@app.command()
def version() -> None:
    """Print the npcai version."""
    from npcai import __version__

    typer.echo(__version__)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _configure_logging(debug: bool) -> None:
    from rich.logging import RichHandler
    from rich.console import Console

    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=debug,
                          markup=False, rich_tracebacks=debug)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in ("lightning", "lightning.pytorch", "pytorch_lightning", "matplotlib", "PIL",
                  "timm", "fsspec", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``npcai`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    _configure_logging(debug)
    try:
        # standalone mode: click/typer print their own usage errors and call sys.exit
        app(args=args, prog_name="npcai", standalone_mode=True)
    except NpcaiError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _console_main()
