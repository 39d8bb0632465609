"""The ``npcai`` command line.

Thin by design: each concern's commands live in its package (``npcai/<package>/cli.py``)
and only parse options, call the library and print. This module builds the root app,
registers those commands, and turns every fault into one line on stderr: bad input
(:class:`npcai.errors.NpcaiError`), usage errors and file-system faults exit with code 2,
Ctrl-C with 130 (a full traceback with ``--debug``).
"""
from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import sys

import typer

from npcai.errors import NpcaiError, root_os_error

__all__ = ["app", "main", "Interrupted", "os_error_message"]

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
    "npcai.radiomics.cli",        # npcai radiomics extract|train
    "npcai.stats.cli",            # npcai evaluate, npcai compare, npcai table1
    "npcai.explain.cli",          # npcai explain
    "npcai.studies.cli",          # npcai study run
    "npcai.serve.cli",            # npcai serve
    "npcai.survival.cli",         # npcai survival km|cox|stepwise|nomogram|calibrate|risk-groups|subgroups|match|cindex
    "npcai.decision.cli",         # npcai recommend residual|...
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
    """Entry point of the ``npcai`` console script; returns the exit code.

    Every fault ends in one line on stderr: bad input (:class:`NpcaiError`), a usage error
    (unknown option, a value of the wrong type) and a file-system fault (permission, full
    disk, a file where a folder is expected) print ``error: ...`` and exit 2; Ctrl-C prints
    one line and exits 130. ``--debug`` shows the traceback instead.
    """
    from typer import exceptions as typer_exc
    from typer._click import exceptions as click_exc

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    _configure_logging(debug)
    try:
        with _interrupt_as_exception():
            code = app(args=args, prog_name="npcai", standalone_mode=False)
    except NpcaiError as exc:
        if debug:
            raise
        return _fail(str(exc))
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()
        return exc.exit_code
    except click_exc.UsageError as exc:
        if debug:
            raise
        return _fail(_usage_message(exc, args))
    except typer_exc.Abort:
        return _fail("aborted")
    except Interrupted:
        if debug:
            raise
        print(f"interrupted; {_rerun_hint(args)}", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            raise
        exc = root_os_error(exc)
        if exc.filename is None and exc.errno is not None:   # e.g. a full disk reported by write()
            out = _option_value(args, ("--out", "-o"))
            if out is not None:
                exc = OSError(exc.errno, exc.strerror or str(exc), out)
        return _fail(os_error_message(exc))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


def _fail(message: str) -> int:
    """Print ``error: message`` as one line on stderr; the exit code of bad input (2)."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return 2


# ------------------------------------------------------------------ Ctrl-C
class Interrupted(BaseException):
    """Ctrl-C (SIGINT) while a command runs.

    Not a KeyboardInterrupt on purpose: Lightning turns a KeyboardInterrupt into
    ``exit(1)``; this passes through it, so every ``atomic_output_dir`` still removes its
    temporary folder and the CLI exits with 130.
    """


@contextlib.contextmanager
def _interrupt_as_exception():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _rerun_hint(args: list[str]) -> str:
    """What to do after Ctrl-C: ``--resume`` for the commands that can continue."""
    cmd = typer.main.get_command(app)
    for word in args:                      # descend through the groups: npcai segment train ...
        sub = getattr(cmd, "commands", {}).get(word)
        if sub is None:
            break
        cmd = sub
    resumable = any("--resume" in getattr(p, "opts", ()) for p in cmd.params)
    if resumable and "--resume" not in args:
        return "rerun the same command with --resume to continue"
    if resumable:
        return "rerun the same command to continue"
    return "nothing was kept; rerun the same command"


# ------------------------------------------------------------------ usage errors
_TYPE_WORDS = {"valid integer": "is not an integer", "valid number": "is not a number",
               "valid boolean": "is not true/false", "valid float": "is not a number"}


def _usage_message(exc, args: list[str]) -> str:
    """One line for a click/typer usage error, naming the option and the bad value."""
    from typer._click import exceptions as click_exc

    command = exc.ctx.command_path if exc.ctx is not None else "npcai"
    see = f"see '{command} --help'"
    if isinstance(exc, click_exc.MissingParameter):
        param = exc.param
        if param is not None and getattr(param, "param_type_name", "") == "option":
            return f"{param.opts[0]}: missing; this option is required ({see})"
        name = (param.name if param is not None else str(exc)).upper()
        return f"{name}: missing argument ({see})"
    if isinstance(exc, click_exc.BadParameter):
        param = exc.param
        if param is not None and getattr(param, "param_type_name", "") == "option":
            hint = max(param.opts, key=len)
            value = _option_value(args, param.opts)
        else:
            hint = (param.name.upper() if param is not None else "value")
            value = None
        reason = exc.message.rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        shown = f"{value!r}" if value is not None else "the value"
        for key, words in _TYPE_WORDS.items():
            if key in reason:
                return f"{hint}: {shown} {words} ({see})"
        return f"{hint}: {shown}: {reason} ({see})"
    if isinstance(exc, click_exc.NoSuchOption):
        near = f"; did you mean {', '.join(sorted(exc.possibilities))}?" if exc.possibilities else ""
        return f"{exc.option_name}: no such option of '{command}'{near} ({see})"
    return f"{exc.format_message()} ({see})"


def _option_value(args: list[str], opts) -> str | None:
    """The value given to an option on the command line (``--opt VALUE`` or ``--opt=VALUE``)."""
    for i, a in enumerate(args):
        for o in opts:
            if a == o and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(o + "="):
                return a[len(o) + 1:]
    return None


# ------------------------------------------------------------------ file-system faults
def os_error_message(exc: OSError) -> str:
    """``<path>: <reason>; <what to do>`` for a file-system fault the library did not explain."""
    exc = root_os_error(exc)
    path = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        path = f"{exc.filename} -> {exc.filename2}"
    reason = exc.strerror or str(exc)
    advice = {
        errno.EACCES: "check the permissions of this path or write somewhere else",
        errno.EPERM: "check the permissions of this path or write somewhere else",
        errno.EROFS: "the file system is read-only; write somewhere else",
        errno.ENOSPC: "the disk is full; free some space or write to another disk, then rerun",
        errno.EDQUOT: "the disk quota is exhausted; free some space or write elsewhere, then rerun",
        errno.EISDIR: "a folder is where a file is expected; give the path of a file",
        errno.ENOTDIR: "a file is where a folder is expected; give the path of a folder",
        errno.ENOENT: "it does not exist; check the path",
        errno.EEXIST: "it already exists; choose another path",
        errno.ENAMETOOLONG: "choose a shorter path",
        errno.EIO: "the device reported an input/output error; check the disk and rerun",
    }.get(exc.errno, "check the path and rerun")
    return f"{path}: {reason}; {advice}" if path is not None else f"{reason}; {advice}"


def _console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _console_main()
