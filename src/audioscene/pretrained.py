"""The model zoo: released AudioSet models by name (`CATALOGUE`), their files checked and turned into
runs that every command takes (`--run pretrained:NAME`, `Tagger.from_pretrained(NAME)`).

    audioscene pretrained list
    audioscene tag street.wav --run pretrained:efficientat_mn10_as

A name is fetched on first use into the cache (`cache.py`: `$AUDIOSCENE_HOME`, else the platform's
user cache folder), checked, converted once into a run folder there (`epoch_001.pt` in our
checkpoint format: the weights, the family's model config, the release's front end, the 527
AudioSet labels of our resources, and where it came from: URL, file name, SHA-256, published
scores) and reused. `import_release` does the conversion for a file downloaded by hand
(`audioscene pretrained import NAME FILE`; `import-panns` is its older spelling for PANNs).

Files load with `weights_only=True`. PANNs' released files are `torch.save({"iteration", "model",
"sampler"})`; the sampler holds numpy arrays, pickled under numpy 1's module names in the 2019–20
files (`numpy.core.multiarray`) and numpy 2's in re-saved copies (`numpy._core.multiarray`):
numpy's array reconstruction is allowed under either name and nothing else, so a pickle naming any
other global is refused and nothing in a file is ever executed. EfficientAT's files are bare state
dicts; CED's are state dicts that carry their front end's window and filterbank beside the model.
Every weight is checked by name and shape against our model of the release.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import cache, models
from ._io import sha256_of, staged_folder
from .checkpoints import Checkpoint, CheckpointError, checkpoint_path
from .errors import FetchError
from .config import TrainConfig
from .features import FrontendConfig, mel_matrix
from .labels import audioset

log = logging.getLogger(__name__)

PANNS_RECORD = "https://zenodo.org/records/3987831/files/"
EFFICIENTAT_RELEASE = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
PANNS_SOURCE = "Kong et al. 2020 (PANNs), Table 3 and their released file names"
EFFICIENTAT_SOURCE = "Schmid et al. 2023, EfficientAT's README at commit a425fdc (single-model mAP)"
CED_RECORD = "https://zenodo.org/record/{record}/files/{file_name}?download=1"
CED_SOURCE = "Dinkel et al. 2024 (CED), their README's table at commit 60a0f54 (AudioSet-2M mAP)"


@dataclass(frozen=True)
class Release:
    """One released model file: its catalogue `name`, the publisher's name for it (`title`), our
    registered model variant, the front end it was trained with, where the file is (`url`,
    `file_name`), the scores the authors publish for it on AudioSet's evaluation set and where,
    its parameters (millions, as published), its licence, and the file's SHA-256 and size in bytes
    where the publisher gives them (None: not published; the file is then checked by the names and
    shapes of every weight, and its SHA-256 is recorded in the run)."""

    name: str
    title: str
    model: str
    frontend: FrontendConfig
    url: str
    file_name: str
    published: dict[str, float]  # score name of `metrics.SCORES` → value; a score not published has none
    source: str
    parameters_m: float
    licence: str
    row: str  # its row in the report's Table 2, beside the paper's
    sha256: str | None = None
    size: int | None = None


def _panns_frontend(sample_rate: int, window: int, hop: int, f_max: float) -> FrontendConfig:
    return FrontendConfig(sample_rate=sample_rate, window_ms=1000 * window / sample_rate,
                          hop_ms=1000 * hop / sample_rate, n_fft=window, n_mels=64, f_min=50.0, f_max=f_max,
                          kind="panns")


def _efficientat_frontend(hop_ms: float = 10.0) -> FrontendConfig:
    """Their `AugmentMelSTFT` as their inference script builds it: 32 kHz, 800-sample window, 1024-point
    FFT, 128 bands from 0 to 15 kHz (their default f_max: half the rate less 1 kHz)."""
    return FrontendConfig(sample_rate=32000, window_ms=25.0, hop_ms=hop_ms, n_fft=1024, n_mels=128, f_min=0.0,
                          f_max=15000.0, kind="efficientat")


def _panns(name: str, title: str, model: str, frontend: FrontendConfig, file_name: str, published: dict) -> Release:
    return Release(name, title, model, frontend, PANNS_RECORD + file_name.replace("=", "%3D") + "?download=1",
                   file_name, published, PANNS_SOURCE, 80.8, "CC BY 4.0 (weights), MIT (code)",
                   f"PANNs {title} (Kong et al. 2020)")


def _efficientat(title: str, width: str, m_ap: float, parameters_m: float, hop_ms: float = 10.0,
                 file_name: str | None = None) -> Release:
    file_name = file_name or f"{title}_mAP_{round(m_ap * 1000)}.pt"
    model = f"efficientat_{title.split('_')[0][:-2]}{width}"  # efficientat_mn10, efficientat_dymn10
    return Release(f"efficientat_{title}", title, model, _efficientat_frontend(hop_ms),
                   EFFICIENTAT_RELEASE + file_name, file_name, {"mAP": m_ap}, EFFICIENTAT_SOURCE, parameters_m, "MIT",
                   f"EfficientAT {title} (Schmid et al. 2023)")


def _ced_frontend() -> FrontendConfig:
    """Their `FrontEnd`: 16 kHz, 512-sample window and FFT, hop 160, 64 bands from 0 to 8 kHz."""
    return FrontendConfig(sample_rate=16000, window_ms=32.0, hop_ms=10.0, n_fft=512, n_mels=64, f_min=0.0,
                          f_max=8000.0, kind="ced")


def _ced(size: str, file_name: str, m_ap: float, parameters_m: float, record: int = 8275347) -> Release:
    return Release(f"ced_{size}", f"CED-{size.capitalize()}", f"ced_{size}", _ced_frontend(),
                   CED_RECORD.format(record=record, file_name=file_name), file_name, {"mAP": m_ap}, CED_SOURCE,
                   parameters_m, "GPL-3.0 (code); weights: the Zenodo record's terms",
                   f"CED-{size.capitalize()} (Dinkel et al. 2024)")


CATALOGUE: dict[str, Release] = {release.name: release for release in (
    _panns("panns_cnn14", "Cnn14", "cnn14", _panns_frontend(32000, 1024, 320, 14000.0), "Cnn14_mAP=0.431.pth",
           {"mAP": 0.431, "mAUC": 0.973, "d_prime": 2.732}),
    _panns("panns_cnn14_16k", "Cnn14_16k", "cnn14_16k", _panns_frontend(16000, 512, 160, 8000.0),
           "Cnn14_16k_mAP=0.438.pth", {"mAP": 0.438}),
    _panns("panns_cnn14_decision_level_max", "Cnn14_DecisionLevelMax", "cnn14_decision_level_max",
           _panns_frontend(32000, 1024, 320, 14000.0), "Cnn14_DecisionLevelMax_mAP=0.385.pth", {"mAP": 0.385}),
    _efficientat("mn04_as", "04", 0.432, 0.983),
    _efficientat("mn05_as", "05", 0.443, 1.43),
    _efficientat("mn10_as", "10", 0.471, 4.88),
    _efficientat("mn20_as", "20", 0.478, 17.91),
    _efficientat("mn30_as", "30", 0.482, 39.09),
    _efficientat("mn40_as", "40", 0.484, 68.43),
    _efficientat("mn40_as_ext", "40", 0.487, 68.43),
    _efficientat("mn40_as_no_im_pre", "40", 0.483, 68.43),
    _efficientat("mn10_as_hop_15", "10", 0.463, 4.88, hop_ms=15.0),
    _efficientat("mn10_as_hop_20", "10", 0.456, 4.88, hop_ms=20.0),
    _efficientat("mn10_as_hop_25", "10", 0.447, 4.88, hop_ms=25.0),
    _efficientat("dymn04_as", "04", 0.450, 1.97, file_name="dymn04_as.pt"),
    _efficientat("dymn10_as", "10", 0.477, 10.57, file_name="dymn10_as.pt"),
    _efficientat("dymn20_as", "20", 0.491, 40.02, file_name="dymn20_as_mAP_493.pt"),
    _ced("tiny", "audiotransformer_tiny_mAP_4814.pt", 0.481, 5.5),
    _ced("mini", "audiotransformer_mini_mAP_4896.pt", 0.490, 9.6),
    _ced("small", "audiotransformer_small_mAP_4958.pt", 0.496, 22.0, record=8275319),
    _ced("base", "audiotransformer_base_mAP_4999.pt", 0.500, 86.0),
)}
# `import-panns --arch`: PANNs' own architecture names
PANNS_ARCHS = {release.title: release.name for release in CATALOGUE.values() if release.name.startswith("panns_")}
# front-end weights that released files carry beside the model's (PANNs', CED's), and of them the mel
# filterbanks `[bins, bands]`, checked against the release's front end
FRONTEND_KEYS = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
                 "logmel_extractor.melW", "front_end.0.spectrogram.window", "front_end.0.mel_scale.fb")
MEL_KEYS = ("logmel_extractor.melW", "front_end.0.mel_scale.fb")


def release_named(name: str) -> Release:
    if name not in CATALOGUE:
        raise CheckpointError(f"unknown pretrained model {name!r}; the catalogue (`audioscene pretrained list`): "
                              f"{', '.join(CATALOGUE)}")
    return CATALOGUE[name]


def _numpy_globals() -> list:
    """numpy's array reconstruction (arrays, scalars and their dtypes), under numpy 1's and numpy
    2's module names: what the released files' sampler state needs, and nothing else."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles an array's dtype by its class
    for name in dir(dtypes) if dtypes else ():
        kind = getattr(dtypes, name)
        if isinstance(kind, type) and issubclass(kind, np.dtype):
            allowed.append((kind, f"numpy.dtypes.{name}"))
    return allowed


