"""insightface MXNet RecordIO packs (``train.rec`` + ``train.idx``) without mxnet.

Record framing (dmlc-core): ``uint32 magic 0xced7230a``, ``uint32 lrecord`` (upper 3 bits
``cflag``, lower 29 bits the payload length), the payload, zero padding to 4 bytes. A payload
that contains the magic at a 4-byte-aligned offset is split there into parts (cflag 1 start,
2 middle, 3 end) and joined back with the magic in between. The ``.idx`` is text
``key<TAB>offset`` per line.

Payload (``mx.recordio.pack``): ``IRHeader`` struct ``<IfQQ`` (flag, label, id, id2); if
``flag > 0``, ``flag`` float32 labels follow and ``label`` is unused; then the image bytes.
insightface packs: record 0 is a header whose labels ``[a, b)`` are the keys of identity
records; images are the keys ``1..a-1``.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, TextIO

import numpy as np

from ..atomic import atomic_path
from ..errors import CorefaceError
from .crops import decode_crop

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")


@dataclass(frozen=True)
class IRHeader:
    """mxnet's image-record header; ``labels`` holds the float labels (one, or ``flag`` many)."""

    flag: int
    labels: tuple[float, ...]
    id: int = 0
    id2: int = 0

    @property
    def label(self) -> int:
        """The first label as an integer class id."""
        return int(self.labels[0])


def pack(header: IRHeader, payload: bytes) -> bytes:
    """IRHeader + payload as one record's bytes (``flag`` = number of labels when > 1)."""
    if len(header.labels) == 1 and header.flag == 0:
        return _HEADER.pack(0, header.labels[0], header.id, header.id2) + payload
    labels = np.asarray(header.labels, dtype="<f4")
    return _HEADER.pack(len(labels), 0.0, header.id, header.id2) + labels.tobytes() + payload


def unpack(record: bytes, source: str = "record") -> tuple[IRHeader, bytes]:
    """One record's bytes -> (IRHeader, image bytes)."""
    if len(record) < _HEADER.size:
        raise CorefaceError(f"{source}: record of {len(record)} bytes is shorter than its {_HEADER.size}-byte header")
    flag, label, id1, id2 = _HEADER.unpack_from(record)
    start = _HEADER.size
    if flag == 0:
        return IRHeader(0, (float(label),), id1, id2), record[start:]
    end = start + 4 * flag
    if end > len(record):
        raise CorefaceError(f"{source}: header says {flag} labels but the record holds {len(record)} bytes")
    labels = tuple(float(v) for v in np.frombuffer(record[start:end], dtype="<f4"))
    return IRHeader(flag, labels, id1, id2), record[end:]


def _read_record_at(fd: int, offset: int, source: Path) -> tuple[bytes, int]:
    """The (re-joined) payload of the record at ``offset``, and the offset after it.

    Positional reads (``os.pread``) leave no shared file position, so forked data-loader
    workers can read one open file at the same time.
    """
    parts: list[bytes] = []
    while True:
        head = os.pread(fd, 8, offset)
        if len(head) < 8:
            raise CorefaceError(f"{source}: truncated record at offset {offset}")
        magic, lrecord = struct.unpack("<II", head)
        if magic != MAGIC:
            raise CorefaceError(f"{source}: bad RecordIO magic 0x{magic:08x} at offset {offset}")
        cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
        data = os.pread(fd, length, offset + 8)
        if len(data) < length:
            raise CorefaceError(f"{source}: truncated record at offset {offset} ({len(data)} of {length} bytes)")
        if cflag not in (0, 1) and not parts:
            raise CorefaceError(f"{source}: record at offset {offset} continues a record that never started (cflag {cflag})")
        parts.append(data)
        offset += 8 + length + (-length % 4)
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts), offset


