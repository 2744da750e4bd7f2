"""Keeping an index to a few segments: a tiered merge policy, and a merge
that copies segments instead of indexing their documents again.

Every indexing run adds a segment, and a search visits every segment, each
costing a query some 5 % more CPU. Whoosh's own policy waits for about
fifteen small segments before it merges, and its merge feeds every posting
through its generic reader and pool (a minute and a half for poetry-20k).

The policy sorts segments into size tiers by their live documents: every
segment under ``FLOOR_DOCS`` is in the lowest tier, and each tier above
holds segments ``MERGE_FACTOR`` times as large as the one below. A tier
that holds ``MERGE_FACTOR`` segments when a commit adds another is merged
into one segment of a higher tier, so a document is rewritten about once
per tier, O(log n) times, and a run rewrites the whole index only when all
of it has come to one tier. Segments that are mostly deleted
documents are rewritten too, which gives their space back. ``MAX_SEGMENTS``
bounds the count whatever the sizes, by merging the smallest segments.

A merge writes one new segment from the old ones' files: stored fields and
columns are copied as they are stored, postings are read a block at a time,
renumbered and written by ``FastFieldWriter``: poetry-20k's two segments
merge in a fifth of the time Whoosh's merge takes, and in less than half of
the time indexing them took. Merging happens inside the writer's
commit, before the new table of contents is written, so searchers read the
previous commit until the new one is complete. The merged-away segments'
files stay until the next commit (see ``commit``).
"""

from __future__ import annotations

import heapq
import io
import math
import os
import pickle
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from whoosh.codec.base import Segment
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, WHOOSH3_HEADER_MAGIC, W3TermInfo, _lenfield
from whoosh.columns import VarBytesColumn
from whoosh.fields import Schema
from whoosh.filedb.filestore import FileStorage, Storage
from whoosh.index import TOC, clean_files
from whoosh.reading import SegmentReader
from whoosh.system import pack_ushort
from whoosh.util.numeric import byte_to_length
from whoosh.writing import SegmentWriter

from indexer.codec import LeanCodec, LeanTermsReader, TermPostings

#: Segments a tier holds when they are merged into one; each tier's
#: segments are this many times the size of the tier's below. Three (not
#: Lucene's ten) because every segment costs each search.
MERGE_FACTOR = 3
#: Segments with fewer live documents than this form the lowest tier: a
#: handful of small batches is merged early, whatever their sizes.
FLOOR_DOCS = 2_000
#: The most segments a commit leaves, the one it adds included.
MAX_SEGMENTS = 8
#: A segment with at least this share of its documents deleted is rewritten.
RECLAIM_SHARE = 0.5


@dataclass(frozen=True)
class SegmentSize:
    """What the policy looks at: a segment's live and total documents."""

    live: int
    total: int

    @property
    def deleted_share(self) -> float:
        return 1 - self.live / self.total if self.total else 0.0


def tier_of(live: int, floor: int | None = None, factor: int | None = None) -> int:
    """The size tier of a segment of ``live`` documents (0: under the floor)."""
    floor = FLOOR_DOCS if floor is None else floor
    factor = MERGE_FACTOR if factor is None else factor
    if live < floor:
        return 0
    return 1 + int(math.log(live / floor, factor) + 1e-9)


def plan_merges(
    sizes: Sequence[SegmentSize],
    adding: int = 0,
    factor: int | None = None,
    floor: int | None = None,
    max_segments: int | None = None,
    reclaim_share: float | None = None,
) -> list[list[int]]:
    """Which segments to merge: groups of indexes into ``sizes``, each group
    to become one segment. ``adding``: the live documents of the segment
    the commit adds; it counts towards the cap, but it is still being
    written, so it is not merged. Limits default to the module's.

    A tier is merged once it holds ``factor`` segments besides the new one,
    so a run of small batches leaves a few segments unmerged (the tier
    fills) before they are rewritten. Tiers are looked at from the lowest
    up, and a merge's result joins the tier it lands in, so a commit can
    cascade (small segments make one of the next tier, which that completes
    in turn). A segment that is mostly deleted documents is merged with its
    tier, or rewritten alone. Then, while there are more than
    ``max_segments``, the smallest are merged."""
    factor = MERGE_FACTOR if factor is None else factor
    floor = FLOOR_DOCS if floor is None else floor
    max_segments = MAX_SEGMENTS if max_segments is None else max_segments
    reclaim_share = RECLAIM_SHARE if reclaim_share is None else reclaim_share
    # Units: segments not merged yet (by index), and merges planned so far
    # (negative keys), with their live documents.
    units: dict[int, int] = {i: s.live for i, s in enumerate(sizes)}
    groups: dict[int, list[int]] = {}
    keys = iter(range(-1, -(len(sizes) + 2), -1))

    def merge(chosen: list[int]) -> None:
        key = next(keys)
        groups[key] = [i for k in chosen for i in (groups.pop(k) if k < 0 else [k])]
        units[key] = sum(units.pop(k) for k in chosen)

    def tier(live: int) -> int:
        return tier_of(live, floor, factor)

    level = 0
    while any(tier(live) >= level for live in units.values()):
        members = [k for k, live in units.items() if tier(live) == level]
        if len(members) >= max(factor, 2):
            merge(members)  # the result may land in this tier again
            continue
        level += 1
    for i, size in enumerate(sizes):
        if i in units and size.total and size.deleted_share >= reclaim_share:
            merge([i])
    room = max(max_segments - (1 if adding else 0), 1)
    while len(units) > room:
        smallest = sorted(units, key=units.__getitem__)
        merge(smallest[: len(units) - room + 1])
    return [sorted(group) for group in groups.values()]


