"""The one exception type that means "the user's input is wrong" (exit code 2 at the CLI)."""

__all__ = ["NpcaiError", "root_os_error"]


class NpcaiError(Exception):
    """Bad input the user can fix: the message is one line naming the file, patient or
    column and what to do. The CLI prints it as ``error: <message>`` and exits with code 2
    (a traceback only with ``--debug``).

    Examples:
        >>> raise NpcaiError("clinical.csv: column 'pfs_event' has value 3 for patient H017; "
        ...                  "events must be 0 or 1")  # doctest: +SKIP
    """


def root_os_error(exc: OSError) -> OSError:
    """The OSError in ``exc``'s chain that carries the errno (``exc`` itself if none does).

    Some libraries (pydicom, PIL) re-raise a file-system fault as a new exception of the same
    type whose message holds a whole traceback and whose errno is lost; the CLI and
    :mod:`npcai.fsutil` look through it to report "No space left on device" in one line.
    """
    seen = exc
    while seen.errno is None:
        nxt = seen.__cause__ or seen.__context__
        if not isinstance(nxt, OSError):
            return exc
        seen = nxt
    return seen
