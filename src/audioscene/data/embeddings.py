"""AudioSet's released 128-d embeddings (the `embeddings:DIR` data spec), the input of Table 2's
baselines (Hershey et al., Kong et al., Yu et al.).

Where to get them: the AudioSet download page (research.google.com/audioset/download.html) links
`features.tar.gz` (~2.4 GB), which unpacks to `audioset_v1_embeddings/{bal_train,eval,unbal_train}/
*.tfrecord`. Each record is a `tf.SequenceExample` (read here without TensorFlow, `tfrecord`):

- context: `video_id` (bytes), `start_time_seconds`, `end_time_seconds` (floats), `labels` (int64
  indices into the 527 classes of `class_labels_indices.csv`);
- feature list `audio_embedding`: one 128-byte string per 0.96 s, the VGGish embedding after PCA,
  whitening and 8-bit quantisation.

Dequantisation inverts the quantisation of AudioSet's `vggish_postprocess.py` (values clipped to
[-2, 2], then mapped linearly onto 0..255): `x = q · 4/255 − 2`. A clip has 10 embeddings (some have
fewer); clips are padded with zeros (the embedding space's mean after whitening) or cropped to
`n_frames` = 10, and how many were padded is logged.

`write_synthetic` writes the same format from the synthetic data set (pooled log-mel through a
fixed random projection), so reader, training and evaluation run offline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._io import staged_folder
from ..errors import EmbeddingError, InputError
from ..labels import DCASE2018_AUDIOSET_NAMES, LabelSet, audioset
from .tfrecord import RecordError, encode_sequence_example, parse_sequence_example, read_records, write_records

log = logging.getLogger(__name__)

EMBEDDING_DIM = 128
FRAME_HOP_S = 0.96  # one embedding per 0.96 s (VGGish examples, no overlap)
N_FRAMES = 10
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0


@dataclass(frozen=True)
class EmbeddingClip:
    video_id: str
    start: float
    end: float
    labels: tuple[int, ...]  # indices into the 527 AudioSet classes
    embedding: np.ndarray  # uint8 [frames, 128]


def dequantize(quantized: np.ndarray) -> np.ndarray:
    """uint8 codes → float32 embedding values in [-2, 2]."""
    return (quantized.astype(np.float32) * np.float32((QUANTIZE_MAX - QUANTIZE_MIN) / 255) + np.float32(QUANTIZE_MIN))


def quantize(values: np.ndarray) -> np.ndarray:
    """float embedding values → uint8 codes, as `vggish_postprocess.py` does."""
    clipped = np.clip(values, QUANTIZE_MIN, QUANTIZE_MAX)
    return np.round((clipped - QUANTIZE_MIN) * (255 / (QUANTIZE_MAX - QUANTIZE_MIN))).astype(np.uint8)


def _clip(data: bytes, where: str, n_classes: int) -> EmbeddingClip:
    try:
        context, lists = parse_sequence_example(data)
    except RecordError as exc:
        raise EmbeddingError(f"{where}: not a SequenceExample ({exc})") from None
    missing = [key for key in ("video_id", "labels") if key not in context] + \
        ([] if "audio_embedding" in lists else ["audio_embedding"])
    if missing:
        raise EmbeddingError(f"{where}: no {', '.join(missing)} feature")
    for key, kind, count in (("video_id", bytes, 1), ("labels", int, None), ("start_time_seconds", float, 1),
                             ("end_time_seconds", float, 1)):
        values = context.get(key, [kind()] if count else [])
        if (count and len(values) != count) or not all(type(v) is kind for v in values):
            raise EmbeddingError(f"{where}: feature {key} must be {count or 'a list of'} "
                                 f"{ {bytes: 'string', int: 'int64', float: 'float'}[kind] } value(s)")
    labels = tuple(context["labels"])
    bad = [x for x in labels if not 0 <= x < n_classes]
    if bad:
        raise EmbeddingError(f"{where}: label index {bad[0]} outside the {n_classes} classes")
    steps = [step[0] if len(step) == 1 and isinstance(step[0], bytes) else None for step in lists["audio_embedding"]]
    wrong = [i for i, step in enumerate(steps) if step is None or len(step) != EMBEDDING_DIM]
    if wrong:
        raise EmbeddingError(f"{where}: embedding {wrong[0]} is not one string of {EMBEDDING_DIM} bytes")
    embedding = np.frombuffer(b"".join(steps), np.uint8).reshape(len(steps), EMBEDDING_DIM)
    start = context.get("start_time_seconds", [0.0])
    end = context.get("end_time_seconds", [0.0])
    return EmbeddingClip(context["video_id"][0].decode("utf-8", "replace"), float(start[0]), float(end[0]), labels,
                         embedding)


def read_tfrecord(path: str | os.PathLike, n_classes: int = 527, skip_bad: bool = False) -> tuple[list, int]:
    """`(clips, records skipped)` of one file; a bad record raises `EmbeddingError` (a `RecordError`
    for a damaged frame) naming file and record, or with `skip_bad` is skipped and counted; a
    frame so damaged that the records after it cannot be found ends the file (counted as one)."""
    clips, skipped = [], 0
    try:
        for number, data in enumerate(read_records(path)):
            try:
                if isinstance(data, RecordError):
                    raise data
                clips.append(_clip(data, f"{path}: record {number}", n_classes))
            except (EmbeddingError, RecordError) as exc:
                if not skip_bad:
                    raise
                log.warning("skipped %s", exc)
                skipped += 1
    except RecordError as exc:
        if not skip_bad:
            raise
        log.warning("%s; the records after it cannot be found and are lost", exc)
        skipped += 1
    return clips, skipped


class EmbeddingDataset(Dataset):
    """A `ClipSet` of released embeddings: `(embedding [n_frames, 128] float32, target [527])`."""

    def __init__(self, clips: list[EmbeddingClip], label_set: LabelSet, n_frames: int = N_FRAMES):
        self.clips, self.label_set, self.n_frames = clips, label_set, n_frames
        codes = np.zeros((len(clips), n_frames, EMBEDDING_DIM), np.uint8)
        self.valid = np.zeros((len(clips), n_frames), bool)  # frames that hold an embedding (not padding)
        self.targets = np.zeros((len(clips), len(label_set)), np.float32)
        for i, clip in enumerate(clips):
            frames = clip.embedding[:n_frames]
            codes[i, :len(frames)] = frames
            self.valid[i, :len(frames)] = True
            self.targets[i, list(clip.labels)] = 1.0
        self.embeddings = dequantize(codes) * self.valid[..., None]  # padding is 0, the whitened mean
        self.keys = [f"{clip.video_id}_{int(round(clip.start * 1000))}" for clip in clips]  # as Segment.key

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, label_set: LabelSet | None = None, n_frames: int = N_FRAMES,
                    skip_bad: bool = False, progress: bool = True) -> "EmbeddingDataset":
        """All `*.tfrecord` files of a folder (e.g. `audioset_v1_embeddings/bal_train`), sorted by name."""
        from tqdm.auto import tqdm

        folder = Path(folder)
        files = sorted(folder.glob("*.tfrecord")) if folder.is_dir() else []
        if not files:
            raise EmbeddingError(f"{folder}: no *.tfrecord files (expected a folder such as "
                                 "audioset_v1_embeddings/bal_train)")
        label_set = label_set or audioset()
        clips, skipped = [], 0
        for path in tqdm(files, desc=f"read {folder.name}", unit="file", disable=not progress or len(files) < 20):
            found, bad = read_tfrecord(path, len(label_set), skip_bad)
            clips += found
            skipped += bad
        if not clips:
            raise EmbeddingError(f"{folder}: no readable clips in {len(files)} files")
        dataset = cls(clips, label_set, n_frames)
        short = int((dataset.valid.sum(axis=1) < n_frames).sum())
        log.info("%s: %d clips from %d files (%d with fewer than %d embeddings, zero-padded; %d bad records "
                 "skipped)", folder, len(clips), len(files), short, n_frames, skipped)
        return dataset

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.embeddings[index]), torch.from_numpy(self.targets[index])


def encode_clip(clip: EmbeddingClip) -> bytes:
    """A record in the official layout."""
    return encode_sequence_example(
        {"video_id": ("bytes", [clip.video_id.encode("utf-8")]), "start_time_seconds": ("float", [clip.start]),
         "end_time_seconds": ("float", [clip.end]), "labels": ("int64", list(clip.labels))},
        {"audio_embedding": ("bytes", [[row.tobytes()] for row in clip.embedding])})


def write_tfrecords(clips: list[EmbeddingClip], out_dir: str | os.PathLike, clips_per_file: int = 100) -> list[Path]:
    """Clips as `out_dir/part-NNNNN.tfrecord` files, replacing the folder's earlier files whole (built
    in a staging folder: parts of an earlier, longer set never linger)."""
    out_dir = Path(out_dir)
    names = [f"part-{number:05d}.tfrecord" for number in range(-(-len(clips) // clips_per_file))]
    with staged_folder(out_dir, lambda folder: all(p.suffix == ".tfrecord" for p in folder.iterdir()),
                       "folder of .tfrecord files") as staging:
        for name, start in zip(names, range(0, len(clips), clips_per_file)):
            write_records(staging / name, (encode_clip(clip) for clip in clips[start:start + clips_per_file]))
    return [out_dir / name for name in names]


def write_synthetic(split_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0,
                    progress: bool = True) -> list[Path]:
    """Stand-in embeddings of a synthetic split (`data.synthetic`): each 0.96 s of log-mel averaged
    over time, projected to 128 dimensions by a fixed random matrix (seeded), standardised with the
    split's statistics and quantised like the released features; labels are each DCASE class's
    first AudioSet name (`labels.DCASE2018_AUDIOSET_NAMES`)."""
    from tqdm.auto import tqdm

    from ..features import FrontendConfig, logmel_from_file
    from .folder import ClipDataset

    split = ClipDataset.from_folder(split_dir)
    names = audioset()
    frames_per_embedding = int(round(FRAME_HOP_S * 1000 / FrontendConfig().hop_ms))
    projection = np.random.default_rng(seed).standard_normal((FrontendConfig().n_mels, EMBEDDING_DIM))
    pooled = []
    for clip in tqdm(split.clips, desc="embed", unit="clip", disable=not progress):
        logmel = logmel_from_file(clip.source).numpy()
        n = len(logmel) // frames_per_embedding
        pooled.append(logmel[:n * frames_per_embedding].reshape(n, frames_per_embedding, -1).mean(axis=1))
    projected = [p @ projection for p in pooled]
    stacked = np.concatenate(projected)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6

    def audioset_index(label: str, source) -> int:
        name = DCASE2018_AUDIOSET_NAMES[label][0] if label in DCASE2018_AUDIOSET_NAMES else label
        if name not in names.names:
            raise InputError(f"{source}: label {label!r} is neither a DCASE 2018 class nor an AudioSet label")
        return names.index(name)

    clips = [EmbeddingClip(Path(clip.source).stem, 0.0, 10.0,
                           tuple(sorted(audioset_index(label, clip.source) for label in clip.labels)),
                           quantize((p - mean) / std)) for clip, p in zip(split.clips, projected)]
    return write_tfrecords(clips, out_dir)