class TieredMerge:
    """A Whoosh merge policy (``writer.commit(mergetype=...)``): plans with
    ``plan_merges`` and writes each group as one new segment, remembering
    the segments it merged away (``retired``)."""

    def __init__(self, adding: int = 0) -> None:
        self.adding = adding
        self.retired: list[Segment] = []

    def __call__(self, writer: SegmentWriter, segments: list[Segment]) -> list[Segment]:
        if any(field.vector or field.separate_spelling() for _name, field in writer.schema.items()):
            return segments  # this merge does not copy term vectors or spelling words
        sizes = [SegmentSize(s.doc_count(), s.doc_count_all()) for s in segments]
        groups = plan_merges(sizes, adding=self.adding)
        if not groups:
            return segments
        merged_away = {i for group in groups for i in group}
        result = [s for i, s in enumerate(segments) if i not in merged_away]
        for group in groups:
            chosen = [segments[i] for i in group]
            if any(s.doc_count() for s in chosen):
                result.append(merge_segments(writer.storage, writer.schema, writer.indexname, chosen))
            self.retired.extend(chosen)
        return result


#: Names the segments a commit merged away, beside its table of contents.
RETIRED_SUFFIX = ".retired"


def retired_file(indexname: str, generation: int) -> str:
    return f"_{indexname}_{generation}{RETIRED_SUFFIX}"


def commit(
    writer: SegmentWriter,
    adding: int | None = None,
    before_toc: Callable[[int, list[Segment]], None] | None = None,
) -> TieredMerge:
    """Commit ``writer`` with the tiered policy. ``adding``: documents in
    the segment it adds (by default the writer's own count).
    ``before_toc(generation, segments)`` runs once the segments are
    written and before the table of contents naming them is.

    The files of the segments merged away are kept until the next commit,
    and named in ``retired_file``: a searcher in another process checks
    its open segment files (a stat each) before every search and reads the
    table of contents only when the commit changed, so a file deleted
    between the two would look like damage to it. The next commit's clean-up
    removes them (Whoosh deletes the segment files its table of contents
    does not name)."""
    if adding is None:
        adding = writer.doc_count()
    policy = TieredMerge(adding=adding)
    storage = writer.storage
    folder = Path(storage.folder)

    def commit_toc(segments: list) -> None:
        generation = writer.generation
        name = retired_file(writer.indexname, generation)
        if policy.retired:
            _write_atomically(folder / name, "".join(s.segment_id() + "\n" for s in policy.retired).encode("ascii"))
        else:
            (folder / name).unlink(missing_ok=True)
        if before_toc is not None:
            before_toc(generation, segments)
        TOC(writer.schema, segments, generation).write(storage, writer.indexname)
        clean_files(storage, writer.indexname, generation, [*segments, *policy.retired])
        remove_notes(folder, writer.indexname, keep=generation, suffix=RETIRED_SUFFIX)

    writer._commit_toc = commit_toc  # where Whoosh writes the TOC and deletes files
    writer.commit(mergetype=policy)
    return policy


def retired_segments(folder: str | os.PathLike[str], indexname: str, generation: int) -> set[str]:
    """The ids of the segments commit ``generation`` merged away (their
    files are kept until the next commit)."""
    try:
        text = (Path(folder) / retired_file(indexname, generation)).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return set()
    return {line for line in text.split() if line}


def remove_notes(folder: Path, indexname: str, keep: int, suffix: str) -> None:
    """Delete the files ending ``suffix`` that belong to commits other than
    ``keep`` (each describes one commit; older commits are gone)."""
    pattern = re.compile(rf"^_{re.escape(indexname)}_(\d+){re.escape(suffix)}$")
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match and int(match[1]) != keep:
            try:
                os.unlink(folder / name)
            except OSError:
                pass


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary name, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- writing a merged segment ------------------------------------------------

