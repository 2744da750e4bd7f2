"""Writing crawl records into the index: upserts, tombstones, deletions.

A run reads every record, validates it, and compares its content hash with
what the index holds for that id, so a re-crawl that changed nothing writes
nothing. Bad records are collected with their location and never stop the
run. Everything is committed once at the end: a run that dies before that
leaves the index as it was. Every commit merges segments by the tiered
policy of ``indexer.merging``, so the index stays a few segments however
many runs add to it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whoosh.index import Index
from whoosh.util.times import datetime_to_long
from whoosh.writing import SegmentWriter

from indexer.analysis import normalize, normalize_keyword
from indexer.codec import FastSegmentWriter, LeanCodec
from indexer.config import Settings
from indexer.dedupe import Signature
from indexer.documents import Article, Tombstone, lead_text
from indexer.known import KNOWN_SUFFIX, KnownDocuments, live_columns
from indexer.mapping import FieldMapper
from indexer.merging import commit as commit_merging
from indexer.merging import remove_notes
from indexer.pages import Draft, with_site_names
from indexer.parallel import ParallelWriter
from indexer.prepare import Item, PageFailed, Prepared, Rejection, Unprepared, prepare, prepare_record
from indexer.schema import CRAWL_FIELDS, LATER_FIELDS, STORED_FIELDS, VALUE_SEPARATOR, build_schema
from indexer.shards import ShardedGeneration, ShardedWriter, known_documents, sharded_documents
from indexer.siterules import load_rules
from indexer.sources import (
    BadRecord,
    Discovery,
    SeenRecord,
    SkippedRecord,
    SourceError,
    find_files,
    read_file,
    total_bytes,
)
from indexer.store import IndexDamaged, IndexMissing, IndexStore

#: --prune and --rebuild refuse to take away more than this share of the
#: live documents unless forced: a crawl that lost most of a site is more
#: often a broken crawl than a site that deleted most of its articles.
MAX_DELETED_SHARE = 0.5


class RunRefused(Exception):
    """A --prune or --rebuild that would delete what it could not see, or
    too much; nothing was changed."""

    code = "run_refused"


@dataclass(frozen=True)
class Duplicate:
    location: str
    id: str
    duplicate_of: str


#: Problems of each kind kept with their locations; the rest are counted.
KEEP_PROBLEMS = 100


class Kept(list):
    """A list that keeps its first ``KEEP_PROBLEMS`` items and counts the
    rest, so that a file of millions of bad lines costs a counter, not
    millions of reports. ``len`` is the count of all."""

    def __init__(self, items=()) -> None:
        super().__init__()
        self.total = 0
        for item in items:
            self.append(item)

    def append(self, item) -> None:
        self.total += 1
        if super().__len__() < KEEP_PROBLEMS:
            super().append(item)

    def extend(self, items) -> None:
        for item in items:
            self.append(item)

    def __len__(self) -> int:
        return self.total

    def __bool__(self) -> bool:
        return self.total > 0

    @property
    def more(self) -> int:
        """How many were counted but not kept."""
        return self.total - super().__len__()


@dataclass
class IndexSummary:
    """What a run did, for the end-of-run report and ``--json``."""

    files: int = 0
    records: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    pruned: int = 0
    rejected: Kept = field(default_factory=Kept)
    documents: int = 0
    seconds: float = 0.0
    input_bytes: int = 0
    rebuilt: str | None = None
    pages: int = 0
    encodings: Counter = field(default_factory=Counter)
    extracted: int = 0
    skipped: Kept = field(default_factory=Kept)
    duplicates: Kept = field(default_factory=Kept)
    #: Input that could not be read (whole files, folders, lines, array
    #: items): what --prune and --rebuild refuse to go on without.
    unreadable: Kept = field(default_factory=Kept)
    #: Ids named by rejected records (all of them): a bad record is not a deletion.
    protected: set[str] = field(default_factory=set)
    #: Files inside the named folders of no format we read, by extension.
    unknown_formats: Counter = field(default_factory=Counter)
    #: Web archive records that hold no article, by reason.
    records_skipped: Counter = field(default_factory=Counter)
    #: Pages a web archive saw again unchanged (revisit records).
    revisits: int = 0
    #: Long text fields no mapping took: name -> where first seen.
    unmapped_fields: dict[str, str] = field(default_factory=dict)
    #: The generation made live again because CURRENT was missing.
    repaired: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "pruned": self.pruned,
            "rejected": [{"location": r.location, "reason": r.reason} for r in self.rejected],
            "rejected_count": len(self.rejected),
            "pages": self.pages,
            "encodings": dict(self.encodings),
            "extracted": self.extracted,
            "skipped": [{"location": r.location, "reason": r.reason} for r in self.skipped],
            "duplicates": [
                {"location": d.location, "id": d.id, "duplicate_of": d.duplicate_of} for d in self.duplicates
            ],
            "unreadable": [{"location": r.location, "reason": r.reason} for r in self.unreadable],
            "unreadable_count": len(self.unreadable),
            "unknown_formats": dict(self.unknown_formats),
            "records_skipped": dict(self.records_skipped),
            "revisits": self.revisits,
            "unmapped_fields": dict(self.unmapped_fields),
            "documents": self.documents,
            "repaired": self.repaired,
            "rebuilt": self.rebuilt,
            "seconds": round(self.seconds, 3),
            "input_bytes": self.input_bytes,
        }


def document_fields(article: Article, content_hash: str, sig: Signature | None = None) -> dict[str, Any]:
    """The Whoosh fields of one article (word and gram fields get the same
    text; the analysis memo makes the second pass over it cheap)."""
    title = article.title or None
    body = article.body or None
    lead = lead_text(body) or None
    fields: dict[str, Any] = {
        "id": article.id,
        "url": article.url,
        "title": title,
        "title_g": title,
        "body": body,
        "body_g": body,
        "lead": lead,
        "lead_g": lead,
        "author": article.author or None,
        "source": article.source or None,
        "crawled": article.crawled.isoformat() if article.crawled is not None else None,
        "crawl_url": article.crawl_url or None,
        "hash": content_hash.encode("ascii"),
        "facet_source": article.source.encode("utf-8") if article.source else None,
        "site": article.site or None,
        "facet_site": article.site.encode("utf-8") if article.site else None,
        "dupsig": sig.to_bytes() if sig is not None else None,
        # Not a field: the normal forms of the title and body (the
        # duplicate signature has mostly made them already), so an indexing
        # worker need not make them again (see FastSegmentWriter.add_document).
        "_normalized": [(text, normalize(text)) for text in (title, body) if text],
    }
    if article.tags:
        fields["tags"] = "\n".join(article.tags)
        fields["_stored_tags"] = list(article.tags)
        fields["tag"] = sorted({normalize_keyword(t) for t in article.tags} - {""})
        fields["facet_tags"] = VALUE_SEPARATOR.join(article.tags).encode("utf-8")
    if article.published is not None:
        fields["published"] = article.published.isoformat()
        fields["date"] = _as_naive_datetime(article.published)
        fields["sort_date"] = datetime_to_long(fields["date"])
    return {k: v for k, v in fields.items() if v is not None}


def _as_naive_datetime(value: dt.date | dt.datetime) -> dt.datetime:
    """Whoosh dates are naive; keep the wall-clock time the page printed."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return dt.datetime(value.year, value.month, value.day)


