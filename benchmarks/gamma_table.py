"""Recall and false-alarm rate of MAA at several Pauta γ, from a finished leaderboard run.

The leaderboard stores each job's raw test scores (``scores/<job>.csv``) and its Pauta report
(``runs/<job>/**/pauta_threshold.json``, with the mean μ and standard deviation σ of the scores of
the defect-free training images), so every γ (threshold ``T = μ + γσ``) is evaluated from the same
run, without re-training or re-scoring. ``--method lognormal`` (``T = exp(μ_log + γσ_log)`` of the
log scores) and ``--method empirical`` (``T`` = the Φ(γ) quantile) need the training images' scores
themselves, which the post-processor keeps in the checkpoint (run with ``keep_checkpoints: true``).
The rules are the post-processor's own (:mod:`anomalib_maa.post_processing.rules`).
Prints a Markdown table (mean ± sd over seeds) and writes
``gamma_table.md`` and ``gamma_table.csv`` into the run folder.

Example:
    python benchmarks/gamma_table.py --results results/ksdd_results --gammas 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anomalib_maa.post_processing.rules import normal_threshold, threshold_from_scores


def training_scores(results: Path, job_id: str) -> np.ndarray:
    """The defect-free training images' scores kept by the Pauta post-processor in the checkpoint."""
    checkpoints = sorted((results / "runs" / job_id).rglob("*.ckpt"))
    if not checkpoints:
        msg = f"No checkpoint under {results / 'runs' / job_id}: run the leaderboard with keep_checkpoints: true"
        raise FileNotFoundError(msg)
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)["state_dict"]
    return state["post_processor.train_scores"].double().numpy()


def threshold(method: str, gamma: float, report: dict, train: np.ndarray | None) -> float:
    """The image threshold of one rule, by the post-processor's own rules (the normal one from the report's μ, σ)."""
    if method == "normal":
        return normal_threshold(report["image"]["mean"], report["image"]["std"], gamma)
    return threshold_from_scores(train, method, gamma)


def job_rates(results: Path, job_id: str, gammas: list[float], method: str = "normal") -> list[dict]:
    """Recall and false-alarm rate of one job at each γ."""
    reports = sorted((results / "runs" / job_id).rglob("pauta_threshold.json"))
    if not reports:
        msg = f"No pauta_threshold.json under {results / 'runs' / job_id}: was the job a MAA/Pauta run?"
        raise FileNotFoundError(msg)
    report = json.loads(reports[-1].read_text())
    scores = pd.read_csv(results / "scores" / f"{job_id}.csv")
    train = training_scores(results, job_id) if method != "normal" else None
    raw = scores["score"].to_numpy(dtype=np.float64)
    check = (raw > report["image"]["threshold"]).astype(int)
    if not np.array_equal(check, scores["pred_label"].to_numpy().astype(int)):
        msg = f"{job_id}: the stored scores are not the raw scores its threshold labelled"
        raise ValueError(msg)
    labels = scores["gt_label"].to_numpy().astype(bool)
    rows = []
    for gamma in gammas:
        flagged = raw > threshold(method, gamma, report, train)
        rows.append(
            {
                "job_id": job_id,
                "method": method,
                "gamma": gamma,
                "recall": float(flagged[labels].mean()),
                "false_alarm_rate": float(flagged[~labels].mean()),
                "n_defective": int(labels.sum()),
                "n_good": int((~labels).sum()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True, help="output folder of benchmarks/leaderboard.py")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--model", default="Maa", help="model name in results.csv")
    parser.add_argument("--method", choices=["normal", "lognormal", "empirical"], default="normal")
    args = parser.parse_args()
    table = pd.read_csv(args.results / "results.csv")
    jobs = table[(table.model == args.model) & (table.score == "model") & (table.status == "ok")]
    if jobs.empty:
        msg = f"No finished {args.model} jobs in {args.results / 'results.csv'}"
        raise SystemExit(msg)
    rows = []
    for job in jobs.itertuples():
        for row in job_rates(args.results, job.job_id, args.gammas, args.method):
            rows.append({**row, "preset": job.preset, "seed": job.seed})
    frame = pd.DataFrame(rows)
    suffix = "" if args.method == "normal" else f"_{args.method}"
    frame.to_csv(args.results / f"gamma_table{suffix}.csv", index=False)
    lines = [f"Pauta rule: {args.method}", ""]
    lines += ["| preset | γ | recall (defective) | false-alarm rate (good) | seeds |", "|---|---|---|---|---|"]
    for (preset, gamma), group in frame.groupby(["preset", "gamma"], sort=True):
        recall, fa = group["recall"], group["false_alarm_rate"]
        sd = lambda s: f" ± {s.std(ddof=1):.3f}" if len(s) > 1 else ""  # noqa: E731
        lines.append(
            f"| {preset} | {gamma:g} | {recall.mean():.3f}{sd(recall)} | {fa.mean():.3f}{sd(fa)} | {len(group)} |"
        )
    text = "\n".join(lines) + "\n"
    (args.results / f"gamma_table{suffix}.md").write_text(text)
    print(text)  # noqa: T201


if __name__ == "__main__":
    main()
