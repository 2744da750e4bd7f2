"""What the index holds, by id: each live document's content hash and
near-duplicate signature, kept in a side file beside each commit.

A run skips a record whose hash is the one indexed, and checks a new
article against the signatures of those indexed. Read from the columns,
that table costs a run opening every segment and decoding three values per
document (half a second at 20,000 documents) before a 500-article batch
has done anything. So every commit writes the table beside its table of
contents (``_MAIN_<generation>.known``), and the next run reads it in a few
milliseconds; a long-lived writer keeps it in memory between runs.

The file says which commit it describes by a fingerprint of that commit's
table of contents (the generation, and each segment's id, size and deleted
documents; segment ids are random), and a checksum covers it all. A file
that does not describe the live commit exactly (left by a run that died
before its commit, written for an older commit, cut short or garbled) is
ignored and the table is read from the columns as before. It is written
under a temporary name, renamed into place before the table of contents it
describes, and older ones are removed once that is written.

Signatures are looked up by bands of their sketches (as
``dedupe.DuplicateFinder`` does), through a sorted array of band hashes
kept in the file, so a run neither decodes nor indexes the signatures of
documents no new article resembles.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from pathlib import Path

from whoosh.codec.base import Segment
from whoosh.index import TOC, Index

from indexer.dedupe import BAND_SIZE, BANDS, MIN_RESEMBLANCE, Signature, resemblance
from indexer.schema import SegmentColumn

KNOWN_SUFFIX = ".known"
_MAGIC = b"ZHKNOWN1"
_CHECKSUM = struct.Struct("!I")
_FORMAT = 1
#: Bytes of a signature before its sketch (the title key), and of a band.
_TITLE_BYTES = 16
_BAND_BYTES = 4 * BAND_SIZE


def known_file(indexname: str, generation: int) -> str:
    return f"_{indexname}_{generation}{KNOWN_SUFFIX}"


def fingerprint(generation: int, segments: Sequence[Segment]) -> str:
    """What a commit's table of contents holds, in 32 hex digits."""
    digest = hashlib.blake2b(struct.pack("!q", generation), digest_size=16)
    for seg in segments:
        digest.update(seg.segment_id().encode("ascii"))
        digest.update(struct.pack("!qq", seg.doc_count_all(), seg.deleted_count()))
        deleted = sorted(seg.deleted_docs())
        if deleted:
            digest.update(array("q", deleted).tobytes())
    return digest.hexdigest()


def live_columns(ix: Index) -> Iterator[tuple[str, str, Signature | None]]:
    """(id, content hash, duplicate signature) of every live document, read
    from columns (no stored-field decoding)."""
    with ix.reader() as reader:
        for _docnum, doc_id, digest, sig in live_rows(reader):
            yield doc_id, digest, sig


def live_rows(reader) -> Iterator[tuple[int, str, str, Signature | None]]:
    """(document number, id, content hash, duplicate signature) of every
    live document of ``reader``."""
    if reader.doc_count_all() == 0:
        return
    ids = SegmentColumn(reader, "id")
    hashes = SegmentColumn(reader, "hash")
    # Segments written before signatures were kept have none.
    sigs = SegmentColumn(reader, "dupsig")
    for docnum in range(reader.doc_count_all()):
        if reader.is_deleted(docnum):
            continue
        doc_id = ids[docnum]
        value = hashes[docnum]
        yield (
            docnum,
            doc_id.decode("utf-8") if isinstance(doc_id, bytes) else doc_id,
            value.decode("ascii") if value else "",
            Signature.from_bytes(sigs[docnum]),
        )


def _band_keys(sig: bytes) -> list[tuple[int, bytes]]:
    """(hash, band bytes) of each band of a signature's sketch: the title
    key and four of its smallest shingle hashes, as DuplicateFinder's keys."""
    title = sig[:_TITLE_BYTES]
    keys = []
    for band in range(BANDS):
        start = _TITLE_BYTES + band * _BAND_BYTES
        part = sig[start : start + _BAND_BYTES]
        if len(part) < _BAND_BYTES:
            break
        keys.append((zlib.crc32(title + part), part))
    return keys