_INT = struct.Struct("!i")
_KEY_VALUE_LENGTHS = struct.Struct("!ii")
_TERMINFO_SIZE = W3TermInfo._struct.size
_EXTENT = struct.Struct("!qi")


def merge_segments(storage: Storage, schema: Schema, indexname: str, segments: Sequence[Segment]) -> Segment:
    """One new segment holding the live documents of ``segments``, in their
    order; the old ones are untouched (the commit drops them)."""
    codec = LeanCodec()
    new = codec.new_segment(storage, indexname)
    # Read through memory maps whatever the writer's storage does: a merge
    # reads every posting.
    mapped = FileStorage(storage.folder) if not storage.supports_mmap else storage
    readers = [SegmentReader(mapped, schema, seg) for seg in segments]
    try:
        docmaps, count = _docmaps(segments)
        new.set_doc_count(count)
        _copy_per_document(codec, storage, schema, new, readers, docmaps)
        fieldwriter = codec.field_writer(storage, new)
        lengths = codec.per_document_reader(storage, new)
        try:
            fieldwriter.add_terms(schema, lengths, _merged_terms(schema, readers, docmaps))
        finally:
            fieldwriter.close()
            lengths.close()
        new.create_compound_file(storage)
    except BaseException:
        prefix = new.segment_id() + "."
        for name in list(storage.list()):
            if name.startswith(prefix):
                try:
                    storage.delete_file(name)
                except OSError:
                    pass
        raise
    finally:
        for reader in readers:
            reader.close()
    return new


def _docmaps(segments: Sequence[Segment]) -> tuple[list[list[int] | int], int]:
    """For each segment, its documents' new numbers: a list (-1 for a
    deleted document), or, when nothing in it is deleted, the number its
    first document gets (the rest follow)."""
    maps: list[list[int] | int] = []
    base = 0
    for seg in segments:
        total = seg.doc_count_all()
        if not seg.has_deletions():
            maps.append(base)
            base += total
            continue
        docmap = []
        for docnum in range(total):
            if seg.is_deleted(docnum):
                docmap.append(-1)
            else:
                docmap.append(base)
                base += 1
        maps.append(docmap)
    return maps, base


def _live(docmap: list[int] | int, total: int) -> Iterator[tuple[int, int]]:
    """(old, new) document numbers of a segment's live documents."""
    if isinstance(docmap, int):
        return ((old, docmap + old) for old in range(total))
    return ((old, new) for old, new in enumerate(docmap) if new >= 0)


def _copy_per_document(codec, storage, schema, new, readers, docmaps) -> None:
    """Stored fields, columns and field lengths, copied as they are stored
    (stored fields stay compressed pickles: nothing is decoded)."""
    pdw = codec.per_document_writer(storage, new)
    raw = VarBytesColumn()
    stored_writer = pdw._colwriters["_stored"]._child  # beneath the pickling
    columns = [(name, field.column_type) for name, field in schema.items() if field.column_type]
    scored = [name for name, field in schema.items() if field.scorable]
    totals: dict[str, int] = dict.fromkeys(scored, 0)
    for reader, docmap in zip(readers, docmaps, strict=True):
        perdoc = reader._perdoc
        total = reader.doc_count_all()
        stored = perdoc.column_reader("_stored", raw) if perdoc.has_column("_stored") else None
        present = [(name, col, perdoc.column_reader(name, col)) for name, col in columns if perdoc.has_column(name)]
        lengths = []
        for name in scored:
            lenname = _lenfield(name)
            if perdoc.has_column(lenname):
                lengths.append((name, lenname, perdoc.column_reader(lenname, LENGTHS_COLUMN)))
        exact = isinstance(docmap, int)
        if exact:
            # Nothing deleted: the field totals are the segment's own.
            for name in scored:
                totals[name] += perdoc.field_length(name)
        for old, newnum in _live(docmap, total):
            pdw.start_doc(newnum)
            if stored is not None:
                value = stored[old]
                if value:
                    VarBytesColumn.Writer.add(stored_writer, newnum, value)
            for name, col, values in present:
                pdw.add_column_value(name, col, values[old])
            for name, lenname, values in lengths:
                lengthbyte = values[old]
                if lengthbyte:
                    pdw.add_column_value(lenname, LENGTHS_COLUMN, lengthbyte)
                    if not exact:
                        totals[name] += byte_to_length(lengthbyte)
            pdw.finish_doc()
    pdw.close()
    new._fieldlengths = {name: n for name, n in totals.items() if n}


