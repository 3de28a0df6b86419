import pytest
from helpers import assert_one_line_error, run_cli

from audioscene.cli import build_parser, main


def test_synth_writes_a_set(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--n-clips", "3", "--seed", "1", "--snr-db", "5"]) == 0
    assert len(list((tmp_path / "s" / "audio").glob("*.flac"))) == 3
    assert "wrote 3 clips" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["synth", "--out", "x", "--n-clips", "-3"], "expected an integer >= 1"),
    (["synth", "--out", "x", "--snr-db", "loud"], "LOW,HIGH"),
    (["synth", "--out", "x", "--bogus"], "unrecognized arguments: --bogus"),
    (["nonsense"], "invalid choice"),
])
def test_bad_flags_give_one_line(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)


def test_library_error_gives_one_line(tmp_path):
    assert_one_line_error(run_cli("synth", "--out", str(tmp_path / "s"), "--snr-db", "10,0"), "low <= high")


def test_every_command_has_help_with_example(capsys):
    commands = build_parser()._subparsers._group_actions[0].choices
    assert len(commands) >= 14
    for command in commands:
        with pytest.raises(SystemExit) as exit_code:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_code.value.code == 0, command
        assert "example" in out and f"audioscene {command} " in out, command
