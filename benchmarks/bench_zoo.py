"""The model zoo on this CPU: for each architecture of `pretrained.CATALOGUE` (seeded random weights
of its shape: the released files need a network this workplace lacks), tagging the same 10 s clips
through `Tagger` (front end + model) on 1 and 2 threads: clips/s, real-time factor (compute seconds
per second of audio), the process's peak memory, parameters, MACs of the model on a 10 s clip
(`torch.utils.flop_counter`, multiply-adds = FLOPs / 2) and the published mAP; then clips/s of each
against CNN14's, measured in the same run. With `--efficientat-repo` (a checkout of
fschmid56/EfficientAT at the commit of tests/data/make_efficientat_reference.py), also `mn10_as` through
the authors' own front end and model on the same weights and clips.

Then `embed` on one long recording (`--embed-minutes`, default 2 and 20: noise and tones written as
FLAC) with CED-Tiny and mn10_as: seconds of audio embedded per second (`Tagger.analyze_many(embeddings=True)`
into `infer.write_embeddings`, as the `embed` command runs) and the process's peak memory at both
lengths (flat when the file is streamed).

Each model runs in a process of its own (its peak memory is its own).

    python benchmarks/bench_zoo.py [--clips 8] [--efficientat-repo /tmp/EfficientAT] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

RESULTS = Path(__file__).parent / "results"


def clips(n: int, sample_rate: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(10 * sample_rate)).astype(np.float32) for _ in range(n)]


def seeded(model_name: str, frontend):
    from audioscene import models
    from audioscene.labels import audioset

    torch.manual_seed(0)
    config = models.variant_config(model_name, n_classes=len(audioset().names), frontend=frontend)
    return models.from_config(config).eval()


def measure(name: str, n_clips: int) -> dict:
    """One catalogue entry, in this process: its figures on 1 and 2 threads."""
    from audioscene.features import LogMel
    from audioscene.infer import Tagger
    from audioscene.labels import audioset
    from audioscene.pretrained import CATALOGUE

    release = CATALOGUE[name]
    model = seeded(release.model, release.frontend)
    frontend = LogMel(release.frontend)
    waves = clips(n_clips, release.frontend.sample_rate)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(frontend(torch.from_numpy(waves[0]))[None])
    tagger = Tagger([model], frontend, audioset(), device="cpu", batch_size=1)
    result = {"name": name, "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
              "gmacs": flops.get_total_flops() / 2e9, "published_mAP": release.published["mAP"]}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        tagger.analyze(waves[0])  # warm-up
        started = time.perf_counter()
        for wave in waves:
            tagger.analyze(wave)
        seconds = time.perf_counter() - started
        result[f"clips_per_s_{threads}t"] = n_clips / seconds
        result[f"rtf_{threads}t"] = seconds / (10.0 * n_clips)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def embed_long(name: str, minutes: float) -> dict:
    """`embed` on one recording of `minutes`, in this process: audio seconds per second, peak memory."""
    import tempfile

    import soundfile as sf

    from audioscene.features import LogMel
    from audioscene.infer import Tagger, write_embeddings
    from audioscene.labels import audioset
    from audioscene.pretrained import CATALOGUE

    release = CATALOGUE[name]
    rate = release.frontend.sample_rate
    tagger = Tagger([seeded(release.model, release.frontend)], LogMel(release.frontend), audioset(), device="cpu")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.flac"
        with sf.SoundFile(path, "w", rate, 1) as f:  # written a minute at a time
            for minute in range(int(np.ceil(minutes))):
                t = np.arange(int(60 * rate * min(1.0, minutes - minute))) / rate
                f.write((0.05 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * (300 + 50 * minute) * t)
                         ).astype(np.float32))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        embedded = ((str(source), result) for source, result in tagger.analyze_many([path], embeddings=True))
        _, n = write_embeddings(Path(folder) / "out.npz", embedded)
        seconds = time.perf_counter() - started
        with np.load(Path(folder) / "out.npz") as out:
            frames = out["frames"].shape
    return {"name": name, "minutes": minutes, "audio_s_per_s": 60 * minutes / seconds, "frames": list(frames),
            "peak_rss_mb_before": before, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def theirs_mn10(repo: Path, n_clips: int) -> dict:
    """mn10_as's shape through the authors' AugmentMelSTFT and MN (stand-ins for torchvision and
    torchaudio from tests/data/make_efficientat_reference.py) and through ours, on the weights of the
    parity test (tests/test_efficientat.py)."""
    import contextlib
    import importlib.util
    import io
    import os

    from audioscene.features import LogMel
    from audioscene.pretrained import CATALOGUE

    script = Path(__file__).parent.parent / "tests" / "data" / "make_efficientat_reference.py"
    spec = importlib.util.spec_from_file_location("reference", script)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    reference._install_stand_ins()
    os.chdir(repo)
    sys.path.insert(0, str(repo.resolve()))
    from models.mn.model import get_model
    from models.preprocess import AugmentMelSTFT

    ours = seeded("efficientat_mn10", CATALOGUE["efficientat_mn10_as"].frontend)
    weights = reference.seeded_weights(ours.state_dict(), reference.SEED)
    with np.load(script.with_name("efficientat_reference.npz")) as stored:  # the parity test's weights
        weights.update({key: torch.from_numpy(stored[f"mn10_as/{key}"]) for key in weights
                        if f"mn10_as/{key}" in stored.files})
    ours.load_state_dict(weights)
    with contextlib.redirect_stdout(io.StringIO()):  # their get_model prints the model
        their_model = get_model(width_mult=1.0)
    their_model.load_state_dict(weights)
    their_model.eval()
    with contextlib.redirect_stdout(io.StringIO()):
        their_frontend = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320).eval()
    our_frontend = LogMel(CATALOGUE["efficientat_mn10_as"].frontend)
    waves = [torch.from_numpy(w)[None] for w in clips(n_clips, 32000)]
    timings, worst = {}, 0.0
    for who, run in (("theirs", lambda w: torch.sigmoid(their_model(their_frontend(w)[:, None])[0])),
                     ("ours", lambda w: ours(our_frontend(w))["clipwise"])):
        with torch.no_grad():
            run(waves[0])
            started = time.perf_counter()
            outputs = [run(w) for w in waves]
            timings[who] = n_clips / (time.perf_counter() - started)
        if who == "theirs":
            expected = outputs
        else:
            worst = max(float((a.reshape(-1) - b.reshape(-1)).abs().max()) for a, b in zip(outputs, expected))
    return {"theirs_clips_per_s": timings["theirs"], "ours_clips_per_s": timings["ours"],
            "ratio": timings["ours"] / timings["theirs"], "max_clip_difference": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--efficientat-repo", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one entry in this process (JSON on stdout)
    parser.add_argument("--one-embed", help=argparse.SUPPRESS)  # embed one long file in this process
    parser.add_argument("--embed-minutes", type=float, nargs="+", default=[2.0, 20.0])
    parser.add_argument("--quick", action="store_true", help="one clip, two small models (a check that it runs)")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_zoo.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.clips)))
        return
    if args.one_embed:
        print(json.dumps(embed_long(args.one_embed, args.embed_minutes[0])))
        return
    from audioscene.pretrained import CATALOGUE

    names = ["efficientat_mn04_as", "ced_tiny", "panns_cnn14_16k"] if args.quick else [
        name for name in CATALOGUE if not name.endswith(("_ext", "_no_im_pre"))]  # those share mn40_as's shape
    n_clips = 1 if args.quick else args.clips
    rows = []
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--clips", str(n_clips)], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    reference = next((row for row in rows if row["name"] == "panns_cnn14"), rows[-1])
    print(f"{'model':30} {'params':>8} {'GMACs':>6} {'mAP':>6} {'clips/s 1t':>10} {'2t':>6} {'RTF 2t':>7} "
          f"{'peak MB':>8} {'vs ' + reference['name']:>24}")
    for row in rows:
        print(f"{row['name']:30} {row['parameters_m']:7.2f}M {row['gmacs']:6.2f} {row['published_mAP']:6.3f} "
              f"{row['clips_per_s_1t']:10.2f} {row['clips_per_s_2t']:6.2f} {row['rtf_2t']:7.4f} "
              f"{row['peak_rss_mb']:8.0f} {row['clips_per_s_2t'] / reference['clips_per_s_2t']:23.1f}x")
    result = {"clips": n_clips, "reference": reference["name"], "models": rows}
    by_name = {row["name"]: row for row in rows}
    if {"ced_tiny", "efficientat_mn10_as"} <= set(by_name):
        ced, mn10 = by_name["ced_tiny"], by_name["efficientat_mn10_as"]
        result["ced_tiny_vs_mn10_as"] = {f"{t}t": ced[f"clips_per_s_{t}t"] / mn10[f"clips_per_s_{t}t"] for t in (1, 2)}
        print("CED-Tiny (0.481) vs mn10_as (0.471), clips/s: " + ", ".join(
            f"{ratio:.2f}x on {t}" for t, ratio in result["ced_tiny_vs_mn10_as"].items()))
    embeds = []
    for name in ["ced_tiny"] if args.quick else ["ced_tiny", "efficientat_mn10_as"]:
        for minutes in [0.5] if args.quick else args.embed_minutes:
            out = subprocess.run([sys.executable, __file__, "--one-embed", name, "--embed-minutes", str(minutes)],
                                 capture_output=True, text=True, check=True)
            embeds.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = embeds[-1]
            print(f"embed {name} on {minutes:g} min: {row['audio_s_per_s']:.0f} s of audio per s, frames "
                  f"{row['frames']}, peak {row['peak_rss_mb']:.0f} MB (model loaded: {row['peak_rss_mb_before']:.0f} MB)")
    result["embed_long_file"] = embeds
    if args.efficientat_repo:
        result["mn10_as_vs_authors"] = theirs_mn10(args.efficientat_repo, n_clips)
        print("mn10_as, ours vs the authors' code (same weights): " + json.dumps(result["mn10_as_vs_authors"]))
    if not args.quick:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
