"""Argument types and option groups of the `audioscene` command line: each value is checked as the
API checks it, and a bad one is reported by argparse in one line."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import typing
from pathlib import Path

from ..config import CONFIG_RANGES, MOVED_TO_MODEL_ARGS, choices_of
from ..errors import AudioSceneError, InputError, check_number, describe_range
from ..events import UNSTORABLE
from ..labels import CLASS_GROUPS

PROG = "audioscene"


# Flags that were documented once and are gone, with what replaces each ({value}: what was typed
# after the flag). Old command lines get one line saying what to type instead.
RETIRED_FLAGS = {
    **{f"--{key.replace('_', '-')}": f"was replaced: use --model-arg {key}={{value}}" for key in MOVED_TO_MODEL_ARGS},
    "--channels-last": "is gone: channels_last is on by default (--no-channels-last turns it off)",
}


def retired_flag_message(unrecognised: list[str]) -> str | None:
    """"--width was replaced: use --model-arg width=8" for the first retired flag among argparse's
    unrecognised arguments (`--flag VALUE` or `--flag=VALUE`), else None."""
    for i, item in enumerate(unrecognised):
        flag, equals, value = item.partition("=")
        if flag in RETIRED_FLAGS:
            if not equals:
                following = unrecognised[i + 1] if i + 1 < len(unrecognised) else ""
                value = following if following and not following.startswith("-") else "N"
            return f"{flag} {RETIRED_FLAGS[flag].format(value=value)}"
    return None


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line on stderr (exit code 2), and a retired
    flag (`RETIRED_FLAGS`) with what replaces it."""

    def parse_args(self, args=None, namespace=None):
        namespace, unrecognised = self.parse_known_args(args, namespace)
        if unrecognised:
            self.error(retired_flag_message(unrecognised) or f"unrecognized arguments: {' '.join(unrecognised)}")
        return namespace

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def snr_range(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH in dB, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH in dB, got {text!r}")
    return (values[0], values[-1])


def number(integer: bool = False, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False):
    """An argparse type: a finite number in a range, checked as the API checks it."""
    wanted = describe_range(integer, low, high, low_open, high_open)

    def parse(text: str):
        try:
            return check_number("value", (int if integer else float)(text), integer=integer, low=low, high=high,
                                low_open=low_open, high_open=high_open)
        except (ValueError, InputError):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    return parse


positive_int = number(integer=True, low=1)
count = number(integer=True, low=0)
positive = number(low=0, low_open=True)


def device(text: str) -> str:
    from ..devices import check_device

    try:
        return check_device(text)
    except AudioSceneError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config_flags(parser, config_class, prefix: str = "") -> None:
    """One flag per field of a config dataclass, generated from the field: its type (and range, in
    `CONFIG_RANGES` / `FRONTEND_RANGES`), default, choices, help text and flag names (field metadata).
    Booleans that default to on get `--no-NAME`; booleans a recipe sets (`bool | None`) get both
    `--NAME` and `--no-NAME`. A nested config gets an argument group of its own; the recipe's
    settings (`recipe_settings`) one flag per setting of a registered ingredient."""
    from ..features import FRONTEND_RANGES
    from ..recipe import RECIPES

    ranges = CONFIG_RANGES if prefix == "" else FRONTEND_RANGES  # a nested config is the front end
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        kind, meta = hints[item.name], item.metadata
        types_ = set(typing.get_args(kind)) - {type(None)} or {kind}  # `float | None` → {float}
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        if dataclasses.is_dataclass(kind):
            group = parser.add_argument_group(f"{item.name}: {meta.get('help', '')}")
            add_config_flags(group, kind, prefix=f"{item.name}.")
            continue
        if item.name == "recipe_settings":
            _add_ingredient_flags(parser)
            continue
        name = item.name.replace("_", "-")
        flags = list(meta.get("flags") or (f"--{name}",))
        options = {"dest": prefix + item.name, "help": meta.get("help", "")}
        if types_ == {bool} and default is None:
            options.update(action=argparse.BooleanOptionalAction, default=None, help=options["help"] + _by_recipe(
                item.name, lambda value: "on" if value else "off"))
        elif typing.get_origin(kind) is dict:
            options.update(action=KeyValues, default=None, metavar="KEY=VALUE")
            options["help"] += " (repeat for several)"
        elif kind is bool:
            if default:
                flags, options["help"] = [f"--no-{name}"], f"turn off (on by default): {options['help']}"
            options.update(action="store_const", const=not default)
        else:
            if not meta.get("choices"):
                options["metavar"] = item.name.upper()
            if default not in ("", None):
                shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
                options["help"] += f" (default {shown})"
            elif item.name in RECIPES["paper"]:
                options["help"] += _by_recipe(item.name)
            if meta.get("choices"):
                options["choices"] = choices_of(item)
            elif item.name == "device":
                options["type"] = device
            elif typing.get_origin(kind) is tuple:
                options.update(type=numbers(len(typing.get_args(kind))), metavar="B1,B2")
            elif types_ & {int, float}:
                options["type"] = number(**{"integer": float not in types_, **ranges.get(item.name, {})})
        parser.add_argument(*flags, **options)


def _by_recipe(name: str, shown=str) -> str:
    """" (default: the recipe's, paper off, modern on)" for a field or setting a recipe sets."""
    from ..recipe import RECIPES, preset_value

    return " (default: the recipe's, " + ", ".join(f"{recipe} {shown(preset_value(recipe, name))}"
                                                  for recipe in RECIPES) + ")"


def _add_ingredient_flags(parser) -> None:
    """`--setting-name VALUE` for each setting of each registered recipe ingredient."""
    from ..recipe import INGREDIENTS

    for ingredient in INGREDIENTS.values():
        for setting in ingredient.settings:
            options = {"dest": setting.name, "default": None, "help": setting.help + _by_recipe(setting.name)}
            if setting.kind is bool:
                options["action"] = argparse.BooleanOptionalAction
            elif setting.choices:
                options["choices"] = setting.choices
            elif setting.kind in (int, float):
                options.update(metavar=setting.name.upper(), type=number(integer=setting.kind is int, **setting.range))
            else:
                options["metavar"] = setting.name.upper()
            parser.add_argument(f"--{setting.name.replace('_', '-')}", **options)


class KeyValues(argparse.Action):
    """`--flag KEY=VALUE`, repeatable, into a dict; VALUE is read as a TOML value (`16`, `0.5`,
    `true`, `[3, 4, 6, 3]`, `"text"`) or, failing that, taken as text."""

    def __call__(self, parser, namespace, text, option_string=None):
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            parser.error(f"argument {option_string}: expected KEY=VALUE, got {text!r}")
        try:
            parsed = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            parsed = value
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), key.strip(): parsed})


