"""A sharded index: one generation split into N shards, written on Ray.

A sharded generation is a folder like any other generation of the index
(``CURRENT`` names it), holding one Whoosh index per shard and a manifest::

    index/CURRENT               -> gen-000004
    index/gen-000004/manifest.json
    index/gen-000004/shard-000/  (a Whoosh index: table of contents, segments)
    index/gen-000004/shard-001/

A document goes to the shard its id's stable hash names, so a later crawl
finds it where it is. The manifest says how many shards there are, how
documents are routed, and each shard's document count and field-length
totals; it is written last, after every shard is complete, and ``CURRENT``
switches to the generation only then, so no reader ever sees part of one.

Which records become documents (tombstones, updates, near-duplicates) is
decided once, in the order a single build sees them, by the same code as a
single build (``indexer.writer``); ``ShardedWriter`` stands in for Whoosh's
writer there and sends each shard's documents, with their place in that
order, to Ray's object store in chunks as they are decided. The shards are
then analysed and written by parallel Ray tasks, each reading its chunks
one at a time. A
task writes into a folder of its own and renames it into place when its
commit is done, so a task that Ray retries after losing a worker starts
clean, and the retried build equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from indexer.cluster import ray_session
from indexer.config import Settings
from indexer.known import KnownDocuments, live_rows
from indexer.schema import ORDER_FIELD, SegmentColumn, build_schema

MANIFEST = "manifest.json"
#: In a shard written by a run: which run (a retried task finds its own).
RUN_FILE = "RUN"
ROUTING = "blake2b-64 of the id's UTF-8, big-endian, modulo the shard count"
#: How often Ray runs a shard's task again after losing the worker it ran on.
SHARD_RETRIES = 3
#: A shard's documents per chunk sent to Ray's object store while a run
#: decides them (about 2.5 MB of a news portal's articles).
CHUNK_DOCUMENTS = 2000
#: Fields a shard's task need not be sent (made again where needed).
_NOT_SENT = ("_normalized",)


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a document lives in: stable across runs, machines and
    Python versions (``hash()`` is salted per process)."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_name(number: int) -> str:
    return f"shard-{number:03d}"


@dataclass
class ShardInfo:
    name: str
    documents: int
    doc_count_all: int
    field_lengths: dict[str, int]
    #: The generation of the shard's table of contents the manifest names.
    toc: int


@dataclass
class Manifest:
    shards: int
    routing: str = ROUTING
    parts: list[ShardInfo] = field(default_factory=list)
    #: Places in indexing order handed out so far (the next document's).
    orders: int = 0

    @property
    def documents(self) -> int:
        return sum(p.documents for p in self.parts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(
            shards=int(data["shards"]),
            routing=data["routing"],
            parts=[ShardInfo(**p) for p in data["parts"]],
            orders=int(data.get("orders", 0)),
        )


def is_sharded(generation: Path) -> bool:
    return (generation / MANIFEST).is_file()


def read_manifest(generation: Path) -> Manifest:
    return Manifest.from_json((generation / MANIFEST).read_text(encoding="utf-8"))


def write_manifest(generation: Path, manifest: Manifest) -> None:
    """Atomically, and durably: the manifest is what makes the generation
    complete."""
    tmp = generation / f".{MANIFEST}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, generation / MANIFEST)
    fd = os.open(generation, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardedWriter:
    """Stands in for Whoosh's writer while a sharded generation's records
    are decided: gives each new document its place in the whole index's
    order (what a single index's document number would be: a replaced
    document goes to the end), and keeps the ids each shard must delete.

    A shard's documents leave in chunks of ``CHUNK_DOCUMENTS`` (``ship``
    puts one in Ray's object store), so what the process deciding them
    holds is each id's place, not the documents. A document replaced or
    deleted after its chunk left is dropped by its place (``dropped``)
    when the shard is written."""

    def __init__(
        self, shards: int, ship: Callable[[list[tuple[int, dict[str, Any]]]], Any], first_order: int = 0
    ) -> None:
        self.shards = shards
        self.ship = ship
        self.next_order = first_order
        self.cancel()

    def add_document(self, **fields: Any) -> None:
        doc_id = fields["id"]
        number = shard_of(doc_id, self.shards)
        self._drop(number, doc_id)
        self.latest[number][doc_id] = self.next_order
        self.pending[number].append((self.next_order, {k: v for k, v in fields.items() if k not in _NOT_SENT}))
        self.next_order += 1
        if len(self.pending[number]) >= CHUNK_DOCUMENTS:
            self.flush(number)

    def update_document(self, **fields: Any) -> None:
        self.deleted[shard_of(fields["id"], self.shards)].add(fields["id"])
        self.add_document(**fields)

    def delete_by_term(self, fieldname: str, text: str) -> None:
        if fieldname == "id":
            number = shard_of(text, self.shards)
            self._drop(number, text)
            self.deleted[number].add(text)

    def _drop(self, number: int, doc_id: str) -> None:
        replaced = self.latest[number].pop(doc_id, None)
        if replaced is not None:
            self.dropped[number].add(replaced)

    def flush(self, number: int) -> None:
        """Send shard ``number``'s pending documents on as one chunk."""
        if self.pending[number]:
            self.chunks[number].append(self.ship(self.pending[number]))
            self.pending[number] = []

    def doc_count(self) -> int:
        return sum(len(t) for t in self.latest)

    def changed(self, number: int) -> bool:
        return bool(self.latest[number] or self.deleted[number])

    def cancel(self) -> None:
        self.pending: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in range(self.shards)]
        self.chunks: list[list[Any]] = [[] for _ in range(self.shards)]
        self.latest: list[dict[str, int]] = [{} for _ in range(self.shards)]
        self.dropped: list[set[int]] = [set() for _ in range(self.shards)]
        self.deleted: list[set[str]] = [set() for _ in range(self.shards)]


