"""``anomalib-maa export`` prints a handful of lines (was ~3,650: 420 "Replaced initializer" lines, twice each)."""

from __future__ import annotations

import subprocess
import sys


def test_openvino_export_prints_a_handful_of_lines_each_once(tiny_run, tmp_path):
    command = [sys.executable, "-m", "anomalib_maa.cli", "export", "--ckpt_path", str(tiny_run.ckpt)]
    command += ["--export_type", "openvino", "--export_root", str(tmp_path / "export")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert (tmp_path / "export" / "weights" / "openvino" / "model.xml").is_file()
    lines = output.splitlines()
    assert len(lines) <= 30, output
    assert "Replaced initializer" not in output
    assert "FutureWarning" not in output
    assert output.count("Exported model to") == 1