def _merged_terms(schema, readers, docmaps) -> Iterator[TermPostings]:
    """Every term of the segments, in (field, term) order, with the
    postings of all of them renumbered (terms left with none dropped)."""
    for fieldname in sorted(name for name, field in schema.items() if field.indexed):
        fixedsize = schema[fieldname].format.fixed_value_size()
        streams = [
            _field_terms(reader, fieldname, fixedsize, docmap, order)
            for order, (reader, docmap) in enumerate(zip(readers, docmaps, strict=True))
        ]
        current: bytes | None = None
        ids: list[int] = []
        weights: list[float] = []
        values: list = []
        for tbytes, _order, t_ids, t_weights, t_values in heapq.merge(*streams):
            if tbytes != current:
                if ids:
                    yield fieldname, current, ids, weights, values
                current, ids, weights, values = tbytes, [], [], []
            ids.extend(t_ids)
            weights.extend(t_weights)
            values.extend(t_values)
        if ids:
            yield fieldname, current, ids, weights, values


def _field_terms(reader, fieldname: str, fixedsize, docmap, order: int) -> Iterator[tuple]:
    """(term, order, ids, weights, values) of one field of one segment, in
    term order, read straight from its terms table and postings file."""
    terms = reader._terms
    if isinstance(terms, LeanTermsReader):
        entries = _lean_field_postings(terms, fieldname, fixedsize)
    else:
        entries = _w3_field_postings(terms, fieldname, fixedsize)
    for tbytes, ids, weights, values in entries:
        if isinstance(docmap, int):
            if docmap:
                ids = [docnum + docmap for docnum in ids]
        else:
            kept = [i for i, docnum in enumerate(ids) if docmap[docnum] >= 0]
            if len(kept) != len(ids):
                if not kept:
                    continue
                weights = [weights[i] for i in kept]
                values = [values[i] for i in kept]
                ids = [ids[i] for i in kept]
            ids = [docmap[docnum] for docnum in ids]
        yield tbytes, order, ids, weights, values


def _lean_field_postings(terms: LeanTermsReader, fieldname: str, fixedsize) -> Iterator[tuple]:
    postfile = terms._postfile
    for tbytes, info in terms.field_items(fieldname):
        if info.is_inlined():
            ids, weights, values = info.inlined_postings()
            yield tbytes, list(ids), list(weights), list(values)
        else:
            start, length = info.extent()
            yield (tbytes, *_read_postings(postfile.get(start, length), fixedsize))


def _w3_field_postings(terms, fieldname: str, fixedsize) -> Iterator[tuple]:
    """A W3 terms table's terms of one field, read in one pass over it."""
    fieldnum = terms._fieldmap.get(fieldname)
    if fieldnum is None:
        return
    tindex = terms._tindex
    prefix = pack_ushort(fieldnum)
    pos = tindex.closest_key_pos(prefix)
    if pos is None:
        return
    dbfile = tindex.dbfile
    end = tindex.endofdata
    data = dbfile.get(pos, end - pos)
    postfile = terms._postfile
    offset = 0
    size = len(data)
    while offset < size:
        keylen, datalen = _KEY_VALUE_LENGTHS.unpack_from(data, offset)
        keystart = offset + 8
        if data[keystart : keystart + 2] != prefix:
            return
        tbytes = data[keystart + 2 : keystart + keylen]
        info = data[keystart + keylen : keystart + keylen + datalen]
        offset = keystart + keylen + datalen
        if info[0]:
            ids, weights, values = pickle.loads(info[_TERMINFO_SIZE:])
            ids, weights, values = list(ids), list(weights), list(values)
        else:
            start, length = _EXTENT.unpack_from(info, _TERMINFO_SIZE)
            ids, weights, values = _read_postings(postfile.get(start, length), fixedsize)
        yield tbytes, ids, weights, values


def _read_postings(data: bytes, fixedsize) -> tuple[list[int], list[float], list]:
    """The postings of one term, from its W3 blocks."""
    if data[:4] != WHOOSH3_HEADER_MAGIC:
        raise ValueError(f"Block tag error {data[:4]!r}")
    stream = io.BytesIO(data)
    pos = 4
    ids: list[int] = []
    weights: list[float] = []
    values: list = []
    last = False
    while not last:
        (length,) = _INT.unpack_from(data, pos)
        last = length < 0
        start = pos + 4
        end = start + abs(length)
        stream.seek(start)
        count, _lastid, _maxweight, compression, _minlen, _maxlen = pickle.load(stream)
        block = data[stream.tell() : end]
        if compression:
            block = zlib.decompress(block)
        deltas, mini_weights, mini_values = pickle.loads(block)
        ids.extend(accumulate(deltas))
        if mini_weights is None:
            weights.extend([1.0] * count)
        elif isinstance(mini_weights, float):
            weights.extend([mini_weights] * count)
        else:
            weights.extend(mini_weights)
        if fixedsize is None or fixedsize < 0:
            values.extend(mini_values)
        elif fixedsize == 0:
            values.extend([None] * count)
        else:
            values.extend(mini_values[i : i + fixedsize] for i in range(0, len(mini_values), fixedsize))
        pos = end
    return ids, weights, values