class ShardedGeneration:
    """A sharded generation being written: what ``indexer.writer`` asks of
    the index it writes to (its schema, its document count, a writer).

    A new one (``base`` None) is written whole. One that follows ``base``
    (the live generation's manifest) starts as hard links to the live
    generation's shard files (a segment file is never changed once
    written), and only the shards a run changed are committed again, in
    the new folder: the live generation is never touched, and ``CURRENT``
    switches to the new one when its manifest is written.

    Ray is joined when the first chunk of documents leaves (a run that
    changes nothing never starts it) and left on ``close``."""

    def __init__(self, folder: Path, shards: int, settings: Settings, base: Manifest | None = None) -> None:
        self.folder = folder
        self.settings = settings
        self.base = base
        self.schema = build_schema(settings.segmentation, sharded=True)
        self.writer = ShardedWriter(shards, self._put, base.orders if base is not None else 0)
        self.run = uuid.uuid4().hex
        self._session = ExitStack()
        self._ray: Any = None

    @classmethod
    def following(cls, live: Path, folder: Path, settings: Settings) -> ShardedGeneration:
        base = read_manifest(live)
        for part in base.parts:
            link_tree(live / part.name, folder / part.name)
        return cls(folder, base.shards, settings, base)

    def ray(self) -> Any:
        if self._ray is None:
            self._ray = self._session.enter_context(ray_session(self.settings.ray_address))
        return self._ray

    def _put(self, chunk: list[tuple[int, dict[str, Any]]]) -> Any:
        return self.ray().put(chunk)

    def doc_count_all(self) -> int:
        return self.base.documents if self.base is not None else 0

    @contextmanager
    def searcher(self) -> Iterator[_ShardLookup]:
        """Stored documents by id, from the shard each id lives in."""
        lookup = _ShardLookup(self.folder, self.writer.shards)
        try:
            yield lookup
        finally:
            lookup.close()

    def close(self) -> None:
        self.writer.cancel()
        self._session.close()
        self._ray = None

    def write(self) -> Manifest:
        """Write every changed shard in a Ray task of its own, and then the
        manifest; the generation is complete when this returns."""
        ray = self.ray()
        writing = ray.remote(max_retries=SHARD_RETRIES)(write_shard)
        refs = {}
        for number in range(self.writer.shards):
            if self.base is not None and not self.writer.changed(number):
                continue
            self.writer.flush(number)
            refs[number] = writing.remote(
                str(self.folder),
                number,
                self.settings,
                self.writer.chunks[number],
                sorted(self.writer.dropped[number]),
                sorted(self.writer.deleted[number]) if self.base is not None else None,
                self.run,
            )
        written = dict(zip(refs, ray.get(list(refs.values())), strict=True))
        # What attempts lost with their worker left behind.
        for left in self.folder.glob(".shard-*"):
            shutil.rmtree(left, ignore_errors=True)
        parts = [
            ShardInfo(**written[n]) if n in written else self.base.parts[n]  # type: ignore[union-attr]
            for n in range(self.writer.shards)
        ]
        manifest = Manifest(shards=self.writer.shards, parts=parts, orders=self.writer.next_order)
        write_manifest(self.folder, manifest)
        return manifest


