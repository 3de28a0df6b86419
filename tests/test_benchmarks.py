"""Every benchmark runs (in its quick mode: tiny sizes, seconds), so a change of the package that
breaks one fails here, not in a later reader's `make bench`."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))


def test_every_benchmark_is_covered():
    assert len(SCRIPTS) >= 10 and (BENCHMARKS / "estimate_audioset.py").is_file()


@pytest.mark.parametrize("script", SCRIPTS + ["estimate_audioset.py"])
def test_the_benchmark_runs_in_its_quick_mode(script, tmp_path):
    args = [] if script == "estimate_audioset.py" else ["--quick"]
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()  # it printed its figures