def config_values(args, config_class) -> dict:
    """The fields set on the command line (nested configs as dicts), for `from_dict`/`from_toml`."""
    values = {}
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        if dataclasses.is_dataclass(hints[item.name]):
            nested = {f.name: getattr(args, f"{item.name}.{f.name}") for f in dataclasses.fields(hints[item.name])}
            nested = {key: value for key, value in nested.items() if value is not None}
            if nested:
                values[item.name] = nested
        elif item.name == "recipe_settings":
            from ..recipe import ingredient_settings

            values.update({name: getattr(args, name) for name in ingredient_settings()
                           if getattr(args, name, None) is not None})
        elif getattr(args, item.name, None) is not None:
            values[item.name] = getattr(args, item.name)
    return values


def numbers(count: int):
    """An argparse type: `count` comma-separated finite numbers."""
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(check_number("value", float(v)) for v in text.split(","))
        except (ValueError, InputError):
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} numbers separated by commas, got {text!r}")
        return values
    return parse


def per_class_values(kind: type, low: float | None = None, high: float | None = None, odd: bool = False,
                     tuning: bool = True):
    """A value, comma-separated values (one per class) or (with `tuning`) a tuning JSON from
    `sed-tune`; numbers must lie in [low, high] (and be odd with `odd`: median kernels)."""

    def parse(text: str):
        if tuning and text.endswith(".json"):
            from ..sed import Tuning

            try:
                return Tuning.load(text)
            except AudioSceneError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        try:
            values = [check_number("value", kind(v), integer=kind is int, low=low, high=high) for v in text.split(",")]
            if odd and any(v % 2 == 0 for v in values):
                raise ValueError("even")
        except (ValueError, InputError):
            wanted = describe_range(kind is int, low, high, False).replace("an integer", "an odd integer" if odd else
                                                                           "an integer")
            raise argparse.ArgumentTypeError(f"expected {wanted}, numbers "
                                             "like that separated by commas" + (", or a tuning .json" if tuning else "")
                                             + f"; got {text!r}") from None
        return values[0] if len(values) == 1 else values
    return parse


def add_event_options(p) -> None:
    """How frame scores become events (detect, view)."""
    p.add_argument("--thresholds", type=per_class_values(float, 0, 1), default=0.5,
                   help="one threshold, one per class (comma-separated) or a sed-tune JSON (default 0.5)")
    p.add_argument("--median", type=per_class_values(int, 1, odd=True), default=1,
                   help="odd median kernel in frames, one per class, or a sed-tune JSON (default 1: none)")


