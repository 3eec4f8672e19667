"""The plugin's error for inputs a user can fix: an argument, a file or a folder that cannot be used.

Every :class:`InputError` carries one sentence that names the input and says how to fix it, so the
``anomalib-maa`` command prints it as one line (``error: ...``) instead of a traceback. It is a ``ValueError``,
so code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["DatasetError", "InputError"]


class InputError(ValueError):
    """An argument, file or folder the user gave cannot be used; the message names it and the fix.

    The message of the latest one raised is kept in :attr:`last_message`: jsonargparse quotes a constructor's
    error inside its own message without chaining it, and the command still finds it there.
    """

    last_message: str | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        InputError.last_message = str(args[0]) if args else None


class DatasetError(InputError):
    """A file or folder of a dataset cannot be used; the message names it.

    Importable from :mod:`anomalib_maa.data` too, where the datamodules raise it.
    """
