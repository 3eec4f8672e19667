"""What the ``anomalib-maa`` command prints: each log line once, no warnings a user cannot act on, short errors.

- :func:`configure_logging`: one handler per log line. anomalib's ``configure_logger`` adds a ``RichHandler`` next
  to the ``StreamHandler`` of ``logging.basicConfig`` (and another next to Lightning's own), so every line was
  printed twice. The ONNX graph passes' INFO lines (hundreds of "Replaced initializer ..." per export) are hidden.
- :func:`quiet_third_party_warnings`: the ``FutureWarning`` warnings that timm and anomalib's dinov2 package raise on
  import, on every command. Only the command filters them (:func:`is_cli_process`), never the tests.
- :func:`one_line_error`: an :class:`~anomalib_maa.errors.InputError` (a bad argument, an unusable file or folder)
  or a missing file is printed as one ``error: ...`` line, even when jsonargparse wrapped it in a long message.
- :func:`unknown_model_message`: ``--model maaa`` names the closest known model.

This module imports nothing heavy, so the package can call it before anomalib is imported.
"""

from __future__ import annotations

import difflib
import logging
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "configure_logging",
    "is_cli_process",
    "one_line_error",
    "quiet_third_party_warnings",
    "unknown_model_message",
]

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
"""anomalib's log format."""

_CHATTY_LOGGERS = ("onnx_ir", "onnxscript")
"""Loggers that report every graph rewrite at INFO (e.g. 420 "Replaced initializer" lines per ONNX export)."""

_THIRD_PARTY_WARNINGS = (
    r"Importing from timm\.models\.\w+ is deprecated",
    r"The anomalib\.models\.components\.dinov2 package is deprecated",
)


def is_cli_process(argv: Sequence[str] | None = None) -> bool:
    """Whether this Python process runs the ``anomalib-maa`` command (or ``python -m anomalib_maa.cli``).

    Args:
        argv: The interpreter's original arguments; defaults to ``sys.orig_argv``.

    Returns:
        ``True`` for the command, ``False`` for pytest, notebooks and other programs importing the package.
    """
    argv = list(sys.orig_argv if argv is None else argv)
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "anomalib_maa.cli":
        return True
    return any(Path(arg).name == "anomalib-maa" for arg in argv[:2])


def quiet_third_party_warnings() -> None:
    """Ignore the import-time ``FutureWarning`` of timm and of anomalib's dinov2 package (nothing a user can do)."""
    for message in _THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def configure_logging(level: int = logging.INFO) -> None:
    """Log every line once, in anomalib's format, on the root logger and Lightning's; quiet the ONNX passes.

    Args:
        level: Level of the root logger. Defaults to ``logging.INFO``.
    """
    import lightning.pytorch  # noqa: F401  (Lightning installs its own handler when imported: import first)

    formatter = logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    root.setLevel(level)
    for name in ("", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("anomalib_maa").setLevel(logging.NOTSET)  # the plugin's lines follow the root level


def _chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def one_line_error(error: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or ``None`` to let the traceback show.

    Args:
        error: The exception that ended the command.

    Returns:
        ``InputError``'s message (also when jsonargparse quoted it inside its own error), a
        ``FileNotFoundError``'s, or anomalib's "Found 0 images in <folder>"; ``None`` for anything else.
    """
    from anomalib_maa.errors import InputError

    for link in _chain(error):
        if isinstance(link, InputError | FileNotFoundError):
            return str(link).splitlines()[0] if str(link) else type(link).__name__
        if isinstance(link, RuntimeError) and str(link).startswith("Found 0 "):  # anomalib: an empty image folder
            return str(link)
    last = InputError.last_message
    text = str(error)
    if last and " ".join(last.split()) in " ".join(text.split()):
        return last
    return None


def unknown_model_message(name: str, known: Iterable[str]) -> str | None:
    """One line for a ``--model`` name that matches no known model, with the closest names; else ``None``.

    Args:
        name: The name given (a short name, not a dotted class path or a config file).
        known: Short names of the known models (``Maa``, ``Padim``, ...).

    Returns:
        ``"Unknown model 'maaa': did you mean 'maa'?"`` (or the list of known names when none is close), or
        ``None`` when the name is known (case-insensitive).
    """
    names = {model.lower(): model for model in known}
    wanted = name.replace("_", "").lower()
    if wanted in names or "." in name or "/" in name:
        return None
    close = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.6)
    if close:
        return f"Unknown model {name!r}: did you mean {' or '.join(repr(match) for match in close)}?"
    return f"Unknown model {name!r}; known models: {', '.join(sorted(names))}."
