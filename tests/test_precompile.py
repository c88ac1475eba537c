"""`python -m monitor.precompile`: the kernels a run calls are compiled in one process, before its ranks start."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.outputs import stored_pixels
from monitor.precompile import main
from monitor.processing import radial_search, spotfinder
from sources import calibration

SHIPPED = Path(__file__).resolve().parent.parent / "monitor.yaml"


def test_the_shipped_run_kernels_are_compiled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SHIPPED)]) == 0
    for kernel in (calibration._calibrate_rows, radial_search._accumulate, spotfinder._candidates,
                   spotfinder._integrate, stored_pixels._store):
        assert kernel.signatures, kernel
    assert "compiled and cached" in capsys.readouterr().out


def test_a_configuration_it_cannot_read_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("processing_layer:\n  pipeline: CrystallographyPipeline\n")
    assert main([str(broken)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"monitor.precompile: {broken}:1: ") and "missing key" in error and "\n" not in error
