"""Fitting the Pauta statistics from defect-free scores, and reporting the fit.

:class:`PautaFit` sets the buffers of :class:`~anomalib_maa.post_processing.threshold.PautaThreshold` from scores
given directly (:meth:`~PautaFit.fit_scores`) or from a model scoring its training normals
(:meth:`~PautaFit.fit_from_model`, through :func:`~anomalib_maa.post_processing.scoring.score_normals`), and
logs and writes the report (:mod:`~anomalib_maa.post_processing.pauta_report`). When to fit during a Lightning
run is :class:`~anomalib_maa.post_processing.PautaPostProcessor`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningModule, Trainer
from torch.utils.data import DataLoader

from anomalib_maa.post_processing.pauta_report import (
    TestScores,
    build_report,
    log_report,
    warn_if_not_normal,
    write_files,
)
from anomalib_maa.post_processing.pixels import PixelAccumulator
from anomalib_maa.post_processing.scoring import score_normals
from anomalib_maa.post_processing.threshold import PautaThreshold

__all__ = ["PautaFit"]


class PautaFit(PautaThreshold):
    """The statistics and the report of :class:`~anomalib_maa.post_processing.PautaPostProcessor` (see there)."""

    def __init__(self, results_dir: str | Path | None = None, save_report: bool = True, **rule: Any) -> None:
        super().__init__(**rule)
        self.results_dir = Path(results_dir) if results_dir is not None else None
        self.save_report = save_report
        self._test_scores = TestScores()
        self.n_non_finite_scores = 0
        """Defect-free images of the latest fit whose score was NaN or inf (left out of the statistics)."""

    # ------------------------------------------------------------------ scoring with the model

    # ------------------------------------------------------------------ statistics

    def fit_scores(
        self,
        image_scores: torch.Tensor | np.ndarray,
        anomaly_maps: torch.Tensor | np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Set the statistics from anomaly scores of defect-free images (no Lightning needed).

        Args:
            image_scores: Raw image scores, shape ``(N,)``.
            anomaly_maps: Raw anomaly maps of the same images (any shape with ``N`` first), or
                ``None`` for image-level models.

        Returns:
            The report dict (also kept in :attr:`report`).
        """
        scores = _to_numpy(image_scores)
        pixel = PixelAccumulator()
        if anomaly_maps is not None:
            pixel.update(torch.as_tensor(anomaly_maps))
        report = self._set_statistics(scores, pixel)
        self._warn_if_not_normal()
        return report

    def _set_statistics(self, scores: np.ndarray, pixel: PixelAccumulator) -> dict[str, Any]:
        finite = np.isfinite(scores)
        self.n_non_finite_scores = int(finite.size - finite.sum())
        scores = scores[finite]
        if scores.size == 0:
            msg = "No finite anomaly scores of defect-free images to fit the Pauta threshold on."
            raise RuntimeError(msg)
        nan = float("nan")
        std = float(np.std(scores, ddof=1)) if scores.size > 1 else 0.0
        with torch.inference_mode(False), torch.no_grad():
            device = self.image_mean.device
            self.image_mean.copy_(torch.tensor(float(np.mean(scores))))
            self.image_std.copy_(torch.tensor(std))
            self.image_min.copy_(torch.tensor(float(scores.min())))
            self.image_max.copy_(torch.tensor(float(scores.max())))
            self.train_scores = torch.as_tensor(scores, dtype=torch.float32).to(device)
            mean, std_pixel, quantiles, low, high = pixel.result()
            self.pixel_mean.copy_(torch.tensor(mean if mean is not None else nan))
            self.pixel_std.copy_(torch.tensor(std_pixel if std_pixel is not None else nan))
            self.pixel_min.copy_(torch.tensor(low if low is not None else nan))
            self.pixel_max.copy_(torch.tensor(high if high is not None else nan))
            if quantiles is not None:
                self.pixel_quantiles.copy_(torch.as_tensor(quantiles, dtype=torch.float32))
            else:
                self.pixel_quantiles.fill_(nan)
        self._update_thresholds()
        return self.build_report()

    def build_report(self) -> dict[str, Any]:
        """Summarise the fitted statistics, the rule and the normality test as plain data.

        Returns:
            The report dict (also kept in :attr:`report`); NaN values are ``None``.
        """
        self.report = build_report(self)
        return self.report

    def _warn_if_not_normal(self) -> None:
        warn_if_not_normal(self.report, self._gamma, self._method)

    def fit_from_model(
        self,
        pl_module: LightningModule,
        trainer: Trainer | None = None,
        dataloader: DataLoader | None = None,
    ) -> dict[str, Any]:
        """Score defect-free images with the model in eval mode and set the statistics.

        Memory-bank models (PaDiM, PatchCore) are fitted first through their guarded ``fit()``.
        Without ``dataloader`` the images come from the trainer's datamodule (``train_data`` or
        ``val_data`` following :attr:`stats_source`) read in order with the test-time
        augmentations, or from the trainer's dataloaders. Only images with ``gt_label == 0`` are
        used. The model's pre-processing transform is applied here, as at test time.

        Under a distributed strategy (DDP) and without ``dataloader``, every rank must call this
        (the trainer hooks do): rank 0's model state is broadcast, each rank scores a disjoint
        contiguous shard of the images, and the scores are gathered, so every rank gets the
        statistics a single process would compute from the checkpoint. See ``docs/scaling.md``.

        Args:
            pl_module: The anomalib module whose ``model`` produces the scores.
            trainer: The trainer (for the datamodule, dataloaders and the report folder).
            dataloader: Explicit dataloader of defect-free images (overrides the trainer's data).

        Returns:
            The report dict.
        """
        scores, pixel = score_normals(pl_module, trainer, self.stats_source, dataloader)
        report = self._set_statistics(scores, pixel)
        self._log(trainer)
        self._warn_if_not_normal()
        if trainer is not None and self.save_report:
            self.write_report(trainer)
        return report

    # ------------------------------------------------------------------ reporting

    def _log(self, trainer: Trainer | None) -> None:
        log_report(self.report, trainer, self.stats_source, self.gamma)

    def results_folder(self, trainer: Trainer | None) -> Path:
        """Folder for the report: ``results_dir`` or the trainer's ``default_root_dir``."""
        if self.results_dir is not None:
            return self.results_dir
        if trainer is not None and getattr(trainer, "default_root_dir", None):
            return Path(trainer.default_root_dir)
        return Path.cwd()

    def write_report(self, trainer: Trainer | None = None, folder: str | Path | None = None) -> Path:
        """Write ``pauta_threshold.json`` and ``pauta_histogram.png``.

        Adds the test scores by class (and the false-alarm rate and recall at the threshold)
        when a test run collected them.

        Args:
            trainer: Trainer used to find the run folder.
            folder: Explicit folder; overrides :meth:`results_folder`.

        Returns:
            The path of the JSON file.
        """
        if trainer is not None and getattr(trainer, "global_rank", 0) != 0:
            return Path()
        report = self.build_report()
        section, test_scores, test_labels = self._test_scores.summary(report["image"]["threshold"])
        if section is not None:
            report["test"] = section
        self.report = report
        out = Path(folder) if folder is not None else self.results_folder(trainer)
        train_scores = self.train_scores.detach().cpu().double().numpy()
        return write_files(report, train_scores, out, test_scores, test_labels)


def _to_numpy(values: torch.Tensor | np.ndarray | Iterable[float]) -> np.ndarray:
    return torch.as_tensor(values).detach().double().cpu().reshape(-1).numpy()
