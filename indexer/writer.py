"""Writing crawl records into the index: upserts, tombstones, deletions.

A run reads every record, validates it, and compares its content hash with
what the index holds for that id, so a re-crawl that changed nothing writes
nothing. Bad records are collected with their location and never stop the
run. Everything is committed once at the end: a run that dies before that
leaves the index as it was.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError
from whoosh.index import Index, LockError
from whoosh.util.times import datetime_to_long
from whoosh.writing import SegmentWriter

from indexer.analysis import normalize_keyword
from indexer.config import Settings
from indexer.documents import Article, Tombstone, describe_error, lead_text, load_record
from indexer.schema import STORED_FIELDS, VALUE_SEPARATOR, build_schema
from indexer.sources import BadRecord, find_files, read_records, total_bytes
from indexer.store import IndexStore

#: Seconds a writer waits for another writer to finish before giving up.
WRITE_LOCK_TIMEOUT = 60.0


class IndexBusy(Exception):
    """Another process is writing to this index."""


@dataclass(frozen=True)
class Rejection:
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class IndexSummary:
    """What a run did, for the end-of-run report and ``--json``."""

    files: int = 0
    records: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    documents: int = 0
    seconds: float = 0.0
    input_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "rejected": [{"location": r.location, "reason": r.reason} for r in self.rejected],
            "documents": self.documents,
            "seconds": round(self.seconds, 3),
            "input_bytes": self.input_bytes,
        }


def document_fields(article: Article, content_hash: str) -> dict[str, Any]:
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
        "hash": content_hash.encode("ascii"),
        "facet_source": article.source.encode("utf-8") if article.source else None,
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
    """id -> content hash of every live document, read from columns (no
    stored-field decoding), so a large re-crawl starts quickly."""
    out: dict[str, str] = {}
    with ix.reader() as reader:
        if reader.doc_count_all() == 0:
            return out
        ids = reader.column_reader("id")
        hashes = reader.column_reader("hash")
        for docnum in range(reader.doc_count_all()):
            if reader.is_deleted(docnum):
                continue
            doc_id = ids[docnum]
            value = hashes[docnum]
            out[doc_id.decode("utf-8") if isinstance(doc_id, bytes) else doc_id] = (
                value.decode("ascii") if value else ""
            )
    return out


def open_writer(ix: Index, settings: Settings, timeout: float = WRITE_LOCK_TIMEOUT) -> SegmentWriter:
    try:
        return ix.writer(limitmb=settings.writer_memory_mb, timeout=timeout, delay=0.25)
    except LockError:
        raise IndexBusy(
            f"another process is writing to {ix.storage.folder} and did not finish within {timeout:.0f} s"
        ) from None


def index_paths(
    settings: Settings,
    paths: Iterable[str],
    on_bytes: Callable[[int], None] | None = None,
) -> IndexSummary:
    """Upsert every record found under ``paths`` into the configured index."""
    started = time.perf_counter()
    files = find_files(paths)
    summary = IndexSummary(files=len(files), input_bytes=total_bytes(files))
    store = IndexStore(settings.index)
    ix = store.open_or_create(build_schema(settings.userdict))
    known = existing_hashes(ix)
    writer = open_writer(ix, settings)
    written_this_run: set[str] = set()
    try:
        for item in _records(files, on_bytes):
            if isinstance(item, Rejection):
                summary.rejected.append(item)
                continue
            summary.records += 1
            record = item
            if record.id in written_this_run:
                # Whoosh cannot replace a document it has not committed yet;
                # commit, so the later record of the same id wins.
                writer.commit()
                writer = open_writer(ix, settings)
                written_this_run.clear()
            if isinstance(record, Tombstone):
                if record.id in known:
                    writer.delete_by_term("id", record.id)
                    del known[record.id]
                    summary.deleted += 1
                else:
                    summary.unchanged += 1
                continue
            digest = record.content_hash()
            previous = known.get(record.id)
            if previous == digest:
                summary.unchanged += 1
                continue
            fields = document_fields(record, digest)
            if previous is None:
                writer.add_document(**fields)
                summary.added += 1
            else:
                writer.update_document(**fields)
                summary.updated += 1
            known[record.id] = digest
            written_this_run.add(record.id)
        if summary.added or summary.updated or summary.deleted:
            writer.commit()
        else:
            writer.cancel()
    except BaseException:
        writer.cancel()
        raise
    summary.documents = len(known)
    summary.seconds = time.perf_counter() - started
    return summary


def _records(files, on_bytes) -> Iterator[Article | Tombstone | Rejection]:
    for path in files:
        for raw in read_records(path, on_bytes):
            if isinstance(raw, BadRecord):
                yield Rejection(raw.location, raw.reason)
                continue
            try:
                yield load_record(raw.data)
            except ValidationError as err:
                yield Rejection(raw.location, describe_error(err))


def delete_ids(settings: Settings, ids: Iterable[str]) -> list[str]:
    """Delete documents by id; returns the ids that were not in the index."""
    store = IndexStore(settings.index)
    ix = store.open()
    missing = []
    writer = open_writer(ix, settings)
    try:
        with ix.searcher() as searcher:
            for doc_id in ids:
                if searcher.document_number(id=doc_id) is None:
                    missing.append(doc_id)
                else:
                    writer.delete_by_term("id", doc_id)
        writer.commit()
    except BaseException:
        writer.cancel()
        raise
    return missing


def export_documents(settings: Settings) -> Iterator[dict[str, Any]]:
    """Every stored document as an input record, in index order."""
    ix = IndexStore(settings.index).open()
    with ix.searcher() as searcher:
        for fields in searcher.all_stored_fields():
            yield stored_to_record(fields)


def stored_to_record(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored fields back into the input record shape."""
    record = {name: fields.get(name) for name in STORED_FIELDS}
    record["tags"] = list(record.get("tags") or [])
    return record
