import subprocess
import sys

import pytest

from audioscene.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audioscene", *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_synth_writes_a_set(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--n-clips", "3", "--seed", "1", "--snr-db", "5"]) == 0
    assert len(list((tmp_path / "s" / "audio").glob("*.flac"))) == 3
    assert "wrote 3 clips" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["synth", "--out", "x", "--n-clips", "-3"], "positive integer"),
    (["synth", "--out", "x", "--snr-db", "loud"], "LOW,HIGH"),
    (["synth", "--out", "x", "--bogus"], "unrecognized arguments: --bogus"),
    (["nonsense"], "invalid choice"),
])
def test_bad_flags_give_one_line(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)


def test_library_error_gives_one_line(tmp_path):
    assert_one_line_error(run_cli("synth", "--out", str(tmp_path / "s"), "--snr-db", "10,0"), "low <= high")


def test_every_command_has_help_with_example():
    for command in ("synth", "train", "evaluate", "demo"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "example" in result.stdout and "audioscene " + command in result.stdout
