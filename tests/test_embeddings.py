"""Table 2's embedding baselines: the released-feature reader (checked against the `tfrecord`
package's protobuf definitions of the official format), the two models' sizes as the authors' code
builds them, and a training run on the synthetic stand-in."""

import logging

import numpy as np
import pytest
import tfrecord  # the reference implementation of the format (test extra)
import torch
from helpers import assert_one_line_error, run_cli

from audioscene import models
from audioscene.checkpoints import Checkpoint, list_epochs
from audioscene.data import DataSpec
from audioscene.data.embeddings import (
    EmbeddingClip,
    EmbeddingDataset,
    EmbeddingError,
    dequantize,
    quantize,
    read_tfrecord,
    write_synthetic,
    write_tfrecords,
)
from audioscene.data.tfrecord import RecordError, read_records
from audioscene.errors import InputError


def _clips(rng, n=4, lengths=(10, 9, 10, 3)):
    return [EmbeddingClip(f"vid{i:08d}xyz", 30.0 + i, 40.0 + i, tuple(sorted(rng.choice(527, 2, replace=False))),
                          rng.integers(0, 256, (lengths[i % len(lengths)], 128), dtype=np.uint8)) for i in range(n)]


def test_records_round_trip_through_the_official_definitions(tmp_path):
    rng = np.random.default_rng(0)
    clips = _clips(rng)
    [ours] = write_tfrecords(clips, tmp_path / "ours")
    theirs = list(tfrecord.reader.sequence_loader(str(ours), None))
    for clip, (context, lists) in zip(clips, theirs):
        assert context["video_id"].decode() == clip.video_id
        assert list(context["labels"]) == list(clip.labels)
        assert context["start_time_seconds"][0] == pytest.approx(clip.start)
        assert np.array_equal(np.stack([np.frombuffer(step, np.uint8) for step in lists["audio_embedding"]]),
                              clip.embedding)  # uint8 codes: integers, exact
    (tmp_path / "ref").mkdir()
    writer = tfrecord.TFRecordWriter(str(tmp_path / "ref" / "a.tfrecord"))
    for clip in clips:
        writer.write({"video_id": (clip.video_id.encode(), "byte"), "start_time_seconds": (clip.start, "float"),
                      "end_time_seconds": (clip.end, "float"), "labels": (list(clip.labels), "int")},
                     {"audio_embedding": ([row.tobytes() for row in clip.embedding], "byte")})
    writer.close()
    read, skipped = read_tfrecord(tmp_path / "ref" / "a.tfrecord")
    assert skipped == 0 and len(read) == len(clips)
    for got, clip in zip(read, clips):
        assert (got.video_id, got.labels, got.start) == (clip.video_id, clip.labels, clip.start)
        assert got.embedding.tobytes() == clip.embedding.tobytes()  # byte for byte
    again = read_tfrecord(ours)[0]
    assert [c.embedding.tobytes() for c in again] == [c.embedding.tobytes() for c in clips]


def test_short_clips_are_padded_and_counted(tmp_path, caplog):
    clips = _clips(np.random.default_rng(1))
    write_tfrecords(clips, tmp_path)
    with caplog.at_level(logging.INFO):
        dataset = DataSpec.parse(f"embeddings:{tmp_path}").open()
    assert isinstance(dataset, EmbeddingDataset) and len(dataset) == 4 and len(dataset.label_set) == 527
    assert "(2 with fewer than 10 embeddings, zero-padded" in caplog.text
    x, target = dataset[1]
    assert x.shape == (10, 128) and x.dtype == torch.float32
    # exact: the data set applies this same function to the same codes in this process (times 1.0)
    assert torch.equal(x[:9], torch.from_numpy(dequantize(clips[1].embedding))) and not x[9].any()
    assert target.sum() == 2 and target[list(clips[1].labels)].all()
    assert dataset.valid[3].sum() == 3


def test_quantisation_inverts_vggish_postprocess():
    codes = np.arange(256, dtype=np.uint8)
    values = dequantize(codes)
    assert values[0] == -2.0 and values[-1] == pytest.approx(2.0) and np.array_equal(quantize(values), codes)
    assert np.array_equal(quantize(np.array([-9.0, 9.0])), [0, 255])  # clipped to [-2, 2] first


def _corrupt(path, offset, value=None):
    data = bytearray(path.read_bytes())
    if value is None:
        del data[offset:]
    else:
        data[offset] ^= value
    path.write_bytes(bytes(data))