def read_release(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a released file (`torch.save({"model": ...})`, or a bare state dict), loaded
    with `weights_only=True` and numpy's array reconstruction allowed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign, truncated or code-carrying files
        reason = " ".join(str(exc).split())
        named = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", reason)
        if named:
            raise CheckpointError(f"{path}: refused: the file's pickle names a global that is not numpy's array "
                                  f"reconstruction ({named.group(1) or named.group(2)}); it is not a released "
                                  "checkpoint and nothing of it was run") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{reason[:200]})") from None
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors (expected a dict with 'model')")
    return weights


def check_release(path: Path, weights: dict[str, torch.Tensor], release: Release, model: torch.nn.Module
                  ) -> dict[str, torch.Tensor]:
    """The model's weights of a released file, checked against the keys and shapes of our `model` of
    it (the first mismatches named: a wrong class count shows as the classifier's shape) and, for
    PANNs' and CED's files, their mel filterbank against the release's front end (another
    filterbank means another front end)."""
    expected = {key: value.shape for key, value in model.state_dict().items()}
    frontend = {key: weights[key] for key in FRONTEND_KEYS if key in weights}
    own = {key: value for key, value in weights.items() if key not in FRONTEND_KEYS}
    problems = [f"missing {key}" for key in expected if key not in own]
    problems += [f"unexpected {key}" for key in own if key not in expected]
    problems += [f"{key} has shape {tuple(own[key].shape)}, {release.title} has {tuple(shape)}"
                 for key, shape in expected.items() if key in own and own[key].shape != shape]
    if problems:
        raise CheckpointError(f"{path}: not a {release.title} checkpoint ({len(problems)} mismatches: "
                              f"{'; '.join(problems[:3])})")
    ours = mel_matrix(release.frontend)
    theirs = [frontend[key] for key in MEL_KEYS if key in frontend]
    if theirs and (tuple(theirs[0].shape) != ours.shape
                   or not np.allclose(theirs[0].double().numpy(), ours, rtol=1e-4, atol=1e-6)):
        raise CheckpointError(f"{path}: its mel filterbank ({tuple(theirs[0].shape)}) is not {release.title}'s published "
                              f"front end ({release.frontend.sample_rate} Hz, n_fft {release.frontend.n_fft}, "
                              f"{release.frontend.n_mels} bands {release.frontend.f_min:g}-{release.frontend.f_max:g} "
                              "Hz)")
    return own


