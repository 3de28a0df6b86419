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


def test_train_flags_are_the_config_fields():
    """Every TrainConfig field (and front-end setting) has a flag; a field without one fails here."""
    import dataclasses

    from audioscene.features import FrontendConfig
    from audioscene.train import TrainConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions} - {"help", "config", "resume"}
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.name != "frontend"}
    fields |= {f"frontend.{f.name}" for f in dataclasses.fields(FrontendConfig)}
    assert dests == fields


def test_flags_reach_the_config(tmp_path, monkeypatch):
    from audioscene import cli, train

    seen = {}
    monkeypatch.setattr(train, "train", lambda config: seen.setdefault("config", config) and tmp_path)
    assert cli.main(["train", "--data", "a", "--eval-data", "b", "--out", str(tmp_path / "r"), "--no-amp",
                     "--betas", "0.9,0.98", "--compile", "--sample-rate", "32000", "--n-fft", "1024",
                     "--f-max", "14000", "--labels", "l.csv", "--micro-batch-size", "4"]) == 0
    config = seen["config"]
    assert (config.train_data, config.eval_data, config.labels_csv, config.out_dir) == ("a", "b", "l.csv",
                                                                                          str(tmp_path / "r"))
    assert (config.amp, config.compile, config.betas, config.micro_batch_size) == (False, True, (0.9, 0.98), 4)
    assert (config.frontend.sample_rate, config.frontend.n_fft, config.frontend.f_max) == (32000, 1024, 14000.0)
    assert config.channels_last and config.epochs == 50  # flags left out keep the defaults