def test_bad_records_are_named_by_file_and_record(tmp_path):
    rng = np.random.default_rng(2)
    clips = _clips(rng, n=3, lengths=(10,))
    [path] = write_tfrecords(clips, tmp_path / "crc")
    first_length = 12 + len(next(read_records(path))) + 4
    _corrupt(path, first_length + 20, 0x01)  # a byte inside record 1's data
    with pytest.raises(RecordError, match=r"part-00000.tfrecord: record 1: data CRC mismatch"):
        read_tfrecord(path)
    kept, skipped = read_tfrecord(path, skip_bad=True)
    assert [c.video_id for c in kept] == [clips[0].video_id, clips[2].video_id] and skipped == 1  # only record 1 lost
    [path] = write_tfrecords(clips, tmp_path / "cut")
    _corrupt(path, path.stat().st_size - 7)
    with pytest.raises(RecordError, match="record 2: truncated"):
        read_tfrecord(path)
    bad = [EmbeddingClip("v", 0.0, 10.0, (3, 527), clips[0].embedding)]
    [path] = write_tfrecords(bad, tmp_path / "label")
    with pytest.raises(EmbeddingError, match=r"record 0: label index 527 outside the 527 classes"):
        read_tfrecord(path)
    short = [EmbeddingClip("v", 0.0, 10.0, (3,), np.zeros((10, 127), np.uint8))]
    [path] = write_tfrecords(short, tmp_path / "width")
    with pytest.raises(EmbeddingError, match="record 0: embedding 0 is not one string of 128 bytes"):
        read_tfrecord(path)
    with pytest.raises(EmbeddingError, match="no \\*.tfrecord files"):
        EmbeddingDataset.from_folder(tmp_path / "missing")


def _trainable(*sizes_with_bias, norms=()):
    """Trainable parameters of Keras Dense layers (`(inputs, units)`, weights + bias) and batch norms (γ, β)."""
    return sum(n_in * n_out + n_out for n_in, n_out in sizes_with_bias) + sum(2 * n for n in norms)


@pytest.mark.parametrize("name, expected", [
    # Yu et al.'s main.py: BN(128); 3 × Dense(600)+BN; per level Dense(527)+BN for cla and att; Dense(527)+BN out
    ("yu_multilevel_att", _trainable((128, 600), (600, 600), (600, 600), *[(600, 527)] * 4, (1054, 527),
                                     norms=(128, 600, 600, 600, 527, 527, 527, 527, 527))),
    # Kong et al.'s keras/main.py, feature_level_attention: 3 × Dense(1024)+BN; cla, att Dense(1024); BN; Dense(527)
    ("kong_att", _trainable((128, 1024), (1024, 1024), (1024, 1024), (1024, 1024), (1024, 1024), (1024, 527),
                            norms=(1024, 1024, 1024, 1024))),
])
def test_models_have_the_authors_sizes_and_shapes(name, expected):
    torch.manual_seed(0)
    model = models.create(name)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.frame_hop == 0.96 and not model.takes_audio and not model.exportable
    out = model(torch.randn(4, 10, 128))
    assert out["clipwise"].shape == (4, 527) and out["framewise"].shape == (4, 10, 527)
    assert ((out["clipwise"] > 0) & (out["clipwise"] < 1)).all()
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(m.num_batches_tracked == 1 for m in batch_norms)  # frame outputs do not move the statistics
    model.eval()
    with torch.no_grad():
        shorter = model(torch.randn(2, 9, 128))
    assert shorter["framewise"].shape == (2, 9, 527)
    with pytest.raises(InputError, match=r"\[batch, frames, 128\]"):
        model(torch.randn(2, 10, 64))