def import_release(path: str | os.PathLike, name: str, out_dir: str | os.PathLike) -> Path:
    """Write the released file `path` of the catalogue's `name` as the run `out_dir`
    (`epoch_001.pt`); returns the checkpoint's path. `out_dir` must not hold checkpoints yet; a file
    that is refused leaves nothing there."""
    release = release_named(name)
    path, out_dir = Path(path), Path(out_dir)
    if out_dir.is_dir() and any(out_dir.glob("epoch_*.pt")):
        raise CheckpointError(f"{out_dir}: holds checkpoints already; import into a new run folder")
    labels = audioset().names
    model_config = models.variant_config(release.model, n_classes=len(labels), frontend=release.frontend)
    model = models.from_config(model_config)
    model.load_state_dict(check_release(path, read_release(path), release, model))
    train_config = TrainConfig(model=release.model, frontend=release.frontend, epochs=1)
    source = {"imported_from": path.name, "sha256": sha256_of(path), "architecture": release.title,
              "catalogue": release.name, "url": release.url, "published": release.published,
              "published_in": release.source, "released_as": release.file_name, "licence": release.licence}
    state = Checkpoint(epoch=1, model=model.state_dict(), model_config=model_config.to_dict(),
                       frontend_config=asdict(release.frontend), labels=list(labels),
                       train_config=train_config.to_dict(), history=[{"epoch": 1, **release.published}],
                       run_id=uuid.uuid4().hex, source=source)
    with staged_folder(out_dir, lambda folder: False, "run folder") as staging:
        state.save(checkpoint_path(staging, 1))
    return checkpoint_path(out_dir, 1)


