"""The ``predict`` and ``export`` additions of the ``anomalib-maa`` command (``anomalib_maa.cli``).

``anomalib-maa predict --ckpt_path MODEL --data_path IMAGES [--output DIR] [--overwrite]`` runs
:func:`~anomalib_maa.deploy.predict_folder`: a CSV and overlay PNGs for an image or a folder, with
a Lightning checkpoint or an exported model (``.pt``, ``.onnx``, OpenVINO ``.xml``). anomalib's own
form (``--model ... --data ... [--config ...]``, without ``--data_path``) still goes to anomalib's
predict subcommand, which writes anomalib's visualisations but no CSV.

``anomalib-maa export --ckpt_path MODEL.ckpt --export_type onnx`` may leave out ``--model`` when
the checkpoint is a MAA checkpoint, and a checkpoint of another model passed with ``--model maa``
is refused with a clear message before anomalib tries to load it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["is_plugin_predict", "predict_main", "prepare_export_args"]

logger = logging.getLogger(__name__)

_ANOMALIB_PREDICT_FLAGS = ("--data", "--config", "-c", "--model")


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith((flag + "=", flag + ".")) for arg in args)


def is_plugin_predict(args: Sequence[str]) -> bool:
    """Whether ``predict`` arguments are for the plugin's predict rather than anomalib's.

    anomalib's form is recognised by ``--data``, ``--config``/``-c`` or ``--model`` without
    ``--data_path``; everything else (including ``--help``) is the plugin's.

    Args:
        args: The arguments after ``predict``.
    """
    if _has_flag(args, "--data_path"):
        return True
    return not any(_has_flag(args, flag) for flag in _ANOMALIB_PREDICT_FLAGS)


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalib-maa predict",
        description=(
            "Score an image or a folder with a MAA checkpoint (.ckpt) or an exported model (.pt, .onnx, "
            "OpenVINO .xml); write predictions.csv (image_path, score, normalized_score, label, threshold, "
            "error) and overlay PNGs of the anomaly map and the predicted mask. anomalib's own predict "
            "(--model ... --data ...) is used when --data_path is not given."
        ),
    )
    parser.add_argument("--ckpt_path", "--model_path", dest="model_path", required=True, help="Model file")
    parser.add_argument("--data_path", required=True, help="An image, or a folder searched recursively")
    parser.add_argument("--output", default="results/predict", help="Output folder (default: results/predict)")
    parser.add_argument("--overwrite", action="store_true", help="Replace existing output files")
    parser.add_argument("--batch_size", type=int, default=8, help="Images per forward pass (default: 8)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, or an OpenVINO device (default: cpu)")
    parser.add_argument("--no_overlays", action="store_true", help="Write the CSV only")
    parser.add_argument("--no_progress", action="store_true", help="Hide the progress bar")
    alpha = parser.add_mutually_exclusive_group()
    alpha.add_argument(
        "--drop_alpha",
        action="store_true",
        help="Accept RGBA / gray+alpha images and drop the alpha channel, as training does (the default)",
    )
    alpha.add_argument("--refuse_alpha", action="store_true", help="Refuse images with an alpha channel")
    return parser


def predict_main(args: Sequence[str]) -> None:
    """Run the plugin's ``predict`` subcommand.

    Args:
        args: The arguments after ``predict``.

    Raises:
        SystemExit: With status 2 and a one-line message for a missing or wrong model file, a
            missing data path, an image with a wrong channel count, or existing outputs.
    """
    from anomalib_maa.deploy.predict import PredictionError, predict_folder

    options = _predict_parser().parse_args(list(args))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rows = predict_folder(
            options.model_path,
            options.data_path,
            output=options.output,
            overwrite=options.overwrite,
            batch_size=options.batch_size,
            device=options.device,
            overlays=not options.no_overlays,
            progress=not options.no_progress,
            drop_alpha=not options.refuse_alpha,
        )
    except (PredictionError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"anomalib-maa predict: error: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from error
    anomalous = sum(1 for row in rows if row["label"] == 1)
    errors = sum(1 for row in rows if row["error"])
    print(  # noqa: T201
        f"{len(rows)} image(s): {anomalous} anomalous, {errors} unreadable. "
        f"CSV: {Path(options.output) / 'predictions.csv'}"
    )


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def prepare_export_args(args: Sequence[str]) -> list[str]:
    """Check the checkpoint of an ``export`` and add ``--model`` for a MAA checkpoint if missing.

    Args:
        args: The arguments after ``export``.

    Returns:
        The arguments to pass on to anomalib's export subcommand.

    Raises:
        SystemExit: With status 2 when the checkpoint is missing, or is not a MAA checkpoint while
            the model is MAA (given or implied).
    """
    args = list(args)
    ckpt = _flag_value(args, "--ckpt_path")
    if ckpt is None or not ckpt.endswith(".ckpt"):
        return args
    model = _flag_value(args, "--model")
    if model is not None and model.rsplit(".", 1)[-1].lower() != "maa":
        return args  # another anomalib model: anomalib's export as is
    if _has_flag(args, "--config") or _has_flag(args, "-c"):
        return args
    from anomalib_maa.deploy.predict import PredictionError, check_maa_checkpoint

    try:
        if not Path(ckpt).is_file():
            msg = f"Checkpoint not found: {ckpt}"
            raise FileNotFoundError(msg)
        check_maa_checkpoint(Path(ckpt))
    except (PredictionError, FileNotFoundError) as error:
        print(f"anomalib-maa export: error: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from error
    if model is None:
        args = ["--model", "anomalib_maa.Maa", *args]
    return args