def existing_hashes(ix: Index) -> dict[str, str]:
    """id -> content hash of every live document."""
    return {doc_id: digest for doc_id, digest, _sig in live_columns(ix)}


@dataclass
class KnownCache:
    """The table of what the index holds, kept by a long-lived writer
    between its runs; each run checks that it still describes the live
    commit (another process may have written since) before using it."""

    table: KnownDocuments | None = None


def open_writer(ix: Index, settings: Settings, fresh: bool = False) -> SegmentWriter:
    """A Whoosh writer (the store's writer lock is already held). An empty
    index is built on every core (one segment per worker); updates to a
    populated index use one process, since replacing documents needs the
    whole index in view."""
    if isinstance(ix, ShardedGeneration):
        return ix.writer
    if fresh and settings.index_procs > 1:
        # Load the dictionary once, before the workers are forked, rather
        # than once in each of them.
        settings.segmentation.segmenter()
        return ParallelWriter(
            ix,
            procs=settings.index_procs,
            batchsize=256,
            limitmb=max(32, settings.writer_memory_mb // settings.index_procs),
            codec=LeanCodec(),
        )
    return FastSegmentWriter(ix, limitmb=settings.writer_memory_mb, timeout=5.0, delay=0.1)


def index_paths(
    settings: Settings,
    paths: Iterable[str],
    on_bytes: Callable[[int], None] | None = None,
    rebuild: bool = False,
    prune: bool = False,
    force: bool = False,
    discovery: Discovery | None = None,
    cache: KnownCache | None = None,
    shards: int | None = None,
) -> IndexSummary:
    """Upsert every record found under ``paths`` into the configured index.

    ``rebuild``: write a new generation holding exactly these records and
    make it live only once it is complete (the live one serves meanwhile).
    ``prune``: the paths are a complete crawl; delete documents not in it.
    Both refuse (``RunRefused``, nothing changed) when some input could not
    be read, and, unless ``force``, when they would delete more than half
    of the live documents. A named path of an unknown format, or from which
    no record was read, is a ``SourceError``, also with nothing changed.
    ``cache``: the table of what the index holds, kept from an earlier run.
    ``shards``: with ``rebuild``, write the new generation as that many
    shards, on Ray (``indexer.shards``).
    """
    started = time.perf_counter()
    found = discovery if discovery is not None else find_files(paths)
    summary = IndexSummary(files=len(found.files), input_bytes=total_bytes(found.files))
    summary.unknown_formats.update(found.unknown)
    summary.unreadable.extend(Rejection(b.location, b.reason) for b in found.unreadable)
    guard = _Guard(rebuild or prune, force, found.named)
    guard.check_readable(summary)
    store = IndexStore(settings.index)
    with (
        store.write_lock(settings.lock_timeout, settings.ray_address, sharding=shards is not None),
        _no_cycle_collection(),
    ):
        summary.repaired = store.repair_current()
        if shards is not None and not rebuild:
            raise RunRefused("--shards builds a new generation: run it with --rebuild")
        if rebuild:
            previous = store.current_name()
            live = _live_ids(store, cache)
            if shards is not None:
                name, folder = store.create_folder()
                ix = ShardedGeneration(folder, shards, settings)
            else:
                name, ix = store.create_generation(build_schema(settings.segmentation))
            known = KnownDocuments()
            try:
                _write(settings, ix, found, summary, on_bytes, guard, known, live=live)
                if shards is not None:
                    ix.write(known)
                    ix.close()
            except BaseException:
                ix.close()
                store.remove_generation(name)
                raise
            store.switch_to(name)
            store.remove_stale_generations(keep=previous)
            summary.rebuilt = name
        elif store.is_sharded():
            with _sharded_update(settings, store) as (ix, known):
                _write(settings, ix, found, summary, on_bytes, guard, known, prune=prune)
        else:
            ix = store.open_or_create(build_schema(settings.segmentation), mapped=False)
            known = KnownDocuments.open(ix, cache.table if cache is not None else None)
            try:
                _write(settings, ix, found, summary, on_bytes, guard, known, prune=prune)
            finally:
                if cache is not None:
                    cache.table = known
        if rebuild and cache is not None:
            cache.table = known
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Guard:
    """What a run must have seen before it may commit: a record from every
    named path, and, for a run that deletes what it did not see (--prune,
    --rebuild), every input read completely and not too much going."""

    complete: bool
    force: bool
    named: list[str]
    records_by_path: Counter = field(default_factory=Counter)

    def check_readable(self, summary: IndexSummary) -> None:
        if self.complete and summary.unreadable:
            shown = "\n".join(f"  {r}" for r in summary.unreadable[:20])
            more = f"\n  … and {len(summary.unreadable) - 20} more" if len(summary.unreadable) > 20 else ""
            raise RunRefused(
                f"refusing to delete documents: {len(summary.unreadable)} input(s) could not be read completely, "
                f"and the documents in them are not gone (--force does not change this); "
                f"the index is unchanged:\n{shown}{more}"
            )

    def check_seen(self, summary: IndexSummary) -> None:
        empty = [name for name in self.named if not self.records_by_path[name]]
        if empty:
            reasons = [str(r) for r in summary.rejected if any(r.location.startswith(name) for name in empty)]
            why = "".join(f"\n  {reason}" for reason in reasons[:5])
            raise SourceError(f"{', '.join(empty)}: no record could be read; nothing was indexed{why}")

    def check_deletions(self, going: int, live: int, why: str) -> None:
        if self.force or not live or going <= live * MAX_DELETED_SHARE:
            return
        raise RunRefused(
            f"refusing to delete {going} of the {live} live documents ({why}); "
            f"a crawl that lost more than half of a site is more often a broken crawl. "
            f"Check the input, or run again with --force; the index is unchanged"
        )


@contextlib.contextmanager
def _sharded_update(settings: Settings, store: IndexStore) -> Iterator[tuple[ShardedGeneration, KnownDocuments]]:
    """A run on a sharded index: a new generation following the live one
    (``ShardedGeneration.following``) and the table of what the index
    holds; on leaving, the changed shards are written on Ray and the new
    generation goes live, or, when nothing changed, it is dropped."""
    live = store.current_dir()
    name, folder = store.create_folder()
    ix = None
    try:
        ix = ShardedGeneration.following(live, folder, settings)
        known = known_documents(live)
        yield ix, known
        if not any(ix.writer.changed(n) for n in range(ix.writer.shards)):
            ix.close()
            store.remove_generation(name)
            return
        ix.write(known)
        ix.close()
    except BaseException:
        if ix is not None:
            ix.close()
        store.remove_generation(name)
        raise
    store.switch_to(name)
    store.remove_stale_generations(keep=live.name)


def _live_ids(store: IndexStore, cache: KnownCache | None = None) -> set[str]:
    """The ids a rebuild would replace, for its size guard; none when the
    live generation is missing or damaged (the rebuild is then the repair)."""
    if store.is_sharded():
        try:
            return known_documents(store.current_dir()).ids()
        except Exception:  # noqa: BLE001 - as below: what a rebuild replaces
            return set()
    try:
        ix, _files = store.open_checked()
    except (IndexMissing, IndexDamaged):
        return set()
    try:
        return KnownDocuments.open(ix, cache.table if cache is not None else None).ids()
    except Exception:  # noqa: BLE001 - a live index that cannot be read is what a rebuild replaces
        return set()
    finally:
        ix.close()


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while writing.

    A build holds millions of small posting tuples; each full collection
    walks all of them, and collections come more often the more there are,
    which made a 20,000-document build spend a third of its time in the
    collector. Nothing the writer builds is cyclic garbage, and the
    collector resumes afterwards. Worker processes forked meanwhile inherit
    the pause.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write(
    settings: Settings,
    ix: Index,
    found: Discovery,
    summary: IndexSummary,
    on_bytes: Callable[[int], None] | None,
    guard: _Guard,
    known: KnownDocuments,
    prune: bool = False,
    live: set[str] | None = None,
) -> None:
    rules = load_rules(settings.site_rules)
    mapper = FieldMapper(settings.field_map)
    live_before = len(known)
    writer = open_writer(ix, settings, fresh=not known and ix.doc_count_all() == 0)
    # An index written before some fields existed keeps its schema.
    unknown_fields = set(LATER_FIELDS) - set(ix.schema.names())
    written_this_run: set[str] = set()
    seen: set[str] = set()
    seen_urls: set[str] = set()
    try:
        read = _read(found, mapper, summary, on_bytes, guard, seen_urls)
        prepared = ix.prepared(read, rules) if isinstance(ix, ShardedGeneration) else (prepare(i, rules) for i in read)
        for item in _records(_extracted(prepared, summary)):
            if isinstance(item, Rejection):
                summary.rejected.append(item)
                if item.id:
                    summary.protected.add(item.id)
                continue
            location, record = item.location, item.record
            summary.records += 1
            seen.add(record.id)
            if record.id in written_this_run:
                # Whoosh cannot replace a document it has not committed yet;
                # commit, so the later record of the same id wins.
                _commit(writer, known)
                writer = open_writer(ix, settings)
                written_this_run.clear()
            if isinstance(record, Tombstone):
                if record.id in known:
                    writer.delete_by_term("id", record.id)
                    known.remove(record.id)
                    summary.deleted += 1
                else:
                    summary.unchanged += 1
                continue
            digest = item.content_hash()
            previous = known.digest(record.id)
            if previous == digest:
                summary.unchanged += 1
                continue
            sig = item.signature()
            original = known.find_duplicate(record.id, sig)
            if original is not None:
                summary.duplicates.append(Duplicate(location, record.id, original))
                continue
            fields = document_fields(record, digest, sig)
            for name in unknown_fields:
                fields.pop(name, None)
            if previous is None:
                writer.add_document(**fields)
                summary.added += 1
            else:
                writer.update_document(**fields)
                summary.updated += 1
            known.put(record.id, digest, sig)
            written_this_run.add(record.id)
        summary.unmapped_fields.update(mapper.unmapped)
        guard.check_seen(summary)
        guard.check_readable(summary)
        if prune:
            going = sorted(known.ids() - seen - summary.protected)
            if seen_urls and going:
                going = _not_revisited(ix, going, seen_urls)
            guard.check_deletions(len(going), live_before, "not in this crawl")
            for doc_id in going:
                writer.delete_by_term("id", doc_id)
                known.remove(doc_id)
                summary.pruned += 1
        if live is not None:
            gone = live - known.ids()
            guard.check_deletions(len(gone), len(live), "not in the crawl the new generation is built from")
        if summary.added or summary.updated or summary.deleted or summary.pruned or not ix.doc_count_all():
            _commit(writer, known)
        else:
            writer.cancel()
            if known.source == "columns" and known.fingerprint is not None:
                # Nothing to commit, but the next run need not read the
                # columns again: the table describes the live commit.
                _save_for_live_commit(ix, known)
    except BaseException:
        writer.cancel()
        raise
    summary.documents = len(known)


def _commit(writer: SegmentWriter, known: KnownDocuments) -> None:
    """Commit, merging by the tiered policy, with the table of what the
    index holds written beside the new table of contents (before it, so
    that no commit is ever without its own); older tables then go."""
    if isinstance(writer, ShardedWriter):
        return  # its shards are written once every record is decided
    folder, name = writer.storage.folder, writer.indexname
    commit_merging(writer, before_toc=lambda generation, segments: known.save(folder, name, generation, segments))
    remove_notes(Path(folder), name, keep=writer.generation, suffix=KNOWN_SUFFIX)


def _save_for_live_commit(ix: Index, known: KnownDocuments) -> None:
    """Write the table as the side file of the live commit (the writer
    lock is held, so it is still the live one)."""
    toc = ix._read_toc()
    known.save(ix.storage.folder, ix.indexname, toc.generation, toc.segments)
    remove_notes(Path(ix.storage.folder), ix.indexname, keep=toc.generation, suffix=KNOWN_SUFFIX)


def _not_revisited(ix: Index, ids: list[str], seen_urls: set[str]) -> list[str]:
    """The ids whose page no revisit record names (by the URL it was
    fetched from, or its own)."""
    keep: set[str] = set()
    with ix.searcher() as searcher:
        for doc_id in ids:
            if doc_id in seen_urls:
                keep.add(doc_id)
                continue
            stored = searcher.document(id=doc_id) or {}
            if stored.get("url") in seen_urls or stored.get("crawl_url") in seen_urls:
                keep.add(doc_id)
    return [doc_id for doc_id in ids if doc_id not in keep]


def _records(items: Iterator[Item]) -> Iterator[Prepared | Rejection]:
    """The crawl's records, prepared, pages finished with what their
    sites' other pages taught."""
    for item in with_site_names(items):
        if isinstance(item, Prepared | Rejection):
            yield item
            continue
        location, data = item  # a page, finished
        yield prepare_record(location, data)


def _extracted(items: Iterator[Item], summary: IndexSummary) -> Iterator[Item]:
    """``items``, the pages that hold no article counted out."""
    for item in items:
        if isinstance(item, PageFailed):
            summary.skipped.append(Rejection(item.location, item.reason, item.url))
            continue
        if isinstance(item, Draft):
            summary.extracted += 1
        yield item


def _read(
    found: Discovery,
    mapper: FieldMapper,
    summary: IndexSummary,
    on_bytes,
    guard: _Guard,
    seen_urls: set[str],
) -> Iterator[Unprepared | Rejection]:
    """Every item of the crawl as read: records and pages to prepare,
    input that could not be read."""
    for crawl_file in found.files:
        for raw in read_file(crawl_file, on_bytes):
            if isinstance(raw, SkippedRecord):
                summary.records_skipped[raw.reason] += 1
                continue
            guard.records_by_path[crawl_file.named] += not isinstance(raw, BadRecord)
            if isinstance(raw, BadRecord):
                rejection = Rejection(raw.location, raw.reason, raw.id)
                if raw.id is None:
                    summary.unreadable.append(rejection)
                yield rejection
                continue
            if isinstance(raw, SeenRecord):
                summary.revisits += 1
                seen_urls.add(raw.url)
                continue
            data = mapper.map(raw.data, raw.location)
            if isinstance(data, dict) and isinstance(data.get("html"), str) and not data.get("deleted"):
                summary.pages += 1
                if raw.encoding:
                    summary.encodings[raw.encoding] += 1
                yield Unprepared(raw.location, data, page=True)
                continue
            yield Unprepared(raw.location, data)


def delete_ids(settings: Settings, ids: Iterable[str]) -> list[str]:
    """Delete documents by id; returns the ids that were not in the index."""
    store = IndexStore(settings.index)
    missing = []
    with store.write_lock(settings.lock_timeout, settings.ray_address):
        if store.is_sharded():
            with _sharded_update(settings, store) as (sharded, known):
                for doc_id in dict.fromkeys(ids):
                    if doc_id in known:
                        sharded.writer.delete_by_term("id", doc_id)
                        known.remove(doc_id)
                    else:
                        missing.append(doc_id)
            return missing
        ix = store.open(mapped=False)
        known = KnownDocuments.open(ix)
        writer = open_writer(ix, settings)
        try:
            for doc_id in dict.fromkeys(ids):
                if doc_id in known:
                    writer.delete_by_term("id", doc_id)
                    known.remove(doc_id)
                else:
                    missing.append(doc_id)
            _commit(writer, known)
        except BaseException:
            writer.cancel()
            raise
    return missing


def export_documents(settings: Settings) -> Iterator[dict[str, Any]]:
    """Every stored document as an input record, in index order."""
    store = IndexStore(settings.index)
    if store.is_sharded():
        yield from (stored_to_record(fields) for fields in sharded_documents(store.current_dir()))
        return
    ix = store.open()
    with ix.searcher() as searcher:
        for fields in searcher.all_stored_fields():
            yield stored_to_record(fields)


def stored_to_record(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored fields back into the input record shape."""
    record = {name: fields.get(name) for name in STORED_FIELDS}
    record["tags"] = list(record.get("tags") or [])
    for name in CRAWL_FIELDS:
        if record[name] is None:
            del record[name]  # most articles come from no crawler that says
    return record
