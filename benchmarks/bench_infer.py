"""Inference speed: real-time factor of `Tagger.tag` on a 30 min synthetic recording (decode +
LogMel + model, 10.24 s windows, batch 8) for `resnet_b_att` at width 64 (the paper's) and 16 (the
demo's), PyTorch vs ONNX Runtime (log-mel input; and with the front end inside the graph), on
2 CPU threads; each case runs in its own process, so its peak RSS is its own.

    python benchmarks/bench_infer.py [--minutes 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

CASES = [(64, "pytorch"), (64, "onnx"), (64, "onnx+frontend"), (64, "onnx+frontend32"),
         (16, "pytorch"), (16, "onnx"), (16, "onnx+frontend"), (16, "onnx+frontend32")]


def make_recording(path: Path, minutes: float) -> None:
    """Synthetic 10 s soundscapes end to end."""
    from audioscene.data.synthetic import render_clip

    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        for index in range(int(np.ceil(minutes * 6))):
            f.write(render_clip(seed=0, index=index)[0])


def untrained(width: int):
    from audioscene import models

    torch.manual_seed(0)
    return models.create("resnet_b_att", n_classes=10, width=width).eval()


def export_all(work: Path, cases: list[tuple[int, str]]) -> None:
    """The ONNX files, exported here so that the measured processes only load them."""
    from audioscene.export import export_model
    from audioscene.features import LogMel
    from audioscene.labels import dcase2018

    for width, backend in cases:
        if backend != "pytorch":
            parity = export_model(untrained(width), LogMel(), dcase2018(), work / f"w{width}_{backend}.onnx",
                                  with_frontend=backend.startswith("onnx+frontend"),
                                  frontend_precision="float32" if backend.endswith("32") else "float64")
            if backend.startswith("onnx+frontend"):
                print(f"  exported width {width} {backend}: max |log-mel - LogMel| {parity.frontend:.1e}")


def frontend_only(threads: int, windows: int = 64) -> None:
    """Where the time of the front end goes: 10.24 s windows through LogMel (PyTorch, FFT in
    float64) and through the exported front end alone (DFT as matmuls) in float64 and float32."""
    import onnxruntime as ort

    from audioscene.export import OnnxLogMel, _quiet_exporter
    from audioscene.features import LogMel

    torch.set_num_threads(threads)
    waves = 0.1 * torch.randn(8, 163840, generator=torch.Generator().manual_seed(0))
    logmel = LogMel()
    times = {}
    start = time.perf_counter()
    for _ in range(windows // 8):
        logmel(waves)
    times["PyTorch LogMel (float64 FFT)"] = time.perf_counter() - start
    for precision in ("float64", "float32"):
        graph = OnnxLogMel(logmel, precision).eval()
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(graph, (waves,), dynamo=True, input_names=["waveform"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"waveform": waves.numpy()})
        start = time.perf_counter()
        for _ in range(windows // 8):
            session.run(None, {"waveform": waves.numpy()})
        times[f"ONNX front end, DFT matmuls in {precision}"] = time.perf_counter() - start
    print(f"front end alone, {windows} windows of 10.24 s, {threads} threads:")
    for name, seconds in times.items():
        print(f"  {name:40s} {seconds:6.2f} s = {windows * 10.24 / seconds:7.0f}x real time")


def run_case(recording: Path, width: int, backend: str, threads: int, work: Path) -> dict:
    from audioscene.features import LogMel
    from audioscene.infer import Tagger
    from audioscene.labels import dcase2018

    torch.set_num_threads(threads)
    if backend == "pytorch":
        tagger = Tagger([untrained(width)], LogMel(), dcase2018(), device="cpu", batch_size=8)
    else:
        tagger = Tagger.from_onnx(work / f"w{width}_{backend}.onnx", threads=threads, batch_size=8)
    tagger.tag(np.zeros(160000, np.float32))  # warm-up
    start = time.perf_counter()
    tagger.tag(recording, top_k=5)
    seconds = time.perf_counter() - start
    return {"width": width, "backend": backend, "seconds": seconds, "audio_s": sf.info(str(recording)).duration,
            "peak_rss_mb": peak_rss_kb() / 1024}


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM; getrusage's ru_maxrss is inherited from the parent across exec)."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: WIDTH:BACKEND:RECORDING:WORKDIR
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script runs")
    args = parser.parse_args()
    cases = [(4, "pytorch"), (4, "onnx")] if args.quick else CASES
    if args.quick:
        args.minutes = 0.2
    if args.case:
        width, backend, recording, work = args.case.split(":")
        print(json.dumps(run_case(Path(recording), int(width), backend, args.threads, Path(work))))
        return
    with tempfile.TemporaryDirectory() as work:
        recording = Path(work) / "recording.wav"
        make_recording(recording, args.minutes)
        frontend_only(args.threads, windows=2 if args.quick else 64)
        export_all(Path(work), cases)
        print(f"tag on a {args.minutes:g} min recording, {args.threads} threads, resnet_b_att, batch 8 windows")
        results = {}
        for width, backend in cases:
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                                  "--case", f"{width}:{backend}:{recording}:{work}"],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results[(width, backend)] = r
            base = results[(width, "pytorch")]["seconds"]
            print(f"  width {width:2d} {backend:14s} {r['seconds']:6.1f} s  real-time factor "
                  f"{r['audio_s'] / r['seconds']:6.1f}x  ({base / r['seconds']:.2f}x PyTorch)  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
