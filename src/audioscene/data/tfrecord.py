"""TFRecord files of `tf.SequenceExample`s, read and written without TensorFlow or protobuf.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked CRC-32C of the length | data | uint32 masked CRC-32C of the data

with `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)` (TensorFlow's
`core/lib/hash/crc32c.h`). Each record's data is a serialised `tensorflow.SequenceExample`
(`core/example/example.proto`, `feature.proto`); the messages involved are small enough to parse by
hand from the protobuf wire format:

    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

A feature is decoded as a list of `bytes`, `float` or `int` by its kind; encoding takes
`(kind, values)` pairs with kind one of `"bytes"`, `"float"`, `"int64"`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterable, Iterator

import google_crc32c

from .._io import atomic_open
from ..errors import RecordError

KINDS = ("bytes", "float", "int64")  # Feature's oneof field numbers 1, 2, 3
MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str | os.PathLike) -> Iterator[bytes | RecordError]:
    """The data of each record of a TFRecord file, CRCs checked. A record whose data fails its CRC
    is yielded as a `RecordError` (the framing holds, so the next record is read); a broken frame
    (length CRC, a length past the end of the file, truncation) raises `RecordError`: nothing after
    it can be found. Every length is bounded by the bytes left in the file before it is read."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        number = 0
        while header := f.read(12):
            if len(header) < 12:
                raise RecordError(f"{path}: record {number}: truncated header ({len(header)} of 12 bytes)")
            length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
            if masked_crc(length_bytes) != length_crc:
                raise RecordError(f"{path}: record {number}: length CRC mismatch (corrupt file)")
            length, left = struct.unpack("<Q", length_bytes)[0], size - f.tell() - 4
            if length > left:
                raise RecordError(f"{path}: record {number}: truncated (a length of {length} bytes, "
                                  f"{max(left, 0)} left in the file)")
            data, footer = f.read(length), f.read(4)
            if len(data) < length or len(footer) < 4:
                raise RecordError(f"{path}: record {number}: truncated ({len(data)} of {length} bytes)")
            if masked_crc(data) != struct.unpack("<I", footer)[0]:
                yield RecordError(f"{path}: record {number}: data CRC mismatch (corrupt record)")
            else:
                yield data
            number += 1


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """Write records as a TFRecord file (atomically)."""
    with atomic_open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data)))


# --- protobuf wire format --------------------------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]  # IndexError when truncated
    if byte < 0x80:  # most keys and lengths: one byte
        return byte, pos + 1
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """`(field number, wire type, value)` of a message: an int for varints, bytes otherwise; every
    length is bounded by the message."""
    fields, pos, end = [], 0, len(data)
    try:
        while pos < end:
            key, pos = _varint(data, pos)
            wire = key & 7
            if wire == 2:
                length, pos = _varint(data, pos)
                value, pos = data[pos:pos + length], pos + length
            elif wire == 0:
                value, pos = _varint(data, pos)
            elif wire in (1, 5):
                size = 8 if wire == 1 else 4
                value, pos = data[pos:pos + size], pos + size
            else:
                raise ValueError(f"field {key >> 3}: unsupported wire type {wire}")
            if pos > end:
                raise ValueError(f"field {key >> 3}: truncated")
            fields.append((key >> 3, wire, value))
    except IndexError:
        raise ValueError("truncated message") from None
    return fields


WIRE_NAMES = {0: "a varint", 1: "a fixed64", 2: "a length-delimited field", 5: "a fixed32"}


def _expect(number: int, wire: int, allowed: tuple[int, ...], what: str) -> None:
    if wire not in allowed:
        raise ValueError(f"field {number}: {WIRE_NAMES.get(wire, wire)} where {what} is expected")