class RecordIOReader:
    """Random access to a ``.rec`` by key, through its ``.idx`` (or a scan when absent)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.path = Path(rec_path)
        if not self.path.is_file():
            raise CorefaceError(f"{self.path}: RecordIO file not found")
        idx = Path(idx_path) if idx_path else self.path.with_suffix(".idx")
        self._fh: BinaryIO | None = None
        try:
            self.offsets = self._read_index(idx) if idx.is_file() else self._scan()
        except CorefaceError:
            self.close()
            raise

    def _fd(self) -> int:
        if self._fh is None:  # opened lazily, so the reader pickles into data-loader workers
            self._fh = open(self.path, "rb")
        return self._fh.fileno()

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_fh": None}

    def _read_index(self, idx: Path) -> dict[int, int]:
        offsets = {}
        for number, line in enumerate(idx.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise CorefaceError(f"{idx}: line {number} is not 'key<TAB>offset'")
            offsets[int(fields[0])] = int(fields[1])
        return offsets

    def _scan(self) -> dict[int, int]:
        """Offsets of every record in file order, keyed 0, 1, 2, ... (no index file)."""
        size, offset, offsets = self.path.stat().st_size, 0, {}
        while offset < size:
            offsets[len(offsets)] = offset
            offset = _read_record_at(self._fd(), offset, self.path)[1]
        return offsets

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RecordIOReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read(self, key: int) -> bytes:
        """The raw payload of record ``key``."""
        if key not in self.offsets:
            raise CorefaceError(f"{self.path}: no record with key {key}")
        return _read_record_at(self._fd(), self.offsets[key], self.path)[0]

    def read_unpacked(self, key: int) -> tuple[IRHeader, bytes]:
        """Record ``key`` split into its IRHeader and image bytes."""
        return unpack(self.read(key), f"{self.path} record {key}")


class InsightfaceRecordDataset:
    """Image records of an insightface pack: ``dataset[i] -> (uint8 BGR crop, label)``.

    With a header record 0 (``flag > 0``), images are keys ``1..a-1``; otherwise every key.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.reader = RecordIOReader(rec_path, idx_path)
        keys = self.reader.keys
        if not keys:
            raise CorefaceError(f"{self.reader.path}: no records")
        self.identity_range: tuple[int, int] | None = None
        first = self.reader.read_unpacked(keys[0])[0] if keys[0] == 0 else None
        if first is not None and first.flag > 0:
            start, end = int(first.labels[0]), int(first.labels[1])
            self.identity_range = (start, end)
            keys = [k for k in keys if 0 < k < start]
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        key = self.keys[index]
        header, image = self.reader.read_unpacked(key)
        return decode_crop(image, f"{self.reader.path} record {key}"), header.label

    @property
    def num_classes(self) -> int:
        """Identities from the header record, else the number of distinct labels."""
        if self.identity_range is not None:
            return self.identity_range[1] - self.identity_range[0]
        return len({self.reader.read_unpacked(k)[0].label for k in self.keys})


def _frame(payload: bytes) -> bytes:
    """dmlc framing of one payload, split at 4-byte-aligned occurrences of the magic."""
    cuts, pos = [], payload.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:
            cuts.append(pos)
        pos = payload.find(_MAGIC_BYTES, pos + 1)
    parts = [payload[a:b] for a, b in zip([0] + [c + 4 for c in cuts], cuts + [len(payload)])]
    flags = [0] if len(parts) == 1 else [1] + [2] * (len(parts) - 2) + [3]
    out = bytearray()
    for cflag, part in zip(flags, parts):
        out += struct.pack("<II", MAGIC, (cflag << 29) | len(part)) + part + b"\0" * (-len(part) % 4)
    return bytes(out)


@contextlib.contextmanager
def record_writer(rec_path: str | Path, idx_path: str | Path | None = None) -> Iterator["_Writer"]:
    """Write a ``.rec`` and its ``.idx`` atomically: ``with record_writer(p) as w: w.write(key, payload)``."""
    rec_path = Path(rec_path)
    idx = Path(idx_path) if idx_path else rec_path.with_suffix(".idx")
    with atomic_path(rec_path) as rec_tmp, atomic_path(idx) as idx_tmp:
        with open(rec_tmp, "wb") as rec_fh, open(idx_tmp, "w") as idx_fh:
            yield _Writer(rec_fh, idx_fh)


class _Writer:
    def __init__(self, rec_fh: BinaryIO, idx_fh: TextIO) -> None:
        self._rec, self._idx = rec_fh, idx_fh
        self._first_size = 0

    def write(self, key: int, payload: bytes) -> None:
        """Append record ``key``."""
        framed = _frame(payload)
        if self._rec.tell() == 0:
            self._first_size = len(framed)
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        self._rec.write(framed)

    def rewrite_header(self, payload: bytes) -> None:
        """Replace the first record by a payload of the same framed size."""
        framed = _frame(payload)
        if len(framed) != self._first_size:
            raise ValueError("the new first record must have the same framed size")
        end = self._rec.tell()
        self._rec.seek(0)
        self._rec.write(framed)
        self._rec.seek(end)


def write_insightface_pack(rec_path: str | Path, samples: Iterable[tuple[bytes, int]]) -> tuple[int, int]:
    """Pack encoded images with labels as insightface does; returns (images, identities).

    Samples must come grouped by label (as an ImageFolder yields them). Layout: header
    record 0, images at keys 1..n, then one record per identity with its image range.
    """
    ranges: dict[int, list[int]] = {}
    with record_writer(rec_path) as writer:
        writer.write(0, pack(IRHeader(2, (0.0, 0.0)), b""))  # placeholder, rewritten below
        key = 0
        for key, (image, label) in enumerate(samples, 1):
            if label in ranges and ranges[label][1] != key:
                raise CorefaceError(f"{rec_path}: samples of label {label} are not contiguous")
            ranges.setdefault(label, [key, key])[1] = key + 1
            writer.write(key, pack(IRHeader(0, (float(label),)), image))
        first_identity = key + 1
        for offset, label in enumerate(sorted(ranges)):
            start, end = ranges[label]
            writer.write(first_identity + offset, pack(IRHeader(2, (float(start), float(end))), b""))
        writer.rewrite_header(pack(IRHeader(2, (float(first_identity), float(first_identity + len(ranges)))), b""))
    return key, len(ranges)
