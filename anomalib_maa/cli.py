"""``anomalib-maa``: anomalib's command line with the MAA plugin loaded.

Every anomalib subcommand works as with ``anomalib`` (``train``, ``fit``, ``test``, ``predict``,
``export``, ...). On top of that:

* model names are matched case-insensitively among anomalib's models and the plugin's, so
  ``--model maa``, ``--model Maa`` and ``model: maa`` in a YAML config all give
  :class:`anomalib_maa.Maa` (and ``--model padim`` gives ``Padim``);
* ``--seed_everything N`` seeds every RNG before the model is built (anomalib 2.7's own CLI accepts the option
  but never applies it, so its runs are not reproducible); the default ``True`` draws a seed, logs it and
  writes it into the saved config;
* ``anomalib-maa demo [--output DIR]`` generates a small sample dataset and trains and tests a
  fast MAA preset on it, offline, in about a minute on two cores;
* ``anomalib-maa predict --ckpt_path MODEL --data_path IMAGES [--output DIR] [--overwrite]`` scores
  an image or a folder with a checkpoint or an exported model (``.pt``, ``.onnx``, OpenVINO
  ``.xml``) and writes ``predictions.csv`` and overlay PNGs (:mod:`anomalib_maa.deploy.cli`);
  anomalib's form (``--model ... --data ...``) still runs anomalib's predict;
* ``anomalib-maa export --ckpt_path MODEL.ckpt --export_type onnx`` needs no ``--model`` for a MAA
  checkpoint, and refuses a checkpoint of another model with a clear message;
* every model's run gets :func:`~anomalib_maa.callbacks.data_callbacks` (every file checked once before the
  first batch, 16-bit images read scaled, validation skipped without a validation set, no empty run folder after
  a failure);
* a bad argument or unusable file (:class:`~anomalib_maa.errors.InputError`) or a missing file is printed as one
  ``error: ...`` line (exit status 2), ``--model maaa`` names the closest model, each log line is printed once and
  the import-time FutureWarnings of timm and anomalib's dinov2 package are not shown (:mod:`anomalib_maa.console`).

Example:
    ``anomalib-maa train --config configs/maa_cpu.yaml --data.root sample_data``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

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


def _seed_from_config(cli) -> None:  # noqa: ANN001
    """Apply ``--seed_everything`` (int, or ``True`` for a drawn seed) before the classes are instantiated."""
    from lightning.pytorch import seed_everything

    subcommand = cli.config.get("subcommand")
    config = cli.config.get(str(subcommand)) if subcommand else cli.config
    seed = config.get("seed_everything") if config is not None and hasattr(config, "get") else None
    if seed is None or seed is False:
        return
    config["seed_everything"] = seed_everything(None if seed is True else int(seed), workers=True)


def _seeded_cli_class():  # noqa: ANN202
    from anomalib.cli.cli import AnomalibCLI

    from anomalib_maa.callbacks import data_callbacks

    class SeededAnomalibCLI(AnomalibCLI):
        """anomalib's CLI that applies ``--seed_everything`` and adds the plugin's data callbacks to any model."""

        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            _seed_from_config(self)

        def instantiate_engine(self) -> None:
            """Build anomalib's engine, with :func:`~anomalib_maa.callbacks.data_callbacks` for every model."""
            super().instantiate_engine()
            self.engine._cache.args.setdefault("callbacks", []).extend(data_callbacks())  # noqa: SLF001

    return SeededAnomalibCLI


def _known_models() -> list[str]:
    from anomalib.models.components import AnomalibModule

    return [path.rsplit(".", 1)[1] for path in _typehints.get_all_subclass_paths(AnomalibModule)]


def _check_model_name(args: Sequence[str]) -> None:
    """Refuse ``--model NAME`` that is no known model, in one line naming the closest (``maaa`` -> ``maa``)."""
    from anomalib_maa.console import unknown_model_message
    from anomalib_maa.errors import InputError

    for index, arg in enumerate(args):
        name = arg.split("=", 1)[1] if arg.startswith("--model=") else None
        if arg == "--model" and index + 1 < len(args):
            name = args[index + 1]
        if name is None or Path(name).suffix in {".yaml", ".yml", ".json"} or name.startswith(("{", "[")):
            continue
        message = unknown_model_message(name, _known_models())
        if message:
            raise InputError(message)


def _install_name_resolution() -> None:
    _typehints.resolve_class_path_by_name = _resolve_class_path_case_insensitive


def main(argv: Sequence[str] | None = None) -> None:
    """Run anomalib's CLI (or the plugin's ``demo`` and ``predict`` subcommands) with the plugin loaded."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        from anomalib_maa.demo import main as demo_main

        demo_main(args[1:])
        return
    if args and args[0] == "predict":
        from anomalib_maa.deploy.cli import is_plugin_predict, predict_main

        if is_plugin_predict(args[1:]):
            predict_main(args[1:])
            return
    if args and args[0] == "export":
        from anomalib_maa.deploy.cli import prepare_export_args

        args = ["export", *prepare_export_args(args[1:])]
    from anomalib_maa.console import configure_logging, one_line_error, quiet_third_party_warnings

    quiet_third_party_warnings()
    _install_name_resolution()
    configure_logging()
    try:
        _check_model_name(args)
        _seeded_cli_class()(args)
    except Exception as error:
        message = one_line_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
