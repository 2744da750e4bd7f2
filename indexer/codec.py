"""Writing Whoosh's W3 segments without its per-term overhead.

A fresh build spends most of its time after the documents are analysed,
when Whoosh turns the sorted postings into the postings and terms files:
for every term it makes several method calls, pickles the block header
and the block, zlib-compresses even a two-byte block, asks the lengths
column for every posting's field length, and hashes the key with MD5.
Most terms of a Chinese corpus (the bigrams above all) occur in one or two
documents, so that per-term cost is the build.

``FastCodec`` writes the same W3 format in one tight pass: blocks too small
to gain from compression are stored plain (each block header records its
compression, so readers need nothing new), field lengths are read once
per field, the terms table uses CRC32 (its header records the hash type),
and output is written in large chunks. Any W3 reader opens the result;
segments written here are read through ``CachingTermsReader``.
"""

from __future__ import annotations

import itertools
import pickle
import zlib
from pickle import dumps
from struct import Struct
from typing import Any

from whoosh.codec.whoosh3 import WHOOSH3_HEADER_MAGIC, W3Codec, W3FieldWriter, W3TermInfo, W3TermsReader
from whoosh.filedb import filetables
from whoosh.reading import TermNotFound
from whoosh.system import pack_int, pack_ushort
from whoosh.util.numeric import length_to_byte
from whoosh.util.numlists import GrowableArray
from whoosh.writing import PostingPool, SegmentWriter

#: Postings per block, as Whoosh's default.
BLOCK_LIMIT = 128
#: Pickled blocks shorter than this are stored uncompressed.
COMPRESS_MIN_BYTES = 256
#: Postings per pickled chunk of a spilled run.
_RUN_CHUNK = 16_384
#: Bytes buffered before a write to the postings or terms file.
_FLUSH_BYTES = 1 << 22

_TERMINFO = W3TermInfo._struct
_EXTENT = Struct("!qi")  # pack_long(offset) + pack_int(length)
_MAGIC_AND_LENGTH = Struct("!4si")
_KEY_VALUE_LENGTHS = Struct("!ii")
_POINTER = Struct("!Iq")
_NULL_SLOT = (0, 0)
_CRC_HASH = 1  # filetables._hash_functions[1]
#: Whoosh pickles blocks with protocol 2, which stores bytes through a
#: ``_codecs.encode`` call: five times slower to write than protocol 4,
#: which ``pickle.loads`` reads just the same.
_PROTOCOL = 4


class FastCodec(W3Codec):
    """W3 with a faster field writer (see the module docstring)."""

    def __init__(self, compression: int = 3) -> None:
        super().__init__(blocklimit=BLOCK_LIMIT, compression=compression)

    def field_writer(self, storage, segment):
        return FastFieldWriter(self, storage, segment)

    def terms_reader(self, storage, segment):
        tiname = segment.make_filename(self.TERMS_EXT)
        tilen = storage.file_length(tiname)
        tifile = storage.open_file(tiname)
        postfile = segment.open_file(storage, self.POSTS_EXT)
        return CachingTermsReader(self, tifile, tilen, postfile)


class CachingTermsReader(W3TermsReader):
    """Remembers the term infos it has looked up.

    Building the matchers of one query asks about each term several times
    (is it there, how many documents hold it, where are its postings), and
    every ask is an on-disk hash lookup in Python. A searcher lives as long
    as its index generation, so the infos stay right; the memo is bounded.
    """

    MAX_ENTRIES = 200_000

    def __init__(self, codec, dbfile, length, postfile) -> None:
        super().__init__(codec, dbfile, length, postfile)
        self._infos: dict[bytes, W3TermInfo | None] = {}

    def _info(self, fieldname: str, tbytes: bytes) -> W3TermInfo | None:
        key = self._keycoder(fieldname, tbytes)
        infos = self._infos
        try:
            return infos[key]
        except KeyError:
            pass
        try:
            info = W3TermInfo.from_bytes(self._tindex[key])
        except KeyError:
            info = None
        if len(infos) >= self.MAX_ENTRIES:
            infos.clear()
        infos[key] = info
        return info

    def __contains__(self, term) -> bool:
        return self._info(*term) is not None

    def term_info(self, fieldname: str, tbytes: bytes) -> W3TermInfo:
        info = self._info(fieldname, tbytes)
        if info is None:
            raise TermNotFound(f"No term {fieldname}:{tbytes!r}")
        return info

    def frequency(self, fieldname: str, tbytes: bytes) -> float:
        info = self._info(fieldname, tbytes)
        return 0 if info is None else info.weight()

    def doc_frequency(self, fieldname: str, tbytes: bytes) -> int:
        info = self._info(fieldname, tbytes)
        return 0 if info is None else info.doc_frequency()


