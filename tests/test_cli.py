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


@pytest.mark.parametrize("args, line", [
    (["train", "--data", "d", "--width", "8"], "--width was replaced: use --model-arg width=8"),
    (["train", "--width=16", "--epochs", "2"], "--width was replaced: use --model-arg width=16"),
    (["train", "--stem-stride", "2"], "--stem-stride was replaced: use --model-arg stem_stride=2"),
    (["train", "--width"], "--width was replaced: use --model-arg width=N"),
    (["train", "--channels-last"], "--channels-last is gone: channels_last is on by default"),
])
def test_retired_flags_say_what_replaces_them(args, line):
    from audioscene.cli.arguments import RETIRED_FLAGS

    assert_one_line_error(run_cli(*args), line)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert not set(RETIRED_FLAGS) & set(train._option_string_actions)  # none of them came back


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
    """Every TrainConfig field, recipe setting and front-end setting has a flag; a field without one
    fails here."""
    import dataclasses

    from audioscene.features import FrontendConfig
    from audioscene.recipe import ingredient_settings
    from audioscene.train import TrainConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions} - {"help", "config", "resume"}
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("frontend", "recipe_settings")}
    fields |= set(ingredient_settings())
    fields |= {f"frontend.{f.name}" for f in dataclasses.fields(FrontendConfig)}
    assert dests == fields


def test_flags_reach_the_config(tmp_path, monkeypatch):
    from audioscene import cli, train

    seen = {}
    monkeypatch.setattr(train, "train", lambda config, **_: seen.setdefault("config", config) and tmp_path)
    assert cli.main(["train", "--data", "folder:a", "--eval-data", "b", "--out", str(tmp_path / "r"), "--no-amp",
                     "--betas", "0.9,0.98", "--compile", "--sample-rate", "32000", "--n-fft", "1024",
                     "--f-max", "14000", "--labels", "l.csv", "--micro-batch-size", "4"]) == 0
    config = seen["config"]
    assert (config.train_data, config.eval_data, config.labels_csv, config.out_dir) == ("folder:a", "b", "l.csv",
                                                                                          str(tmp_path / "r"))
    assert (config.amp, config.compile, config.betas, config.micro_batch_size) == (False, True, (0.9, 0.98), 4)
    assert (config.frontend.sample_rate, config.frontend.n_fft, config.frontend.f_max) == (32000, 1024, 14000.0)
    assert config.channels_last and config.epochs == 50  # flags left out keep the defaults