def test_baselines_train_and_evaluate_on_the_synthetic_stand_in(tiny_data, tmp_path):
    for split in ("train", "eval"):
        write_synthetic(tiny_data / split, tmp_path / "emb" / split, seed=0, progress=False)
    again = write_synthetic(tiny_data / "eval", tmp_path / "again", seed=0, progress=False)
    assert again[0].read_bytes() == (tmp_path / "emb" / "eval" / again[0].name).read_bytes()  # reproducible
    for name in ("yu_multilevel_att", "kong_att"):
        run = tmp_path / name
        result = run_cli("train", "--data", f"embeddings:{tmp_path / 'emb' / 'train'}", "--eval-data",
                         f"embeddings:{tmp_path / 'emb' / 'eval'}", "--model", name, "--model-arg", "width=64", "--epochs", "3",
                         "--batch-size", "16", "--lr", "1e-3", "--out", str(run))
        assert result.returncode == 0, result.stderr[-2000:]
        history = Checkpoint.load(list_epochs(run)[-1]).history
        assert history[-1]["train_loss"] < history[0]["train_loss"]
        result = run_cli("evaluate", "--run", str(run), "--data", f"embeddings:{tmp_path / 'emb' / 'eval'}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{name} (peak, epoch" in result.stdout and "Avg of 3" in result.stdout
        assert {"yu_multilevel_att": "Yu et al.", "kong_att": "Kong et al."}[name] in result.stdout  # its paper row
    assert_one_line_error(run_cli("tag", str(tiny_data / "eval" / "audio"), "--run", str(run)),
                          "does not take audio (e.g. it reads AudioSet's released embeddings)")
    report = ["report", "--runs", f"Kong={run}", "--eval-data", str(tiny_data / "eval"), "--bootstrap", "100",
              "-o", str(tmp_path / "report")]
    assert_one_line_error(run_cli(*report), "give --embeddings-data embeddings:DIR")
    result = run_cli(*report, "--embeddings-data", f"embeddings:{tmp_path / 'emb' / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Kong (peak, epoch" in result.stdout and "| Kong et al." in result.stdout.replace("  ", " ")


def _frame(data: bytes, length: int | None = None) -> bytes:
    """One TFRecord frame around `data`, its length field (and that field's CRC) saying `length`."""
    import struct

    from audioscene.data.tfrecord import masked_crc

    header = struct.pack("<Q", len(data) if length is None else length)
    return header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))


@pytest.mark.parametrize("length", [2**36, 2**62, 2**63, 2**64 - 1])
def test_a_frame_length_past_the_end_of_the_file_is_refused_before_reading(tmp_path, length):
    path = tmp_path / "big.tfrecord"
    path.write_bytes(_frame(b"x" * 100, length))
    with pytest.raises(RecordError, match=f"record 0: truncated \\(a length of {length} bytes, 100 left"):
        list(read_records(path))


def test_wrong_wire_types_are_errors_not_allocations_or_zeros(tmp_path):
    import tracemalloc

    from audioscene.data.tfrecord import _encode_varint, _key, _length_delimited

    def record(embedding_step: bytes, context_feature: bytes | None = None) -> bytes:
        labels = _length_delimited(1, _length_delimited(1, b"labels") + _length_delimited(2, _length_delimited(
            3, _length_delimited(1, _encode_varint(3)))))
        video = _length_delimited(1, _length_delimited(1, b"video_id") + _length_delimited(2, context_feature or
                                  _length_delimited(1, _length_delimited(1, b"abc"))))
        lists = _length_delimited(1, _length_delimited(1, b"audio_embedding") + _length_delimited(
            2, _length_delimited(1, embedding_step)))
        return _length_delimited(1, video + labels) + _length_delimited(2, lists)

    varint_bytes = _length_delimited(1, _key(1, 0) + _encode_varint(2**31))  # "bytes" as a varint of 2^31
    fixed32_floats = _key(2, 5) + b"\0\0\x80?"  # a float list written as a fixed32
    cases = {
        "a varint where a bytes value is expected": record(varint_bytes),
        "a fixed32 where a float list is expected": record(_length_delimited(1, _length_delimited(1, bytes(128))),
                                                            context_feature=fixed32_floats),
    }
    for expected, data in cases.items():
        path = tmp_path / "bad.tfrecord"
        path.write_bytes(_frame(data))
        tracemalloc.start()
        with pytest.raises(EmbeddingError, match=expected):
            read_tfrecord(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 10_000_000  # never the 2 GiB the varint claims
        assert read_tfrecord(path, skip_bad=True) == ([], 1)
    good = _clips(np.random.default_rng(4), n=3, lengths=(10,))
    [path] = write_tfrecords(good, tmp_path / "mixed")
    frames = path.read_bytes()
    path.write_bytes(frames + _frame(cases["a varint where a bytes value is expected"]) + frames)
    kept, skipped = read_tfrecord(path, skip_bad=True)
    assert (len(kept), skipped) == (6, 1)  # exact counts: the bad record only


def test_writing_embeddings_into_a_used_folder_replaces_its_parts(tmp_path):
    clips = _clips(np.random.default_rng(5), n=250, lengths=(10,))
    out = tmp_path / "emb"
    assert len(write_tfrecords(clips, out)) == 3
    assert [p.name for p in write_tfrecords(clips[:16], out)] == ["part-00000.tfrecord"]
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.tfrecord"]  # the old parts 1 and 2 are gone
    assert len(EmbeddingDataset.from_folder(out, progress=False)) == 16