class FastSegmentWriter(SegmentWriter):
    """Whoosh's segment writer with ``FastCodec`` and ``PostingsPool``
    (``SegmentWriter`` takes a pool class argument but ignores it)."""

    def __init__(self, ix, limitmb: int = 128, **kwargs) -> None:
        kwargs.setdefault("codec", FastCodec())
        super().__init__(ix, limitmb=limitmb, **kwargs)
        self.pool = PostingsPool(self._tempstorage, self.newsegment, limitmb=limitmb)


class PostingsPool(PostingPool):
    """Whoosh's external-sort pool of postings, bounded by a count of
    postings instead of estimating every posting's size in Python."""

    #: Bytes a pooled posting takes in memory, roughly.
    POSTING_BYTES = 200

    def __init__(self, tempstore, segment, limitmb: int = 128, **kwargs) -> None:
        super().__init__(tempstore, segment, limitmb=limitmb, **kwargs)
        self._room = max(50_000, self.limit // self.POSTING_BYTES)

    def add(self, item) -> None:
        current = self.current
        current.append(item)
        if len(current) >= self._room:
            self.save()

    # Runs spilled to disk: Whoosh pickles every posting on its own with
    # protocol 2 (slow for bytes); these are lists of postings, protocol 5.

    def _write_run(self, f, items) -> None:
        items = items if isinstance(items, list) else iter(items)
        try:
            if isinstance(items, list):
                for first in range(0, len(items), _RUN_CHUNK):
                    pickle.dump(items[first : first + _RUN_CHUNK], f, 5)
            else:
                while chunk := list(itertools.islice(items, _RUN_CHUNK)):
                    pickle.dump(chunk, f, 5)
        finally:
            f.close()

    def _read_run(self, path):
        f = self._open_run(path)
        try:
            while True:
                try:
                    chunk = pickle.load(f)
                except EOFError:
                    return
                yield from chunk
        finally:
            f.close()
            self._remove_run(path)


class _TermTable(filetables.OrderedHashWriter):
    """Whoosh's ordered on-disk hash of terms, keyed by CRC32 and filled in
    bulk from keys that are already sorted."""

    def __init__(self, dbfile) -> None:
        filetables.HashWriter.__init__(self, dbfile, hashtype=_CRC_HASH)
        self.index = GrowableArray("I")
        self.lastkey = b""
        self._parts: list[bytes] = []
        self._pending = 0
        self._pos = dbfile.tell()

    def add(self, key: bytes, value: bytes) -> None:
        """Add a key greater than any added before (``add_postings``
        checks the order of the stream)."""
        pos = self._pos
        self.index.append(pos)
        h = zlib.crc32(key)
        self.buckets[h & 255].append((h, pos))
        part = _KEY_VALUE_LENGTHS.pack(len(key), len(value)) + key + value
        self._parts.append(part)
        self._pos = pos + len(part)
        self._pending += len(part)
        self.lastkey = key
        if self._pending > _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self.dbfile.write(b"".join(self._parts))
            self._parts = []
            self._pending = 0

    def _write_hashes(self) -> None:
        # Whoosh's layout (256 open-addressing tables, twice as many slots
        # as entries), packed a table at a time.
        self.flush()
        dbfile = self.dbfile
        for entries in self.buckets:
            numslots = 2 * len(entries)
            self.directory.append((dbfile.tell(), numslots))
            if not numslots:
                continue
            table = [_NULL_SLOT] * numslots
            for entry in entries:
                slot = (entry[0] >> 8) % numslots
                while table[slot] is not _NULL_SLOT:
                    slot = (slot + 1) % numslots
                table[slot] = entry
            dbfile.write(b"".join([_POINTER.pack(h, pos) for h, pos in table]))

    def close(self) -> None:
        self.flush()
        super().close()


class FastFieldWriter(W3FieldWriter):
    """``W3FieldWriter`` whose ``add_postings`` writes a whole sorted
    posting stream in one pass."""

    def __init__(self, codec: FastCodec, storage, segment) -> None:
        self._codec = codec
        self._storage = storage
        self._segment = segment
        self._fieldname = None
        self._fieldid = None
        self._btext = None
        self._fieldobj = None
        self._format = None
        self._tindex = _TermTable(self._create_file(W3Codec.TERMS_EXT))
        self._fieldmap = self._tindex.extras["fieldmap"] = {}
        self._postfile = self._create_file(W3Codec.POSTS_EXT)
        self._postwriter = None
        self._infield = False
        self.is_closed = False
        self._level = codec._compression

    def add_postings(self, schema, lengths, items) -> None:
        if any(field.separate_spelling() for _name, field in schema.items()):
            # Spelling words travel in the stream as docnum -1; leave them
            # to Whoosh's general loop.
            super().add_postings(schema, lengths, items)
            return
        out = _PostingsOut(self._postfile, self._level)
        tindex = self._tindex
        fieldmap = self._fieldmap
        doccount = lengths.doc_count_all() if lengths else 0
        field_lengths: list[int] = []
        fixedsize: int | None = None
        prefix = b""
        lastfn = None
        lasttext = None
        ids: list[int] = []
        weights: list[float] = []
        values: list[bytes] = []
        for fieldname, btext, docnum, weight, value in items:
            if btext != lasttext or fieldname != lastfn:
                if ids:
                    tindex.add(prefix + lasttext, out.term(ids, weights, values, fixedsize, field_lengths))
                    ids = []
                    weights = []
                    values = []
                if fieldname != lastfn:
                    if lastfn is not None and fieldname < lastfn:
                        raise ValueError(f"postings out of field order: {lastfn!r} .. {fieldname!r}")
                    fieldid = fieldmap.setdefault(fieldname, len(fieldmap))
                    prefix = pack_ushort(fieldid)
                    fixedsize = schema[fieldname].format.fixed_value_size()
                    field_lengths = _field_lengths(lengths, fieldname, doccount)
                    lastfn = fieldname
                elif btext < lasttext:
                    raise ValueError(f"postings out of term order in {fieldname!r}")
                lasttext = btext
            ids.append(docnum)
            weights.append(weight)
            values.append(value)
        if ids:
            tindex.add(prefix + lasttext, out.term(ids, weights, values, fixedsize, field_lengths))
        out.flush()


def _field_lengths(lengths, fieldname: str, doccount: int) -> list[int]:
    if not lengths:
        return [0] * doccount
    dfl = lengths.doc_field_length
    return [dfl(docnum, fieldname) for docnum in range(doccount)]


class _PostingsOut:
    """The postings file, written in W3's block format through a buffer."""

    def __init__(self, postfile, level: int) -> None:
        self._file = postfile
        self._level = level
        self._parts: list[bytes] = []
        self._pending = 0
        self._pos = postfile.tell()

    def term(
        self,
        ids: list[int],
        weights: list[float],
        values: list[bytes],
        fixedsize: int | None,
        field_lengths: list[int],
    ) -> bytes:
        """Write one term's posting blocks; its terminfo bytes."""
        start = self._pos
        n = len(ids)
        if n == 1:
            # Most terms: one posting, one small block.
            docnum = ids[0]
            weight = weights[0]
            lengthbyte = _length_byte(field_lengths[docnum])
            data = dumps(((docnum,), None if weight == 1.0 else weight, _mini_values(values, fixedsize)), _PROTOCOL)
            comp = self._level if len(data) >= COMPRESS_MIN_BYTES else 0
            if comp:
                data = zlib.compress(data, comp)
            maxweight = weight if weight > 0 else 0
            info = dumps((1, docnum, maxweight, comp, lengthbyte, lengthbyte), _PROTOCOL)
            blocklength = len(info) + len(data)
            self._parts.extend((_MAGIC_AND_LENGTH.pack(WHOOSH3_HEADER_MAGIC, -blocklength), info, data))
            size = 8 + blocklength
            terminfo = _TERMINFO.pack(0, weight, 1, lengthbyte, lengthbyte, maxweight, docnum, docnum)
        else:
            parts = [WHOOSH3_HEADER_MAGIC]
            size = len(WHOOSH3_HEADER_MAGIC)
            total_weight = 0.0
            maxweight_all = 0.0
            minlength_all = None
            maxlength_all = 0
            for first in range(0, n, BLOCK_LIMIT):
                last = min(n, first + BLOCK_LIMIT)
                bids = ids[first:last]
                bweights = weights[first:last]
                maxweight = max(0, max(bweights))
                blengths = [length for length in (field_lengths[d] for d in bids) if length]
                minlength = min(blengths) if blengths else None
                maxlength = max(blengths) if blengths else 0
                data = dumps(
                    (_deltas(bids), _mini_weights(bweights), _mini_values(values[first:last], fixedsize)), _PROTOCOL
                )
                comp = self._level if len(data) >= COMPRESS_MIN_BYTES else 0
                if comp:
                    data = zlib.compress(data, comp)
                info = dumps(
                    (len(bids), bids[-1], maxweight, comp, _length_byte(minlength), _length_byte(maxlength)), _PROTOCOL
                )
                blocklength = len(info) + len(data)
                parts.append(pack_int(-blocklength if last == n else blocklength))
                parts.append(info)
                parts.append(data)
                size += 4 + blocklength
                total_weight += sum(bweights)
                maxweight_all = max(maxweight_all, maxweight)
                if minlength is not None:
                    minlength_all = minlength if minlength_all is None else min(minlength_all, minlength)
                maxlength_all = max(maxlength_all, maxlength)
            self._parts.extend(parts)
            terminfo = _TERMINFO.pack(
                0,
                total_weight,
                n,
                _length_byte(minlength_all),
                _length_byte(maxlength_all),
                maxweight_all,
                ids[0],
                ids[-1],
            )
        self._pos = start + size
        self._pending += size
        if self._pending > _FLUSH_BYTES:
            self.flush()
        return terminfo + _EXTENT.pack(start, size)

    def flush(self) -> None:
        if self._parts:
            self._file.write(b"".join(self._parts))
            self._parts = []
            self._pending = 0


def _length_byte(length: int | None, _cache: dict = {}) -> int:  # noqa: B006 - a memo
    """``length_to_byte``, memoized: field lengths repeat a great deal."""
    try:
        return _cache[length]
    except KeyError:
        _cache[length] = byte = length_to_byte(length)
        return byte


def _deltas(ids: list[int]) -> tuple[int, ...]:
    base = 0
    out = []
    for docnum in ids:
        out.append(docnum - base)
        base = docnum
    return tuple(out)


def _mini_weights(weights: list[float]) -> Any:
    first = weights[0]
    if all(w == first for w in weights):
        return None if first == 1.0 else first
    return tuple(weights)


def _mini_values(values: list[bytes], fixedsize: int | None) -> Any:
    if fixedsize is None or fixedsize < 0:
        return tuple(v for v in values if v)
    if fixedsize == 0:
        return None
    return b"".join(values)