def import_panns(path: str | os.PathLike, arch: str, out_dir: str | os.PathLike) -> Path:
    """`import_release` for a PANNs file by its architecture name (`Cnn14`, ...: `PANNS_ARCHS`)."""
    if arch not in PANNS_ARCHS:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(PANNS_ARCHS)}")
    return import_release(path, PANNS_ARCHS[arch], out_dir)


def run_folder(name: str) -> Path:
    """The cached run of the catalogue's `name` (see `cached_run`)."""
    return cached_run(name)[0]


def cached_run(name: str) -> tuple[Path, Checkpoint | None]:
    """The cached run of the catalogue's `name`, made on first use: its file fetched into the cache
    (`cache.fetch`, under the name's lock, so two processes leave one good copy), checked and
    imported; a cached run that no longer loads is detected and fetched again. With it, its
    checkpoint when that was loaded to check it (so that `checkpoints.Run` need not load it again)."""
    release = release_named(name)
    root = cache.home()
    run_dir, download = root / "runs" / name, root / "downloads" / release.file_name
    by_hand = f"fetch it by hand and run `audioscene pretrained import {name} FILE`"
    with cache.locked(name):
        if (run_dir / "epoch_001.pt").is_file():
            try:
                return run_dir, Checkpoint.load(run_dir / "epoch_001.pt")
            except CheckpointError as exc:
                log.warning("the cached run of %s does not load (%s); fetching it again", name, exc)
                shutil.rmtree(run_dir, ignore_errors=True)
                download.unlink(missing_ok=True)
        if not download.is_file():
            if cache.offline():
                raise FetchError(f"{name}: not in the cache ({root}) and offline ({cache.OFFLINE_VARIABLE} or "
                                 f"--offline); {by_hand} (the file: {release.url})")
            size = f"{release.size / 1e6:.0f} MB" if release.size else f"about {release.parameters_m * 4:.0f} MB"
            log.info("fetching %s (%s, %s) from %s into %s", name, release.title, size, release.url, root)
            cache.fetch(release.url, download, release.sha256, release.size, by_hand=f"{by_hand} "
                        f"(the file: {release.url})")
        try:
            import_release(download, name, run_dir)
        except CheckpointError:
            download.unlink(missing_ok=True)  # a file that fails its checks is not kept
            raise
    return run_dir, None


def import_into_cache(path: str | os.PathLike, name: str) -> Path:
    """A file of the catalogue's `name` fetched by hand, imported as its cached run (what
    `pretrained:NAME` then uses, offline too)."""
    run_dir = cache.home() / "runs" / release_named(name).name
    with cache.locked(name):
        shutil.rmtree(run_dir, ignore_errors=True)
        return import_release(path, name, run_dir)
