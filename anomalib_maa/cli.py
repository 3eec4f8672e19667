"""``anomalib-maa``: anomalib's command line with the MAA plugin loaded.

Every anomalib subcommand works as with ``anomalib`` (``train``, ``fit``, ``test``, ``predict``,
``export``, ...). On top of that:

* model names are matched case-insensitively among anomalib's models and the plugin's, so
  ``--model maa``, ``--model Maa`` and ``model: maa`` in a YAML config all give
  :class:`anomalib_maa.Maa` (and ``--model padim`` gives ``Padim``);
* ``anomalib-maa demo [--output DIR]`` generates a small sample dataset and trains and tests a
  fast MAA preset on it, offline, in about a minute on two cores.

Example:
    ``anomalib-maa train --config configs/maa_cpu.yaml --data.root sample_data``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jsonargparse import _typehints

import anomalib_maa  # noqa: F401  (registers Maa as an AnomalibModule subclass)

_original_resolve = _typehints.resolve_class_path_by_name


def _resolve_class_path_case_insensitive(cls, name: str) -> str:  # noqa: ANN001
    """Resolve a short class name as jsonargparse does, then case-insensitively among subclasses."""
    class_path = _original_resolve(cls, name)
    if "." in class_path or not isinstance(cls, type):
        return class_path
    wanted = name.replace("_", "").lower()
    matches = {path for path in _typehints.get_all_subclass_paths(cls) if path.rsplit(".", 1)[1].lower() == wanted}
    return matches.pop() if len(matches) == 1 else class_path


def _install_name_resolution() -> None:
    _typehints.resolve_class_path_by_name = _resolve_class_path_case_insensitive


def main(argv: Sequence[str] | None = None) -> None:
    """Run anomalib's CLI (or the ``demo`` subcommand) with the plugin loaded."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        from anomalib_maa.demo import main as demo_main

        demo_main(args[1:])
        return
    from anomalib.cli.cli import AnomalibCLI
    from anomalib.loggers import configure_logger

    _install_name_resolution()
    configure_logger()
    AnomalibCLI(args)


if __name__ == "__main__":
    main()