class _ShardLookup:
    def __init__(self, folder: Path, shards: int) -> None:
        self.folder, self.shards = folder, shards
        self._searchers: dict[int, Any] = {}

    def document(self, id: str) -> dict[str, Any] | None:  # noqa: A002 - Whoosh's keyword
        number = shard_of(id, self.shards)
        if number not in self._searchers:
            self._searchers[number] = whoosh_index.open_dir(self.folder / shard_name(number)).searcher()
        return self._searchers[number].document(id=id)

    def close(self) -> None:
        for searcher in self._searchers.values():
            searcher.close()


def link_tree(source: Path, target: Path) -> None:
    """``target``: a folder of hard links to ``source``'s files."""
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            os.link(path, target / path.name)


def known_documents(generation: Path) -> KnownDocuments:
    """Every shard's live documents (id, content hash, signature), in
    indexing order, as one table: the table a single index of the same
    documents would read."""
    rows = []
    for part in read_manifest(generation).parts:
        ix = whoosh_index.open_dir(generation / part.name)
        with ix.reader() as reader:
            orders = SegmentColumn(reader, ORDER_FIELD)
            rows.extend((orders[docnum], doc_id, digest, sig) for docnum, doc_id, digest, sig in live_rows(reader))
        ix.close()
    rows.sort(key=lambda row: row[0])
    table = KnownDocuments()
    for _order, doc_id, digest, sig in rows:
        table.put(doc_id, digest, sig)
    table.source = "shards"
    return table


def sharded_documents(generation: Path) -> Iterator[dict[str, Any]]:
    """Every shard's stored documents, in indexing order."""
    found = []
    for part in read_manifest(generation).parts:
        ix = whoosh_index.open_dir(generation / part.name)
        with ix.reader() as reader:
            orders = SegmentColumn(reader, ORDER_FIELD)
            for docnum in range(reader.doc_count_all()):
                if not reader.is_deleted(docnum):
                    found.append((orders[docnum], reader.stored_fields(docnum)))
        ix.close()
    found.sort(key=lambda item: item[0])
    for _order, fields in found:
        yield fields


def write_shard(
    folder: str,
    number: int,
    settings: Settings,
    chunks: list[Any],
    dropped: list[int],
    deleted: list[str] | None = None,
    run: str = "",
) -> dict:
    """One shard of a sharded generation (run as a Ray task): written anew
    (``deleted`` None), or the shard's files there with ``deleted`` gone
    and the documents of ``chunks`` (Ray object references, read one at a
    time) added, except those whose place is in ``dropped``. The work is
    done in a folder of its own and
    renamed into place once committed, so a task that Ray runs again after
    losing its worker starts from the shard as it was; one that finds its
    own run already in place returns it."""
    import ray

    from indexer.merging import commit as commit_merging
    from indexer.writer import open_writer

    final = Path(folder) / shard_name(number)
    previous = Path(folder) / f".{shard_name(number)}.previous"
    if not final.exists() and previous.exists():
        os.replace(previous, final)  # an attempt died between its two renames
    if run and (final / RUN_FILE).is_file() and (final / RUN_FILE).read_text() == run:
        return shard_info(final, number)
    work = Path(folder) / f".{shard_name(number)}.{uuid.uuid4().hex}"
    try:
        if deleted is None:
            work.mkdir()
            ix = whoosh_index.create_in(work, build_schema(settings.segmentation, sharded=True))
        else:
            link_tree(final, work)
            (work / RUN_FILE).unlink(missing_ok=True)
            ix = whoosh_index.open_dir(work)
        writer = open_writer(ix, settings.replace(index_procs=1), fresh=False)
        for doc_id in deleted or ():
            writer.delete_by_term("id", doc_id)
        skipped = set(dropped)
        for chunk in chunks:
            for order, fields in ray.get(chunk):
                if order not in skipped:
                    writer.add_document(**fields, **{ORDER_FIELD: order})
        commit_merging(writer)
        ix.close()
        (work / RUN_FILE).write_text(run)
        if final.exists():
            os.replace(final, previous)
        os.replace(work, final)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return shard_info(final, number)


def shard_info(path: Path, number: int) -> dict[str, Any]:
    """The manifest's entry for the shard in ``path``."""
    ix = whoosh_index.open_dir(path)
    try:
        with ix.reader() as reader:
            return {
                "name": shard_name(number),
                "documents": reader.doc_count(),
                "doc_count_all": reader.doc_count_all(),
                "field_lengths": {n: reader.field_length(n) for n, f in reader.schema.items() if f.scorable},
                "toc": ix.latest_generation(),
            }
    finally:
        ix.close()