class KnownDocuments:
    """The live documents' ids, content hashes and signatures, by row.

    Rows are only ever appended: an updated document gets a new row and its
    old one is left dead, so the band index of the rows read from a file
    stays valid as it is; rows added since live in memory until the next
    save, which compacts when dead rows outnumber live ones.
    ``fingerprint`` names the commit the table describes, and is cleared
    by any change until the table is saved for the commit that makes it."""

    def __init__(self) -> None:
        self._ids: list[str | None] = []
        self._hashes: list[str | None] = []
        self._row: dict[str, int] = {}
        # Rows below _base came from a file: their signatures are slices of
        # _blob, their band entries (hash << 32 | row) in the sorted _bands.
        self._base = 0
        self._blob = b""
        self._offsets = array("Q", [0])
        self._bands = array("Q")
        # Rows from _base on: their signatures, and band hash -> rows.
        self._new_sigs: list[bytes] = []
        self._new_bands: dict[int, list[int]] = {}
        self.fingerprint: str | None = None
        #: Where the table came from: "file", "columns" or "empty".
        self.source = "empty"

    # -- building ----------------------------------------------------------

    @classmethod
    def open(cls, ix: Index, cached: KnownDocuments | None = None) -> KnownDocuments:
        """The table of the live commit: ``cached`` when it still describes
        it, else the commit's side file, else read from the columns."""
        toc = ix._read_toc()
        current = fingerprint(toc.generation, toc.segments)
        if cached is not None and cached.fingerprint == current:
            return cached
        table = cls.load(ix, toc)
        if table is not None:
            return table
        table = cls.from_columns(ix)
        table.fingerprint = current
        return table

    @classmethod
    def from_columns(cls, ix: Index) -> KnownDocuments:
        table = cls()
        for doc_id, digest, sig in live_columns(ix):
            table.put(doc_id, digest, sig)
        table.source = "columns"
        return table

    @classmethod
    def load(cls, ix: Index, toc: TOC | None = None) -> KnownDocuments | None:
        """The live commit's side file, or None when it is missing or does
        not describe that commit exactly."""
        toc = toc if toc is not None else ix._read_toc()
        path = Path(ix.storage.folder) / known_file(ix.indexname, toc.generation)
        live = sum(seg.doc_count() for seg in toc.segments)
        return cls.read(path, toc.generation, fingerprint(toc.generation, toc.segments), live)

    @classmethod
    def read(cls, path: Path, generation: int, expected: str, live: int) -> KnownDocuments | None:
        """The table in the side file ``path``, if it describes what
        ``decode`` is told; None when it is missing or does not."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            return cls.decode(data, generation, expected, live)
        except Exception:  # noqa: BLE001 - any fault means the file is not trusted
            return None

    @classmethod
    def decode(cls, data: bytes, generation: int, expected: str, live: int) -> KnownDocuments | None:
        """The table in a side file's ``data``, if it is whole and describes
        the commit ``generation`` of fingerprint ``expected`` and ``live``
        documents; None otherwise."""
        head = len(_MAGIC) + _CHECKSUM.size
        if data[: len(_MAGIC)] != _MAGIC:
            return None
        (checksum,) = _CHECKSUM.unpack_from(data, len(_MAGIC))
        payload = memoryview(data)[head:]
        if zlib.crc32(payload) != checksum:
            return None
        fields = pickle.loads(payload)
        if (
            fields["format"] != _FORMAT
            or fields["byteorder"] != sys.byteorder
            or fields["generation"] != generation
            or fields["fingerprint"] != expected
        ):
            return None
        ids, hashes = pickle.loads(zlib.decompress(fields["table"]))
        offsets = array("Q")
        offsets.frombytes(fields["offsets"])
        bands = array("Q")
        bands.frombytes(fields["bands"])
        blob = fields["sigs"]
        rows = len(ids)
        if len(hashes) != rows or len(offsets) != rows + 1 or offsets[-1] != len(blob):
            return None
        row = {doc_id: n for n, doc_id in enumerate(ids) if doc_id is not None}
        if len(row) != live or fields["live"] != live:
            return None  # a live id twice, or not the commit's documents
        table = cls()
        table._ids, table._hashes, table._row = ids, hashes, row
        table._base, table._blob, table._offsets, table._bands = rows, blob, offsets, bands
        table.fingerprint = expected
        table.source = "file"
        return table

    # -- reading -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._row

    def digest(self, doc_id: str) -> str | None:
        """The content hash indexed for ``doc_id``, None when it is not."""
        row = self._row.get(doc_id)
        return None if row is None else self._hashes[row]

    def ids(self) -> set[str]:
        return set(self._row)

    def rows(self) -> Iterator[tuple[str, str, Signature | None]]:
        """(id, content hash, signature) of every live document."""
        for doc_id, row in self._row.items():
            yield doc_id, self._hashes[row] or "", Signature.from_bytes(self._sig(row))

    def _sig(self, row: int) -> bytes:
        if row >= self._base:
            return self._new_sigs[row - self._base]
        return self._blob[self._offsets[row] : self._offsets[row + 1]]

    def find_duplicate(self, doc_id: str, sig: Signature | None) -> str | None:
        """The id of a live document ``sig`` is a near-duplicate of (same
        title, resemblance at least ``MIN_RESEMBLANCE``), other than
        ``doc_id`` itself; the same answer as ``DuplicateFinder.find``."""
        if sig is None:
            return None
        data = sig.to_bytes()
        title = data[:_TITLE_BYTES]
        seen: set[str] = set()
        for key, part in _band_keys(data):
            for row in self._candidates(key):
                other_id = self._ids[row]
                if other_id is None or other_id == doc_id or other_id in seen:
                    continue
                other = self._sig(row)
                if other[:_TITLE_BYTES] != title or all(part != p for _k, p in _band_keys(other)):
                    continue  # another key with the same hash
                seen.add(other_id)
                if resemblance(sig, Signature.from_bytes(other)) >= MIN_RESEMBLANCE:
                    return other_id
        return None

    def _candidates(self, key: int) -> Iterator[int]:
        bands = self._bands
        i = bisect_left(bands, key << 32)
        while i < len(bands) and bands[i] >> 32 == key:
            yield bands[i] & 0xFFFFFFFF
            i += 1
        yield from self._new_bands.get(key, ())

    # -- changing ----------------------------------------------------------

    def put(self, doc_id: str, digest: str, sig: Signature | None) -> None:
        """Record an added or updated document."""
        self.remove(doc_id)
        self._append(doc_id, digest, sig.to_bytes() if sig is not None else b"")
        self.fingerprint = None

    def _append(self, doc_id: str, digest: str | None, data: bytes) -> None:
        row = len(self._ids)
        self._ids.append(doc_id)
        self._hashes.append(digest)
        self._new_sigs.append(data)
        self._row[doc_id] = row
        for key, _part in _band_keys(data):
            self._new_bands.setdefault(key, []).append(row)

    def remove(self, doc_id: str) -> None:
        row = self._row.pop(doc_id, None)
        if row is not None:
            self._ids[row] = None
            self._hashes[row] = None
            self.fingerprint = None

    # -- writing -----------------------------------------------------------

    def save(
        self, folder: str | os.PathLike[str], indexname: str, generation: int, segments: Sequence[Segment]
    ) -> None:
        """Write the table as the side file of the commit ``generation``
        with ``segments`` (before its table of contents is written)."""
        self.write(Path(folder) / known_file(indexname, generation), generation, fingerprint(generation, segments))

    def write(self, path: Path, generation: int, described: str) -> None:
        """Write the table to ``path``, as describing ``generation`` of
        fingerprint ``described``."""
        if len(self._ids) - len(self._row) > max(len(self._row), 1_000):
            self._compact()
        rows = len(self._ids)
        offsets = array("Q", self._offsets)
        position = offsets[-1]
        for data in self._new_sigs:
            position += len(data)
            offsets.append(position)
        blob = b"".join([self._blob, *self._new_sigs])
        entries = list(self._bands)
        for key, keyed in self._new_bands.items():
            entries.extend((key << 32) | row for row in keyed)
        bands = array("Q", sorted(entries))
        fields = {
            "format": _FORMAT,
            "byteorder": sys.byteorder,
            "generation": generation,
            "fingerprint": described,
            "live": len(self._row),
            "table": zlib.compress(pickle.dumps((self._ids, self._hashes), 5), 1),
            "offsets": offsets.tobytes(),
            "bands": bands.tobytes(),
            "sigs": blob,
        }
        payload = pickle.dumps(fields, 5)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(_MAGIC + _CHECKSUM.pack(zlib.crc32(payload)))
                fh.write(payload)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # From now on this is the file's table: its rows are the base.
        self._base, self._blob, self._offsets, self._bands = rows, blob, offsets, bands
        self._new_sigs, self._new_bands = [], {}
        self.fingerprint = described

    def _compact(self) -> None:
        """Drop the dead rows (their band entries and signatures with them)."""
        live = [(doc_id, self._hashes[row], self._sig(row)) for doc_id, row in self._row.items()]
        self._ids, self._hashes, self._row = [], [], {}
        self._base, self._blob, self._offsets, self._bands = 0, b"", array("Q", [0]), array("Q")
        self._new_sigs, self._new_bands = [], {}
        for doc_id, digest, data in live:
            self._append(doc_id, digest, data)