def _feature(data: bytes) -> list:
    """A `Feature`'s values: bytes, floats or ints."""
    values: list = []
    for kind, wire, payload in _fields(data):
        if kind not in (1, 2, 3):
            continue
        _expect(kind, wire, (2,), f"a {KINDS[kind - 1]} list")
        for number, wire, value in _fields(payload):
            if number != 1:
                continue
            if kind == 1:
                _expect(number, wire, (2,), "a bytes value")
                values.append(bytes(value))
            elif kind == 2:  # packed (wire 2) or one fixed32 per value (wire 5)
                _expect(number, wire, (2, 5), "float values")
                if len(value) % 4:
                    raise ValueError(f"field {number}: {len(value)} bytes of packed floats, not a multiple of 4")
                values.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif wire == 2:  # packed int64
                pos = 0
                while pos < len(value):
                    item, pos = _varint(value, pos)
                    values.append(item - (1 << 64) if item >= 1 << 63 else item)
            else:
                _expect(number, wire, (0, 2), "int64 values")
                values.append(value - (1 << 64) if value >= 1 << 63 else value)
    return values


def _map(data: bytes, parse) -> dict:
    """Entries of a `map<string, ...>` field's message (`Features` or `FeatureLists`)."""
    out = {}
    for number, wire, entry in _fields(data):
        if number != 1:
            continue
        _expect(number, wire, (2,), "a map entry")
        key, value = "", b""
        for field, wire, item in _fields(entry):
            if field in (1, 2):
                _expect(field, wire, (2,), "a map key" if field == 1 else "a map value")
            if field == 1:
                key = bytes(item).decode("utf-8")
            elif field == 2:
                value = item
        out[key] = parse(value)
    return out


def _feature_list(data: bytes) -> list[list]:
    steps = []
    for number, wire, item in _fields(data):
        if number == 1:
            _expect(number, wire, (2,), "a feature")
            steps.append(_feature(item))
    return steps


def parse_sequence_example(data: bytes) -> tuple[dict[str, list], dict[str, list[list]]]:
    """`(context, feature_lists)` of a serialised `SequenceExample`; raises `RecordError` when
    malformed (a wrong wire type anywhere included: nothing is read as what it is not)."""
    context, feature_lists = {}, {}
    try:
        for number, wire, value in _fields(data):
            if number in (1, 2):
                _expect(number, wire, (2,), "a message")
            if number == 1:
                context = _map(value, _feature)
            elif number == 2:
                feature_lists = _map(value, _feature_list)
    except (ValueError, struct.error) as exc:  # UnicodeDecodeError is a ValueError
        raise RecordError(str(exc)) from None
    return context, feature_lists


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as two's complement, 10 bytes
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _encode_varint(len(payload)) + payload


def _encode_feature(kind: str, values) -> bytes:
    if kind == "bytes":
        body = b"".join(_length_delimited(1, bytes(v)) for v in values)
    elif kind == "float":
        body = _length_delimited(1, struct.pack(f"<{len(values)}f", *values)) if len(values) else b""
    elif kind == "int64":
        body = _length_delimited(1, b"".join(_encode_varint(int(v)) for v in values)) if len(values) else b""
    else:
        raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(KINDS)}")
    return _length_delimited(KINDS.index(kind) + 1, body)


def _encode_map(entries: dict, encode) -> bytes:
    return b"".join(_length_delimited(1, _length_delimited(1, key.encode("utf-8")) + _length_delimited(2, encode(value)))
                    for key, value in entries.items())


def encode_sequence_example(context: dict[str, tuple[str, list]],
                            feature_lists: dict[str, tuple[str, list[list]]]) -> bytes:
    """A serialised `SequenceExample`; `context` maps names to `(kind, values)`, `feature_lists`
    to `(kind, [values of each step])`."""
    features = _encode_map(context, lambda item: _encode_feature(*item))
    lists = _encode_map(feature_lists, lambda item: b"".join(_length_delimited(1, _encode_feature(item[0], step))
                                                             for step in item[1]))
    return _length_delimited(1, features) + _length_delimited(2, lists)