def add_live_options(p) -> None:
    """What a live stream reports (detect --stream, listen)."""
    p.add_argument("--onsets", action="store_true",
                   help="also report each event when it opens (provisional: its event line follows when it closes)")
    p.add_argument("--tag-every", type=positive, metavar="SECONDS",
                   help="also report the latest window's top labels at most every so many seconds")
    p.add_argument("--lines", choices=("tsv", "json"), default="tsv",
                   help="tsv: kind, stream s, clock time, label, onset, offset, score; json: one object per line "
                        "(default tsv)")
    p.add_argument("--view", action="store_true",
                   help="also serve a live page (spectrogram, score lines, events) while the stream plays")
    p.add_argument("--port", type=number(integer=True, low=0, high=65535), default=8766,
                   help="the live page's port (default 8766; 0: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the live page listens on (default 127.0.0.1: this machine only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another Host name the live page answers to (e.g. behind a proxy); repeatable")


def add_data_option(p, flag: str, what: str, kinds: tuple[str, ...] | None = None) -> None:
    """A required data-spec flag and, for `folder:` specs, `--labels` (its CSV)."""
    from ..data.spec import forms_help

    p.add_argument(flag, required=True, metavar="SPEC", help=f"{what}: {forms_help(kinds)}")
    p.add_argument("--labels", help="for a folder: spec, its CSV filename,labels (default DIR/labels.csv)")


def add_compute_options(p, batch_size: bool = True, workers: bool = True, device_flag: str = "--device") -> None:
    """Where and in what batches a command scores clips (`device_flag`: where `--device` means
    something else, e.g. `listen`'s sound input)."""
    p.add_argument(device_flag, dest="device", type=device, default="auto",
                   help="auto, cpu, cuda or cuda:N (default auto)")
    if batch_size:
        p.add_argument("--batch-size", type=positive_int, default=64, help="clips per batch (default 64)")
    if workers:
        p.add_argument("--workers", type=count, default=0, help="data loader worker processes (default 0)")


def add_weights_option(p) -> None:
    p.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto",
                   help="auto: the run's weights (their moving average when the run keeps one), raw: the optimizer's "
                        "weights, ema: the moving average (default auto)")


def add_model_options(p, device_flag: str = "--device", run_required: bool = True) -> None:
    add_weights_option(p)
    p.add_argument("--run", type=Path, action="append", required=run_required,
                   help="run folder with epoch_NNN.pt checkpoints, pretrained:NAME (a model of the zoo: `audioscene "
                        "pretrained list`), or a model.onnx from export-onnx; repeat for an ensemble (outputs "
                        "averaged)")
    p.add_argument("--checkpoint", default="best",
                   help="best (the run's best eval score, mAP by default), last, avg (mean of all epochs' outputs) "
                        "or a .pt path (default best)")
    p.add_argument("--classes", choices=("all", *CLASS_GROUPS), default="all",
                   help="all: the run's own labels; dcase2018: the 10 DCASE classes, each the max over its "
                        "AudioSet labels (default all)")
    add_compute_options(p, batch_size=False, workers=False, device_flag=device_flag)
    p.add_argument("--hop-s", type=positive, help="window step in seconds (default: the window, about 10 s)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass (default 8)")


def named_ensemble(text: str) -> tuple[str, tuple[Path, ...]]:
    """`NAME=RUN,RUN[,...]`: an ensemble of at least two runs (folders or pretrained:NAME), named."""
    name, sep, members = text.partition("=")
    runs = tuple(Path(member) for member in members.split(",") if member)
    if not sep or len(runs) < 2:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN,RUN (two runs or more), got {text!r}")
    return named_run(f"{name}={runs[0]}")[0], runs


def named_run(text: str) -> tuple[str, Path]:
    """`NAME=RUN_DIR`, or `RUN_DIR` (named after its folder; a `/` before the first `=` makes the
    whole text a folder, e.g. `runs/a=b`). Names are one line of text without `/` (they become
    file names and table cells)."""
    name, sep, path = text.partition("=")
    if not sep or "/" in name:
        name, path = Path(text.rstrip("/")).name, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR or RUN_DIR, got {text!r}")
    if UNSTORABLE.search(name) or "/" in name or name in (".", ".."):
        raise argparse.ArgumentTypeError(f"run name {name!r}: no control characters, '/', '.' or '..' (it names "
                                         "files of the report)")
    return name, Path(path)