# A representative value (not the default) for every TrainConfig field and front-end setting, as
# typed on the command line and as Python: a field added without an entry here fails the test.
FIELD_VALUES = {
    "train_data": (["--train-data", "folder:data/train"], "folder:data/train"),
    "eval_data": (["--eval-data", "folder:data/eval"], "folder:data/eval"),
    "labels_csv": (["--labels", "l.csv"], "l.csv"),
    "eval_labels_csv": (["--eval-labels", "e.csv"], "e.csv"),
    "sampler": (["--sampler", "shuffle"], "shuffle"),
    "balance_buffer": (["--balance-buffer", "200"], 200),
    "init": (["--init", "INIT"], "INIT"),  # the tiny run's first checkpoint (loaded when the config is made)
    "skip_corrupt": (["--skip-corrupt"], True),
    "out_dir": (["--out", "runs/y"], "runs/y"),
    "model": (["--model", "resnet_c_att"], "resnet_c_att"),
    "model_args": (["--model-arg", "width=12", "--model-arg", "stem_stride=1", "--model-arg", "layers=[2, 2, 2, 2]"],
                   {"width": 12, "stem_stride": 1, "layers": [2, 2, 2, 2]}),
    "epochs": (["--epochs", "7"], 7),
    "batch_size": (["--batch-size", "24"], 24),
    "lr": (["--lr", "3e-4"], 3e-4),
    "weight_decay": (["--weight-decay", "1e-5"], 1e-5),
    "betas": (["--betas", "0.9,0.98"], (0.9, 0.98)),
    "seed": (["--seed", "5"], 5),
    "clip_seconds": (["--clip-seconds", "4.5"], 4.5),
    "workers": (["--workers", "3"], 3),
    "device": (["--device", "cpu"], "cpu"),
    "amp": (["--no-amp"], False),
    "cpu_bf16": (["--cpu-bf16"], True),
    "channels_last": (["--no-channels-last"], False),
    "compile": (["--compile"], True),
    "eval_batch_size": (["--eval-batch-size", "16"], 16),
    "micro_batch_size": (["--micro-batch-size", "4"], 4),
    "sync_batchnorm": (["--sync-batchnorm"], True),
    "timeout_s": (["--timeout-s", "90.5"], 90.5),
    "best_metric": (["--best-metric", "d_prime"], "d_prime"),
    "recipe": (["--recipe", "modern"], "modern"),
    "input_norm": (["--no-input-norm"], False),
    "mixup_alpha": (["--mixup-alpha", "0.2"], 0.2),
    "spec_time_masks": (["--spec-time-masks", "3"], 3),
    "spec_time_width": (["--spec-time-width", "40"], 40),
    "spec_freq_masks": (["--spec-freq-masks", "1"], 1),
    "spec_freq_width": (["--spec-freq-width", "6"], 6),
    "lr_schedule": (["--lr-schedule", "linear"], "linear"),
    "warmup_fraction": (["--warmup-fraction", "0.1"], 0.1),
    "lr_floor": (["--lr-floor", "0.05"], 0.05),
    "ema_decay": (["--ema-decay", "0.99"], 0.99),
    "teacher": (["--teacher", "t.npz"], "t.npz"),
    "kd_lambda": (["--kd-lambda", "0.4"], 0.4),
    "kd_temperature": (["--kd-temperature", "2"], 2.0),
    "strong_labels": (["--strong-labels", "strong.tsv"], "strong.tsv"),
    "strong_weight": (["--strong-weight", "0.5"], 0.5),
    "unlabelled_data": (["--unlabelled-data", "dcase2018:dataset:unlabel_in_domain"],
                        "dcase2018:dataset:unlabel_in_domain"),
    "consistency_weight": (["--consistency-weight", "2"], 2.0),
    "consistency_rampup": (["--consistency-rampup", "0.4"], 0.4),
    "unlabelled_share": (["--unlabelled-share", "0.25"], 0.25),
}
FRONTEND_VALUES = {
    "sample_rate": (["--sample-rate", "32000"], 32000), "window_ms": (["--window-ms", "32"], 32.0),
    "hop_ms": (["--hop-ms", "20"], 20.0), "n_fft": (["--n-fft", "2048"], 2048), "n_mels": (["--n-mels", "96"], 96),
    "f_min": (["--f-min", "50"], 50.0), "f_max": (["--f-max", "14000"], 14000.0),
    "log_offset": (["--log-offset", "0.001"], 0.001), "kind": (["--frontend-kind", "panns"], "panns"),
}


def test_a_value_typed_through_every_train_flag_gives_the_config_built_in_python(tmp_path, monkeypatch, tiny_run):
    import dataclasses

    from audioscene import cli, train
    from audioscene.features import FrontendConfig
    from audioscene.recipe import ingredient_settings
    from audioscene.train import TrainConfig

    assert set(FIELD_VALUES) == {f.name for f in dataclasses.fields(TrainConfig)} - {"frontend", "recipe_settings"} | set(
        ingredient_settings())
    assert set(FRONTEND_VALUES) == {f.name for f in dataclasses.fields(FrontendConfig)}
    seen = {}
    monkeypatch.setattr(train, "train", lambda config, **_: seen.setdefault("config", config) and tmp_path)
    init = str(tiny_run / "epoch_001.pt")
    argv = [arg.replace("INIT", init) for table in (FIELD_VALUES, FRONTEND_VALUES) for args, _ in table.values()
            for arg in args]
    assert cli.main(["train", *argv]) == 0
    expected = TrainConfig(**{**{name: value for name, (_, value) in FIELD_VALUES.items()}, "init": init},
                           frontend=FrontendConfig(**{name: value for name, (_, value) in FRONTEND_VALUES.items()}))
    assert seen["config"] == expected
    defaults = TrainConfig(recipe="modern")
    for name, (_, value) in FIELD_VALUES.items():  # none is the default, so each flag did something
        assert getattr(defaults, name) != value or name == "recipe", name
