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
and output is written in large chunks. A term with a single posting keeps
it in its term info (W3's inlined postings), with no block at all. Any W3
reader opens the result; segments written here are read through
``CachingTermsReader``.
"""

from __future__ import annotations

import heapq
import io
import itertools
import operator
import pickle
import zlib
from array import array
from collections.abc import Iterable, Iterator
from pickle import dumps
from struct import Struct
from typing import Any

from whoosh.codec.whoosh3 import (
    LENGTHS_COLUMN,
    WHOOSH3_HEADER_MAGIC,
    W3Codec,
    W3FieldWriter,
    W3Segment,
    W3TermInfo,
    W3TermsReader,
    _lenfield,
)
from whoosh.filedb import filetables
from whoosh.filedb.compound import CompoundStorage
from whoosh.filedb.structfile import BufferFile
from whoosh.reading import TermNotFound
from whoosh.system import pack_int, pack_ushort
from whoosh.util.numlists import GrowableArray
from whoosh.writing import PostingPool, SegmentWriter

from indexer import termfile
from indexer.analysis import remember_normalized
from indexer.postings import BlockReader
from indexer.threads import original_get_ident as _get_ident

#: Postings per block, as Whoosh's default.
BLOCK_LIMIT = 128
#: Pickled blocks shorter than this are stored uncompressed.
COMPRESS_MIN_BYTES = 256
#: Terms, and postings, per pickled chunk of a spilled run: a merge holds
#: one chunk of every run it reads (a few MB each).
_RUN_CHUNK = 4_096
_RUN_CHUNK_POSTINGS = 32_768
#: Runs merged at once; more are first merged into fewer, longer runs,
#: so a merge's memory does not grow with the size of the segment.
_MERGE_FANIN = 32

_TERMINFO = W3TermInfo._struct
_EXTENT = Struct("!qi")  # pack_long(offset) + pack_int(length)
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

    def new_segment(self, storage, indexname):
        return MappedSegment(self, indexname)

    def postings_reader(self, dbfile, terminfo, format_, term=None, scorer=None):
        if terminfo.is_inlined():
            return super().postings_reader(dbfile, terminfo, format_, term=term, scorer=scorer)
        offset, length = terminfo.extent()
        return BlockReader(dbfile, offset, length, format_, term=term, scorer=scorer)

    def terms_reader(self, storage, segment):
        tiname = segment.make_filename(self.TERMS_EXT)
        tilen = storage.file_length(tiname)
        tifile = storage.open_file(tiname)
        postfile = segment.open_file(storage, self.POSTS_EXT)
        return self._terms_reader_class()(self, tifile, tilen, postfile)

    def _terms_reader_class(self) -> type:
        return CachingTermsReader


class LeanCodec(FastCodec):
    """``FastCodec`` with the compact terms file of ``indexer.termfile``
    (a sixth of W3's size); the postings and everything else are W3's.

    The codec is pickled with each segment in the table of contents, so
    segments written before this codec keep being read as ``FastCodec``
    segments, and an index may hold both kinds."""

    TERMS_EXT = ".tz"

    def field_writer(self, storage, segment):
        return LeanFieldWriter(self, storage, segment)

    def _terms_reader_class(self) -> type:
        return LeanTermsReader


class MappedSegment(W3Segment):
    """A W3 segment whose compound file is read in place.

    Whoosh maps a compound segment file into memory, then copies each file
    in it into a ``BytesIO`` as it is opened (``BufferFile``): every open
    of an index copied all of it, 250 MB of private memory for poetry-20k,
    and 0.1 s of CPU, again on every reopen after a commit. Segments
    written by ``FastCodec`` are of this class (the table of contents
    pickles it); older segments open as before.
    """

    def open_compound_file(self, storage):
        name = self.make_filename(self.COMPOUND_EXT)
        return MappedCompoundStorage(storage.open_file(name), use_mmap=storage.supports_mmap)


class MappedCompoundStorage(CompoundStorage):
    def open_file(self, name, *args, **kwargs):
        if self._source is None:  # not mapped (no mmap here): Whoosh's sub-files
            return super().open_file(name, *args, **kwargs)
        if self.is_closed:
            return super().open_file(name)  # raises Whoosh's StorageError
        offset, length = self.range(name)
        return MappedFile(memoryview(self._source)[offset : offset + length], name=name)


class MappedFile(BufferFile):
    """A file over a slice of a memory map, read in place.

    ``get`` (what the terms, column and stored-field readers mostly use)
    slices the map. Sequential reads (a postings block's header: seek,
    read an int, read a pickle) keep their position per OS thread: a
    serving worker's background thread warms a new commit's readers while
    its requests read the same segments through the old ones, and one
    shared position let each move the other's (greenlets of one thread do
    not switch in the middle of such a read).
    """

    def __init__(self, buf: memoryview, name: str | None = None, onclose=None) -> None:
        self._buf = buf
        self._name = name
        self.onclose = onclose
        self.is_real = False
        self.is_closed = False
        self._at: dict[int, int] = {}

    @property
    def file(self) -> io.RawIOBase:
        # What still asks for the file object itself reads from here on.
        return _ViewStream(self._buf, self.tell())

    def tell(self) -> int:
        return self._at.get(_thread_id(), 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = (0, self.tell(), len(self._buf))[whence]
        pos = self._at[_thread_id()] = max(0, base + offset)
        return pos

    def read(self, n: int | None = -1) -> bytes:
        pos = self.tell()
        end = len(self._buf) if n is None or n < 0 else min(len(self._buf), pos + n)
        self._at[_thread_id()] = max(pos, end)
        return bytes(self._buf[pos:end])

    def readline(self, limit: int = -1) -> bytes:
        stream = _ViewStream(self._buf, self.tell())
        line = stream.readline(limit)
        self._at[_thread_id()] = stream.tell()
        return line

    def read_pickle(self) -> Any:
        stream = _ViewStream(self._buf, self.tell())
        value = pickle.load(stream)
        self._at[_thread_id()] = stream.tell()
        return value

    def subset(self, position: int, length: int, name: str | None = None) -> MappedFile:
        return MappedFile(self._buf[position : position + length], name=name or self._name)

    def close(self) -> None:
        if self.is_closed:
            raise Exception("This file is already closed")
        if self.onclose:
            self.onclose(self)
        self.is_closed = True


def _thread_id() -> int:
    return _get_ident()


class _ViewStream(io.RawIOBase):
    """A read-only raw stream over a memoryview, without copying it."""

    def __init__(self, view: memoryview, pos: int = 0) -> None:
        self._view = view
        self._pos = pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


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
        info = self._lookup(key)
        if len(infos) >= self.MAX_ENTRIES:
            infos.clear()
        infos[key] = info
        return info

    def _lookup(self, key: bytes) -> W3TermInfo | None:
        """The info of a key (field number and term bytes) in the file."""
        try:
            return W3TermInfo.from_bytes(self._tindex[key])
        except KeyError:
            return None

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


class LeanTermsReader(CachingTermsReader):
    """Reads ``indexer.termfile``'s terms file with W3's reader API."""

    def __init__(self, codec, dbfile, length: int, postfile) -> None:
        self._codec = codec
        self._dbfile = dbfile
        # In place when the segment is mapped; otherwise read once.
        buf = dbfile._buf if isinstance(dbfile, MappedFile) else dbfile.get(0, length)
        self._table = termfile.TermFileReader(buf)
        self._fieldmap = self._table.fieldmap
        self._fieldunmap = [None] * (max(self._fieldmap.values(), default=-1) + 1)
        for fieldname, num in self._fieldmap.items():
            self._fieldunmap[num] = fieldname
        self._postfile = postfile
        self._infos = {}

    def _lookup(self, key: bytes) -> W3TermInfo | None:
        raw = self._table.get(key)
        return None if raw is None else termfile.decode_info(raw)

    def cursor(self, fieldname, fieldobj):
        raise NotImplementedError("term cursors are not kept by this terms file; iterate terms_from instead")

    def terms(self):
        return (self._keydecoder(key) for key, _info in self._table.items_from())

    def terms_from(self, fieldname, prefix):
        return (self._keydecoder(key) for key, _info in self._table.items_from(self._keycoder(fieldname, prefix)))

    def items(self):
        decode = termfile.decode_info
        return ((self._keydecoder(key), decode(raw)) for key, raw in self._table.items_from())

    def items_from(self, fieldname, prefix):
        decode = termfile.decode_info
        start = self._keycoder(fieldname, prefix)
        return ((self._keydecoder(key), decode(raw)) for key, raw in self._table.items_from(start))

    def field_items(self, fieldname: str) -> Iterator[tuple[bytes, W3TermInfo]]:
        """(term bytes, info) of every term of one field, in order."""
        fieldnum = self._fieldmap.get(fieldname)
        if fieldnum is None:
            return
        prefix = pack_ushort(fieldnum)
        decode = termfile.decode_info
        for key, raw in self._table.items_from(prefix):
            if key[:2] != prefix:
                return
            yield key[2:], decode(raw)

    def doc_frequencies(self, fieldname: str, prefix: bytes = b"") -> Iterator[tuple[bytes, int]]:
        """(term bytes, document frequency) of the field's terms that start
        with ``prefix``, in order, read from their infos' first bytes
        (their postings are not decoded)."""
        start = self._keycoder(fieldname, prefix)
        doc_frequency = termfile.doc_frequency
        for key, raw in self._table.items_from(start):
            if not key.startswith(start):
                break
            yield key[2:], doc_frequency(raw)

    def close(self) -> None:
        self._infos = {}
        self._dbfile.close()
        self._postfile.close()


class FastSegmentWriter(SegmentWriter):
    """Whoosh's segment writer with ``FastCodec`` and a ``TermPool``
    (``SegmentWriter`` takes a pool class argument but ignores it)."""

    def __init__(self, ix, limitmb: int = 128, **kwargs) -> None:
        kwargs.setdefault("codec", LeanCodec())
        super().__init__(ix, limitmb=limitmb, **kwargs)
        self._grouped = not any(field.separate_spelling() or field.vector for _name, field in self.schema.items())
        if self._grouped:
            self.pool = TermPool(self._tempstorage, self.newsegment, limitmb=limitmb)

    def cancel(self) -> None:
        """Whoosh's cancel, and the files of the segment it had begun: a
        run that stops before its commit leaves the index folder as it was."""
        super().cancel()
        prefix = self.newsegment.segment_id() + "."
        for name in list(self.storage.list()):
            if name.startswith(prefix) or name.startswith(self.newsegment.segment_id() + "_"):
                try:
                    self.storage.delete_file(name)
                except OSError:
                    pass

    def add_document(self, **fields) -> None:
        """``SegmentWriter.add_document`` (the same postings, lengths, stored
        values and columns), filing each field's postings into the pool in
        one call: a method call and a tuple per posting were a tenth of a
        build. The normal forms ``document_fields`` hands over are
        remembered first. Schemas with spelling or vector fields take
        Whoosh's path."""
        if not self._grouped:
            super().add_document(**fields)
            return
        for text, folded in fields.get("_normalized", ()):
            remember_normalized(text, folded)
        self._check_state()
        perdocwriter = self.perdocwriter
        schema = self.schema
        docnum = self.docnum
        pool = self.pool
        docboost = self._doc_boost(fields)
        fieldnames = sorted(name for name in fields if not name.startswith("_"))
        self._check_fields(schema, fieldnames)
        perdocwriter.start_doc(docnum)
        try:
            for fieldname in fieldnames:
                value = fields[fieldname]
                if value is None:
                    continue
                field = schema[fieldname]
                length = 0
                if field.indexed:
                    boost = self._field_boost(fields, fieldname, docboost)
                    length = pool.add_field(fieldname, docnum, field.index(value), boost)
                    if not field.scorable:
                        length = 0
                stored = fields.get("_stored_" + fieldname, value)
                perdocwriter.add_field(fieldname, field, stored if field.stored else None, length)
                column = field.column_type
                if column and stored is not None:
                    perdocwriter.add_column_value(fieldname, column, field.to_column_value(stored))
        except Exception:
            perdocwriter.cancel_doc()
            raise
        perdocwriter.finish_doc()
        self._added = True
        self.docnum += 1
        pool.spill_if_full()

    def _flush_segment(self) -> None:
        if not self._grouped or not isinstance(self.fieldwriter, FastFieldWriter):
            super()._flush_segment()
            return
        self.perdocwriter.close()
        lengths = self.per_document_reader() if self.codec.length_stats else None
        self.fieldwriter.add_terms(self.schema, lengths, self.pool.iter_terms())
        self.fieldwriter.close()
        if lengths:
            lengths.close()


#: One term's postings: field name, term bytes, then its documents'
#: numbers, weights and encoded values, in document order.
TermPostings = tuple[str, bytes, list[int], list[float], list[bytes]]


class TermPool(PostingPool):
    """The postings of a segment being written, grouped by term.

    Whoosh pools every posting as a tuple and sorts them all at the end;
    sorting millions of tuples was an eighth of a build. Documents arrive in
    number order, so each term's postings are already sorted: this pool
    files them under their term and sorts only the terms. When it holds
    more postings than its memory allows it spills its terms, sorted, to a
    run on disk; runs are merged term by term, earlier runs first.
    """

    #: Bytes a pooled term takes in memory, roughly (its dict entry, key
    #: and list, with its first posting), and each further posting filed
    #: under it (three list slots; weights and values are mostly shared
    #: objects). A term's postings are one flat list of (document, weight,
    #: value) triples: three lists and a tuple per term took twice the
    #: memory, and most terms have one posting.
    TERM_BYTES = 200
    POSTING_BYTES = 30

    def __init__(self, tempstore, segment, limitmb: int = 128, **kwargs) -> None:
        super().__init__(tempstore, segment, limitmb=limitmb, **kwargs)
        self._room = max(5_000_000, self.limit)
        self._bytes = 0
        self._count = 0
        self._fields: dict[str, dict[bytes, tuple[list, list, list]]] = {}

    def add(self, item) -> None:
        """One posting (Whoosh's path: merging another segment in)."""
        fieldname, tbytes, docnum, weight, value = item
        self.add_field(fieldname, docnum, ((tbytes, 0, weight, value),), 1.0)
        self.spill_if_full()

    def add_field(self, fieldname: str, docnum: int, postings: Iterable[tuple], boost: float) -> int:
        """File one field's ``(term, freq, weight, value)`` postings of a
        document; the sum of their frequencies (the field's length).

        The pool spills as soon as its memory estimate passes the budget,
        in the middle of a document if need be: a 5 MB document's postings
        alone took gigabytes. (A term occurs once in a field's postings, so
        its postings for one document never straddle two runs.)"""
        terms = self._fields.get(fieldname)
        if terms is None:
            terms = self._fields[fieldname] = {}
        length = 0
        count = 0
        size = 0
        for tbytes, freq, weight, value in postings:
            if boost != 1.0:
                weight *= boost
            entry = terms.get(tbytes)
            if entry is None:
                terms[tbytes] = [docnum, weight, value]
                size += self.TERM_BYTES + len(tbytes) + len(value)
            else:
                entry += (docnum, weight, value)
                size += self.POSTING_BYTES + len(value)
            length += freq
            count += 1
            if size + self._bytes >= self._room:
                self._count += count
                self._bytes += size
                count = size = 0
                self.save()
                terms = self._fields[fieldname] = {}
        self._count += count
        self._bytes += size
        return length

    def spill_if_full(self) -> None:
        if self._bytes >= self._room:
            self.save()

    def _sorted_terms(self) -> Iterator[TermPostings]:
        """The pooled terms, sorted, each let go of as it is handed over:
        the memory of the terms already written then holds what writing
        the rest needs, instead of the segment's writing adding to the
        pool's peak (a fifth of a writer's peak on poetry-20k)."""
        fields = self._fields
        for fieldname in sorted(fields):
            terms = fields[fieldname]
            for tbytes in sorted(terms):
                postings = terms.pop(tbytes)
                yield fieldname, tbytes, postings[0::3], postings[1::3], postings[2::3]
            del fields[fieldname]

    def save(self) -> None:
        if self._count:
            path, f = self._new_run()
            self._write_run(f, self._sorted_terms(), len(self.runs))
            self.runs.append(path)
            self._fields = {}
            self._count = 0
            self._bytes = 0

    def _write_run(self, f, items: Iterable[TermPostings], order: int) -> None:
        """Write ``items`` as a run; each is stored as (field, term,
        ``order``, ids, weights, values), so that runs merge as plain
        tuples, earlier runs first, without a key function."""
        try:
            chunk: list[tuple] = []
            postings = 0
            for fieldname, tbytes, ids, weights, values in items:
                chunk.append((fieldname, tbytes, order, ids, weights, values))
                postings += len(ids)
                if len(chunk) >= _RUN_CHUNK or postings >= _RUN_CHUNK_POSTINGS:
                    pickle.dump(chunk, f, 5)
                    chunk = []
                    postings = 0
            if chunk:
                pickle.dump(chunk, f, 5)
        finally:
            f.close()

    def _read_run(self, path) -> Iterator[tuple]:
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

    def iter_terms(self) -> Iterator[TermPostings]:
        """Every term once, in (field, term) order, with all its postings."""
        if not self.runs:
            yield from self._sorted_terms()
            return
        runs, self.runs = self.runs, []
        # The terms still pooled are the last run, merged from memory
        # rather than written out and read back only to be merged.
        last = len(runs)
        while len(runs) > _MERGE_FANIN:
            # A pass merges consecutive runs, keeping them in document order.
            longer = []
            for start in range(0, len(runs), _MERGE_FANIN):
                path, f = self._new_run()
                self._write_run(f, self._merged(runs[start : start + _MERGE_FANIN]), start)
                longer.append(path)
            runs = longer
        pooled = ((fieldname, tbytes, last, *postings) for fieldname, tbytes, *postings in self._sorted_terms())
        yield from self._merged(runs, pooled)

    def _merged(self, runs: list, pooled: Iterator[tuple] | None = None) -> Iterator[TermPostings]:
        """The terms of ``runs`` (each sorted), and of ``pooled`` (the terms
        in memory, as a run read back, after them), merged; a term's
        postings from earlier runs first (runs hold ascending document
        numbers). Most terms are in one run and pass through as they were
        read."""
        sources = [self._read_run(run) for run in runs]
        if pooled is not None:
            sources.append(pooled)
        pending = None
        joined = False
        for fieldname, tbytes, _order, ids, weights, values in heapq.merge(*sources):
            if pending is not None and tbytes == pending[1] and fieldname == pending[0]:
                if not joined:
                    pending = (fieldname, tbytes, list(pending[2]), list(pending[3]), list(pending[4]))
                    joined = True
                pending[2].extend(ids)
                pending[3].extend(weights)
                pending[4].extend(values)
                continue
            if pending is not None:
                yield pending
            pending = (fieldname, tbytes, ids, weights, values)
            joined = False
        if pending is not None:
            yield pending

    def iter_postings(self):
        for fieldname, tbytes, ids, weights, values in self.iter_terms():
            for posting in zip(ids, weights, values, strict=True):
                yield (fieldname, tbytes, *posting)

    def cleanup(self) -> None:
        super().cleanup()
        self._fields = {}


class _Buffered:
    """Appends to a file through a buffer, tracking the offset where each
    write lands (``tell()`` on Whoosh's structfile is a method call per
    term otherwise)."""

    def __init__(self, dbfile) -> None:
        self._file = dbfile
        self._parts: list[bytes] = []
        self.pos = self._flushed = dbfile.tell()

    def write(self, data: bytes) -> int:
        """Queue ``data``; the offset where it lands."""
        start = self.pos
        self._parts.append(data)
        self.pos = start + len(data)
        if self.pos - self._flushed > termfile.FLUSH_BYTES:
            self.flush()
        return start

    def flush(self) -> None:
        if self._parts:
            self._file.write(b"".join(self._parts))
            self._parts = []
            self._flushed = self.pos


class _TermTable(filetables.OrderedHashWriter):
    """Whoosh's ordered on-disk hash of terms, keyed by CRC32 and filled in
    bulk from keys that are already sorted."""

    def __init__(self, dbfile) -> None:
        filetables.HashWriter.__init__(self, dbfile, hashtype=_CRC_HASH)
        self.index = GrowableArray("I")
        self._index_append = self.index.array.append
        self.lastkey = b""
        self._out = _Buffered(dbfile)
        # Each term's hash and offset, in typed arrays: Whoosh keeps an
        # (int, int) tuple per term, some 120 bytes; a segment of 17
        # million terms held 2 GB in them.
        self._hashes = [array("I") for _ in range(256)]
        self._offsets = [array("q") for _ in range(256)]

    def add(self, key: bytes, value: bytes) -> None:
        """Add a key greater than any added before (``add_terms`` checks
        the order of the stream)."""
        pos = self._out.write(_KEY_VALUE_LENGTHS.pack(len(key), len(value)) + key + value)
        try:
            self._index_append(pos)
        except OverflowError:
            self.index.append(pos)  # widens the array's type
            self._index_append = self.index.append
        h = zlib.crc32(key)
        self._hashes[h & 255].append(h)
        self._offsets[h & 255].append(pos)
        self.lastkey = key

    def flush(self) -> None:
        self._out.flush()

    def _write_hashes(self) -> None:
        # Whoosh's layout (256 open-addressing tables, twice as many slots
        # as entries), packed a table at a time.
        self.flush()
        dbfile = self.dbfile
        for hashes, offsets in zip(self._hashes, self._offsets, strict=True):
            numslots = 2 * len(hashes)
            self.directory.append((dbfile.tell(), numslots))
            if not numslots:
                continue
            table: list[tuple[int, int] | None] = [None] * numslots
            for entry in zip(hashes, offsets, strict=True):
                slot = (entry[0] >> 8) % numslots
                while table[slot] is not None:
                    slot = (slot + 1) % numslots
                table[slot] = entry
            dbfile.write(b"".join([_POINTER.pack(*(entry or _NULL_SLOT)) for entry in table]))
            del hashes[:], offsets[:]

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
        self._fieldmap: dict[str, int] = {}
        self._tindex = self._term_table()
        self._postfile = self._create_file(W3Codec.POSTS_EXT)
        self._postwriter = None
        self._infield = False
        self.is_closed = False
        self._level = codec._compression

    def _term_table(self):
        table = _TermTable(self._create_file(W3Codec.TERMS_EXT))
        table.extras["fieldmap"] = self._fieldmap
        return table

    def _postings_out(self, postfile, level: int) -> _PostingsOut:
        return _PostingsOut(postfile, level)

    def add_postings(self, schema, lengths, items) -> None:
        if any(field.separate_spelling() for _name, field in schema.items()):
            # Spelling words travel in the stream as docnum -1; leave them
            # to Whoosh's general loop.
            super().add_postings(schema, lengths, items)
            return
        self.add_terms(schema, lengths, _group_postings(items))

    def add_terms(self, schema, lengths, terms: Iterable[TermPostings]) -> None:
        """Write terms given in (field, term) order with their postings."""
        out = self._postings_out(self._postfile, self._level)
        tindex = self._tindex
        fieldmap = self._fieldmap
        doccount = lengths.doc_count_all() if lengths else 0
        field_lengths = b""
        fixedsize: int | None = None
        prefix = b""
        lastfn = None
        lasttext = b""
        for fieldname, tbytes, ids, weights, values in terms:
            if fieldname != lastfn:
                if lastfn is not None and fieldname < lastfn:
                    raise ValueError(f"postings out of field order: {lastfn!r} .. {fieldname!r}")
                prefix = pack_ushort(fieldmap.setdefault(fieldname, len(fieldmap)))
                fixedsize = schema[fieldname].format.fixed_value_size()
                field_lengths = length_bytes(lengths, fieldname, doccount)
                lastfn = fieldname
            elif tbytes <= lasttext:
                raise ValueError(f"postings out of term order in {fieldname!r}")
            lasttext = tbytes
            tindex.add(prefix + tbytes, out.term(ids, weights, values, fixedsize, field_lengths))
        out.flush()


class LeanFieldWriter(FastFieldWriter):
    """Writes the terms into ``indexer.termfile``'s compact file."""

    def _term_table(self):
        return termfile.TermFileWriter(self._create_file(LeanCodec.TERMS_EXT))

    def _postings_out(self, postfile, level: int) -> _PostingsOut:
        return _LeanPostingsOut(postfile, level)

    def finish_term(self) -> None:
        # Whoosh's own loop (schemas with spelling words) ends each term here.
        info = self._postwriter.finish_postings()
        self._tindex.add(pack_ushort(self._fieldid) + self._btext, termfile.encode_info(info))

    def close(self) -> None:
        self._tindex.close(self._fieldmap)
        self._postfile.close()
        self.is_closed = True


def _group_postings(items) -> Iterator[TermPostings]:
    """Whoosh's sorted posting stream, one group per term."""
    for (fieldname, tbytes), postings in itertools.groupby(items, key=lambda p: (p[0], p[1])):
        ids: list[int] = []
        weights: list[float] = []
        values: list[bytes] = []
        for _f, _t, docnum, weight, value in postings:
            ids.append(docnum)
            weights.append(weight)
            values.append(value)
        yield fieldname, tbytes, ids, weights, values


def length_bytes(perdoc, fieldname: str, doccount: int) -> bytes:
    """Every document's length in ``fieldname`` as Whoosh stores it, one
    byte a document (0 where it has none), read from the segment's lengths
    column in one go instead of a lookup per document."""
    column = perdoc._cached_reader(_lenfield(fieldname), LENGTHS_COLUMN) if perdoc else None
    if column is None:
        return bytes(doccount)
    raw = column._dbfile.get(column._basepos, column._count)
    return raw + bytes(doccount - len(raw))


class _PostingsOut:
    """The postings file, written in W3's block format through a buffer."""

    def __init__(self, postfile, level: int) -> None:
        self._out = _Buffered(postfile)
        self._level = level

    def _compressed(self, data: bytes) -> tuple[int, bytes]:
        """(compression level, block bytes): small blocks stay plain."""
        if self._level and len(data) >= COMPRESS_MIN_BYTES:
            return self._level, zlib.compress(data, self._level)
        return 0, data

    def term(
        self,
        ids: list[int],
        weights: list[float],
        values: list[bytes],
        fixedsize: int | None,
        field_lengths: bytes,
    ) -> bytes:
        """Write one term's posting blocks; its terminfo bytes.
        ``field_lengths``: the field's length bytes (``length_bytes``)."""
        n = len(ids)
        if n <= self.inline_limit:
            # Most terms: a posting or a few, kept in the term's info itself
            # (W3's "inlined" postings): no block, and no postings file
            # read when the term is matched.
            first = ids[0]
            lengthbytes = field_lengths[first : first + 1] if n == 1 else bytes(map(field_lengths.__getitem__, ids))
            return self.inlined_info(ids, weights, lengthbytes, None if fixedsize == 0 else values)
        parts = [WHOOSH3_HEADER_MAGIC]
        total_weight = 0.0
        maxweight_all = 0.0
        minlength_all = 255
        maxlength_all = 0
        for first in range(0, n, BLOCK_LIMIT):
            last = min(n, first + BLOCK_LIMIT)
            if n <= BLOCK_LIMIT:
                bids, bweights, bvalues = ids, weights, values
            else:
                bids, bweights, bvalues = ids[first:last], weights[first:last], values[first:last]
            maxweight = max(0, max(bweights))
            # Length bytes order as the lengths do; 0 is "no length".
            blengths = bytes(map(field_lengths.__getitem__, bids))
            maxlength = max(blengths)
            minlength = min(blengths) or min(blengths.replace(b"\x00", b""), default=0)
            data = dumps((_deltas(bids), _mini_weights(bweights), _mini_values(bvalues, fixedsize)), _PROTOCOL)
            comp, data = self._compressed(data)
            info = dumps((len(bids), bids[-1], maxweight, comp, minlength, maxlength), _PROTOCOL)
            blocklength = len(info) + len(data)
            parts.append(pack_int(-blocklength if last == n else blocklength))
            parts.append(info)
            parts.append(data)
            total_weight += sum(bweights)
            if maxweight > maxweight_all:
                maxweight_all = maxweight
            if minlength and minlength < minlength_all:
                minlength_all = minlength
            if maxlength > maxlength_all:
                maxlength_all = maxlength
        start = self._out.write(b"".join(parts))
        return self.extent_info(
            n,
            total_weight,
            maxweight_all,
            minlength_all if maxlength_all else 0,
            maxlength_all,
            ids[0],
            ids[-1],
            start,
            self._out.pos - start,
        )

    #: W3 readers read any number of inlined postings, but Whoosh's own
    #: writer inlines one, and so does this one.
    inline_limit = 1

    @staticmethod
    def inlined_info(ids: list[int], weights: list[float], lengthbytes: bytes, values: list[bytes] | None) -> bytes:
        """W3's term info of a one-posting term, its posting inlined."""
        docnum = ids[0]
        weight = weights[0]
        lengthbyte = lengthbytes[0]
        return _TERMINFO.pack(
            1, weight, 1, lengthbyte, lengthbyte, weight if weight > 0 else 0, docnum, docnum
        ) + _inlined(docnum, weight, None if values is None else values[0])

    @staticmethod
    def extent_info(
        df: int,
        total: float,
        maxweight: float,
        minlength: int,
        maxlength: int,
        minid: int,
        maxid: int,
        start: int,
        length: int,
    ) -> bytes:
        """W3's term info of a term with posting blocks."""
        return _TERMINFO.pack(0, total, df, minlength, maxlength, maxweight, minid, maxid) + _EXTENT.pack(start, length)

    def flush(self) -> None:
        self._out.flush()


class _LeanPostingsOut(_PostingsOut):
    """The same postings, with term infos in ``indexer.termfile``'s form."""

    inline_limit = termfile.INLINE_LIMIT
    inlined_info = staticmethod(termfile.inlined_info)
    extent_info = staticmethod(termfile.extent_info)


_PICKLE_INT = Struct("<i")
_PICKLE_FLOAT = Struct(">d")


def _inlined(docnum: int, weight: float, value: bytes | None) -> bytes:
    """``pickle.dumps(((docnum,), (weight,), (value,)))``, spelled out.

    Written for most terms of a build, where setting up a pickler cost more
    than the pickle; weights and values repeat (1.0, a frequency of 1, one
    position), so their opcodes are remembered. ``pickle.loads`` reads it
    as the same tuple (protocol 3: BININT, BINFLOAT, SHORT_BINBYTES).
    """
    if not 0 <= docnum < 1 << 31:
        return dumps(((docnum,), (weight,), (value,)), _PROTOCOL)
    weight_part = _WEIGHT_OPS.get(weight)
    if weight_part is None:
        weight_part = b"\x85G" + _PICKLE_FLOAT.pack(weight) + b"\x85"
        if len(_WEIGHT_OPS) < _MEMO_LIMIT:
            _WEIGHT_OPS[weight] = weight_part
    value_part = _VALUE_OPS.get(value)
    if value_part is None:
        if value is None:
            value_part = b"N"
        elif len(value) < 256:
            value_part = b"C" + bytes((len(value),)) + value
        else:
            value_part = b"B" + _PICKLE_INT.pack(len(value)) + value
        value_part += b"\x85\x87."
        if len(_VALUE_OPS) < _MEMO_LIMIT:
            _VALUE_OPS[value] = value_part
    return b"\x80\x03J" + _PICKLE_INT.pack(docnum) + weight_part + value_part


_MEMO_LIMIT = 65_536
_WEIGHT_OPS: dict[float, bytes] = {}
_VALUE_OPS: dict[bytes | None, bytes] = {}


def _deltas(ids: list[int]) -> tuple[int, ...]:
    return (ids[0], *map(operator.sub, ids[1:], ids))


def _mini_weights(weights: list[float]) -> Any:
    first = weights[0]
    if weights.count(first) == len(weights):
        return None if first == 1.0 else first
    return tuple(weights)


def _mini_values(values: list[bytes], fixedsize: int | None) -> Any:
    if fixedsize is None or fixedsize < 0:
        return tuple(filter(None, values))
    if fixedsize == 0:
        return None
    return b"".join(values)
