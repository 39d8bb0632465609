"""The one exception type that means "the user's input is wrong" (exit code 2 at the CLI)."""

__all__ = ["NpcaiError"]


class NpcaiError(Exception):
    """Bad input the user can fix: the message is one line naming the file, patient or
    column and what to do. The CLI prints it as ``error: <message>`` and exits with code 2
    (a traceback only with ``--debug``).

    Examples:
        >>> raise NpcaiError("clinical.csv: column 'pfs_event' has value 3 for patient H017; "
        ...                  "events must be 0 or 1")  # doctest: +SKIP
    """
