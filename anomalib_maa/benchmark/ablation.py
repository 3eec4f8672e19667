"""MAA's Table III ablation: three image scores computed from the *same* trained model.

* ``pixel_l1``: mean absolute pixel residual ``|x - G(x)|``;
* ``markov_l1``: mean absolute difference of the Markov feature matrices ``|f(x) - f(G(x))|``;
* ``fmd``: the Fréchet Markov Distance (MAA's own score);
* ``local_fmd``: the largest FMD over windows of ``score_window x score_window`` Markov patches;
* ``map_max``: the maximum of the localisation map.

A tiled model (``tile_size``) is scored as it scores itself: every variant is computed per tile,
and an image takes the mean over its tiles for the L1 variants (the image mean) and the maximum for
the others (its worst tile).

Each variant is thresholded like MAA's post-processor, with the same Pauta rule (``normal``,
``lognormal`` or ``empirical``, :mod:`anomalib_maa.post_processing.rules`) and the same γ or α, fitted
on the variant's scores of the defect-free training images (the normal rule with γ = 3 when the
model's post-processor is not a :class:`~anomalib_maa.PautaPostProcessor`), so the label metrics compare
the scores on equal terms and the ``fmd`` row labels as the model does.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from anomalib_maa.metrics.fmd import local_maximum
from anomalib_maa.post_processing import DEFAULT_GAMMA, PautaPostProcessor, threshold_from_scores

__all__ = ["maa_score_variants", "threshold_rule_of", "variant_scores"]

MEAN_OVER_TILES = frozenset({"pixel_l1", "markov_l1"})


def _loader(dataset: Any, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=dataset.collate_fn)


@torch.inference_mode()
def variant_scores(model: Any, dataset: Any, variants: tuple[str, ...], batch_size: int = 16) -> dict[str, Any]:
    """Score a dataset with each variant.

    Args:
        model: A trained :class:`anomalib_maa.Maa` (its ``pre_processor`` transform is applied).
        dataset: An anomalib dataset.
        variants: Names among ``pixel_l1``, ``markov_l1``, ``fmd``, ``local_fmd``, ``map_max``.
        batch_size: Images per forward pass.

    Returns:
        ``{"scores": {variant: (N,) tensor}, "labels": (N,), "paths": [...], "seconds": float}``.
    """
    torch_model = model.model.eval()
    transform = getattr(model.pre_processor, "transform", None)
    device = next(torch_model.parameters()).device
    generator, discriminator = torch_model.generator, torch_model.discriminator
    scores: dict[str, list[torch.Tensor]] = {variant: [] for variant in variants}
    labels, paths = [], []
    start = time.perf_counter()
    for batch in _loader(dataset, batch_size):
        image = batch.image.to(device)
        if transform is not None:
            image = transform(image)
        image = torch_model.match_channels(image)
        n_images = image.shape[0]
        if torch_model.tiler is not None:
            image = torch_model.tiler.tile(image)
        reconstruction = generator(image)
        f_input = discriminator.markov_features(image)
        f_reconstruction = discriminator.markov_features(reconstruction)
        for variant in variants:
            value = _score(variant, torch_model, image, reconstruction, f_input, f_reconstruction)
            value = value.reshape(n_images, -1)  # (images, tiles)
            value = value.mean(dim=1) if variant in MEAN_OVER_TILES else value.amax(dim=1)
            scores[variant].append(value.float().cpu())
        labels.append(batch.gt_label.long().cpu())
        paths.extend(str(path) for path in batch.image_path)
    return {
        "scores": {variant: torch.cat(values) for variant, values in scores.items()},
        "labels": torch.cat(labels),
        "paths": paths,
        "seconds": time.perf_counter() - start,
    }


def _score(
    variant: str,
    torch_model: Any,
    image: torch.Tensor,
    reconstruction: torch.Tensor,
    f_input: torch.Tensor,
    f_reconstruction: torch.Tensor,
) -> torch.Tensor:
    """One variant's score per image, shape ``(B,)``."""
    if variant == "pixel_l1":
        return (image - reconstruction).abs().flatten(1).mean(1)
    if variant == "markov_l1":
        return (f_input - f_reconstruction).abs().flatten(1).mean(1)
    if variant == "fmd":
        return torch_model.fmd(f_input, f_reconstruction)
    if variant == "local_fmd":
        return local_maximum(torch_model.fmd, f_input, f_reconstruction, torch_model.score_window)
    if variant == "map_max":
        return torch_model.anomaly_map_generator(image, reconstruction).flatten(1).amax(1)
    msg = f"Unknown score variant {variant!r}"
    raise ValueError(msg)


def threshold_rule_of(post_processor: Any) -> dict[str, Any]:  # noqa: ANN401
    """``method``, ``gamma`` and ``false_alarm_rate`` of a model's Pauta post-processor (else normal, γ = 3)."""
    if isinstance(post_processor, PautaPostProcessor):
        return {
            "method": post_processor.method,
            "gamma": post_processor.gamma,
            "false_alarm_rate": post_processor.false_alarm_rate,
        }
    return {"method": "normal", "gamma": DEFAULT_GAMMA, "false_alarm_rate": None}


def maa_score_variants(model: Any, datamodule: Any, variants: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Score the training and test sets with each variant and threshold each with the Pauta rule.

    Args:
        model: A trained :class:`anomalib_maa.Maa`.
        datamodule: The datamodule it was trained on (set up: ``train_data`` and ``test_data``).
        variants: The variants to report.

    Returns:
        Per variant: ``scores``, ``labels``, ``pred_labels``, ``paths``, ``threshold``, ``gamma``, ``method`` and the
        test-set scoring time ``seconds``.

    Raises:
        TypeError: If the model is not MAA-like (no generator and discriminator).
    """
    torch_model = getattr(model, "model", None)
    if not (hasattr(torch_model, "generator") and hasattr(torch_model, "discriminator")):
        msg = f"score_variants need an MAA model (generator + Markov discriminator), got {type(model).__name__}"
        raise TypeError(msg)
    rule = threshold_rule_of(model.post_processor)
    batch_size = getattr(datamodule, "eval_batch_size", 16)
    train = variant_scores(model, datamodule.train_data, variants, batch_size)
    test = variant_scores(model, datamodule.test_data, variants, batch_size)
    results = {}
    for variant in variants:
        threshold = threshold_from_scores(train["scores"][variant].double().numpy(), **rule)
        scores = test["scores"][variant]
        results[variant] = {
            "scores": scores,
            "labels": test["labels"],
            "pred_labels": (scores.double() > threshold).long(),
            "paths": test["paths"],
            "threshold": threshold,
            "gamma": rule["gamma"],
            "method": rule["method"],
            "seconds": test["seconds"],
        }
    return results
