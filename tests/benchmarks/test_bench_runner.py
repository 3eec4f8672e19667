"""The leaderboard runner on a reduced smoke configuration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from anomalib_maa.benchmark import parse_leaderboard, run_leaderboard
from anomalib_maa.benchmark.report import COLUMNS
from anomalib_maa.benchmark.runner import run_job


def test_all_rows_present(smoke_run):
    config, output, rows = smoke_run
    assert len(config.jobs()) == 3
    keys = {(row["job_id"], row["score"]) for row in rows}
    assert keys == {
        ("Maa-tiny__tiny__seed0", "model"),
        ("Maa-tiny__tiny__seed0", "pixel_l1"),
        ("Maa-tiny__tiny__seed0", "markov_l1"),
        ("Maa-tiny__tiny__seed0", "fmd"),
        ("Padim-random-r18__tiny__seed0", "model"),
        ("Broken__tiny__seed0", "model"),
    }
    saved = json.loads((output / "results.json").read_text())
    csv = pd.read_csv(output / "results.csv")
    assert len(saved) == len(csv) == 6
    assert list(csv.columns) == COLUMNS
    for row in rows:
        if row["status"] == "ok":
            assert 0.0 <= row["image_auroc"] <= 1.0
            assert row["n_test"] == 8 and row["n_train"] == 8
            assert row["fit_s"] > 0 and row["test_images_per_s"] > 0 and row["peak_rss_mb"] > 0
    padim = next(row for row in rows if row["model"] == "Padim")
    assert padim["weights"].startswith("random resnet18")
    assert (output / "roc_tiny.png").is_file()
    assert (output / "scores" / "Maa-tiny__tiny__seed0__fmd.csv").is_file()


def test_table3_rows_share_one_model(smoke_run):
    _, _, rows = smoke_run
    maa = {row["score"]: row for row in rows if row["model"] == "Maa"}
    assert {row["fit_s"] for row in maa.values()} == {maa["model"]["fit_s"]}  # one training
    # The fmd variant recomputes MAA's own score on the same model: same ranking.
    assert abs(maa["fmd"]["image_auroc"] - maa["model"]["image_auroc"]) < 1e-9


def test_failing_job_recorded_without_losing_others(smoke_run):
    _, output, rows = smoke_run
    broken = next(row for row in rows if row["model"] == "Broken")
    assert broken["status"] == "failed"
    assert "not_an_argument" in broken["error"]
    assert (output / "logs" / "Broken__tiny__seed0.log").is_file()
    assert sum(row["status"] == "ok" for row in rows) == 5
    markdown = (output / "leaderboard.md").read_text()
    assert "Failed jobs" in markdown and "Broken__tiny__seed0" in markdown


def test_rerun_skips_finished_jobs(smoke_run, tmp_path):
    config, original, _ = smoke_run
    output = tmp_path / "copy"
    shutil.copytree(original, output)
    ran = []

    def spy(job, out, trainer):
        ran.append(job.job_id)
        return run_job(job, out, trainer)

    rows = run_leaderboard(config, output, progress=False, job_runner=spy)
    assert ran == ["Broken__tiny__seed0"]  # finished jobs skipped; the failed one is retried
    assert len(rows) == 6

    ran.clear()
    rows = run_leaderboard(
        config, output, force=True, progress=False, job_runner=lambda job, out, tr: ran.append(job.job_id) or []
    )
    assert len(ran) == 3  # --force runs everything again


def test_markdown_parses_and_ranks(smoke_run):
    _, output, rows = smoke_run
    tables = parse_leaderboard((output / "leaderboard.md").read_text())
    assert list(tables) == ["tiny"]
    ranked = tables["tiny"]
    assert [entry["Rank"] for entry in ranked] == ["1", "2"]
    by_model = {row["model"]: row["image_auroc"] for row in rows if row["score"] == "model" and row["status"] == "ok"}
    expected = sorted(by_model, key=lambda model: -by_model[model])
    assert [entry["Model"] for entry in ranked] == expected


def test_cli_runs_a_subset_of_seeds_and_presets(monkeypatch, tmp_path):
    """--seeds and --presets narrow the configuration (e.g. to run seeds on two machines, then merge)."""
    import anomalib_maa.benchmark.runner as runner
    from anomalib_maa.benchmark.cli import main

    seen = {}

    def fake_run(config, output, force=False, progress=True):  # noqa: ARG001
        seen["config"] = config
        return []

    monkeypatch.setattr(runner, "run_leaderboard", fake_run)
    config = str(Path(__file__).resolve().parents[2] / "benchmarks" / "configs" / "ksdd_ablation.yaml")
    assert main(["--config", config, "--output", str(tmp_path), "--seeds", "1", "2", "--presets", "memory-none"]) == 0
    assert seen["config"].seeds == (1, 2)
    assert [model.preset for model in seen["config"].models] == ["memory-none"]
    assert [job.job_id for job in seen["config"].jobs()] == [
        "Maa-memory-none__ksdd__seed1",
        "Maa-memory-none__ksdd__seed2",
    ]
    assert main(["--config", config, "--output", str(tmp_path), "--presets", "no-such-preset"]) == 2


def test_leaderboard_csv_has_one_row_per_run_with_the_published_columns(smoke_run):
    _, output, rows = smoke_run
    table = pd.read_csv(output / "leaderboard.csv")
    for column in ("dataset", "model", "preset", "seed", "image_AUROC", "pixel_AUROC", "fit_s"):
        assert column in table.columns
    ok_main = [row for row in rows if row["status"] == "ok" and row["score"] == "model"]
    assert len(table) == len(ok_main) == 2  # score variants and the failed job are not leaderboard rows
    maa = table[table.model == "Maa"].iloc[0]
    main = next(row for row in ok_main if row["model"] == "Maa")
    assert maa.image_AUROC == main["image_auroc"] and maa.fit_s == main["fit_s"]
