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

What each record needs on its own (pages extracted, records validated,
hashed and signed for near-duplicates) is done for a new generation in Ray
tasks, a part of the crawl each, while the command reads on
(``ShardedGeneration.prepared``). Which records become documents
(tombstones, updates, near-duplicates) is decided once, in the order a
single build sees them, by the same code as a single build
(``indexer.writer``); ``ShardedWriter`` stands in for Whoosh's
writer there and sends each shard's documents, with their place in that
order, to Ray's object store in chunks as they are decided. A shard's Ray
task starts with its first chunk and analyses and writes the chunks as
they come (handed over by a ``ChunkFeed`` actor beside the command), so
reading the crawl and writing the shards overlap. A task writes into a
folder of its own and renames it into place when its commit is done, so a
task that Ray retries after losing a worker starts clean, and the retried
build equals an uninterrupted one. A task on a machine that does not see
the index folder writes on that machine, and the command copies the shard
in through Ray (``indexer.shipping``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from indexer.cluster import ray_session
from indexer.config import Settings
from indexer.known import KNOWN_SUFFIX, KnownDocuments, live_rows
from indexer.prepare import Item, prepare, prepare_part, prepared_in_order
from indexer.schema import ORDER_FIELD, SegmentColumn, build_schema
from indexer.shipping import (
    fetch_folder,
    local_folder,
    local_root,
    on_node,
    prune_generations,
    remove_copy,
    this_node,
)
from indexer.siterules import SiteRule

MANIFEST = "manifest.json"
#: What a sharded generation holds, by id (``indexer.known``): written with
#: the manifest, so a later run need not read every shard for it.
KNOWN_FILE = f"documents{KNOWN_SUFFIX}"
#: In a shard written by a run: which run (a retried task finds its own).
RUN_FILE = "RUN"
ROUTING = "blake2b-64 of the id's UTF-8, big-endian, modulo the shard count"
#: In a generation being written on Ray: the run's id, by which a shard
#: task sees whether its machine shares the command's index folder.
BUILD_MARK = ".building"
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


def manifest_fingerprint(manifest: Manifest) -> str:
    """What a manifest says, in 32 hex digits: the known table it was
    written with describes exactly that."""
    return hashlib.blake2b(manifest.to_json().encode("utf-8"), digest_size=16).hexdigest()


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
    hands one on, with its shard's number), so what the process deciding
    them holds is each id's place, not the documents. A document replaced
    or deleted after its chunk left is dropped by its place (``dropped``)
    when the shard is written."""

    def __init__(
        self, shards: int, ship: Callable[[int, list[tuple[int, dict[str, Any]]]], Any], first_order: int = 0
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
        """Send shard ``number``'s pending documents on as one chunk, less
        those replaced or deleted while they waited."""
        dropped = self.dropped[number]
        chunk = [item for item in self.pending[number] if item[0] not in dropped]
        self.pending[number] = []
        if chunk:
            self.chunks[number].append(self.ship(number, chunk))

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
    changes nothing never starts it) and left on ``close``, which also
    stops the tasks of a run that did not get to ``write``."""

    def __init__(self, folder: Path, shards: int, settings: Settings, base: Manifest | None = None) -> None:
        self.folder = folder
        self.settings = settings
        self.base = base
        self.schema = build_schema(settings.segmentation, sharded=True)
        self.writer = ShardedWriter(shards, self._put, base.orders if base is not None else 0)
        self.run = uuid.uuid4().hex
        (folder / BUILD_MARK).write_text(self.run)
        self._session = ExitStack()
        self._ray: Any = None
        self._feed: Any = None
        self._streams = 0
        #: Processes each new shard's task writes with (``task_procs``).
        self._procs = 1
        #: shard number -> its task (started with the shard's first chunk).
        self._tasks: dict[int, Any] = {}

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

    def prepared(self, items: Iterable[Item], rules: list[SiteRule]) -> Iterator[Item]:
        """The crawl's ``items`` prepared (``indexer.prepare``). For a new
        generation, in Ray tasks, a part of the crawl each, with as many
        parts out at a time as the cluster has cores, so that extracting
        pages and signing records keep pace with the shards' tasks instead
        of holding them up. A run on a live generation (a crawl's batch,
        which may change nothing and then never starts Ray) prepares them
        here. The tasks take no core of their own: the shards' tasks hold
        the cores while they wait for what these tasks prepare."""
        if self.base is not None:
            return (prepare(item, rules) for item in items)
        ray = self.ray()
        task = ray.remote(num_cpus=0, max_retries=SHARD_RETRIES)(prepare_part)
        shared_rules = ray.put(rules)
        window = max(2, int(ray.cluster_resources().get("CPU", 1)))
        return prepared_in_order(items, lambda part: task.remote(part, shared_rules), ray.get, window)

    def _put(self, number: int, chunk: list[tuple[int, dict[str, Any]]]) -> Any:
        """Send a chunk to the object store and on to its shard's task."""
        ray = self.ray()
        ref = ray.put(chunk)
        # In a list: an object reference passed as it is would be resolved.
        self._fed().add.remote(number, len(self.writer.chunks[number]), [ref])
        if len(self._tasks) < self._streams:
            # No more shards are written while they are read than the
            # cluster has cores: each task holds a writer's memory.
            self._start(number)
        return ref

    def _fed(self) -> Any:
        if self._feed is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            ray = self.ray()
            # On this command's node: the feed must outlive any worker node.
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            self._feed = ray.remote(num_cpus=0, scheduling_strategy=here)(ChunkFeed).remote(self.writer.shards)
            # A run on a live generation adds a crawl's batch to a shard
            # through one process (``open_writer``).
            self._procs = task_procs(ray.nodes(), self.writer.shards) if self.base is None else 1
            self._streams = max(1, int(ray.cluster_resources().get("CPU", 1)) // self._procs)
        return self._feed

    def _start(self, number: int) -> None:
        """Shard ``number``'s task, unless it is running."""
        if number not in self._tasks:
            ray, feed = self.ray(), self._fed()
            writing = ray.remote(num_cpus=self._procs, max_retries=SHARD_RETRIES)(write_shard)
            self._tasks[number] = writing.remote(
                str(self.folder),
                number,
                self.settings,
                feed,
                self.base is not None,
                self.run,
                this_node(ray),
            )

    def _placed(self, number: int, entry: dict[str, Any]) -> dict[str, Any]:
        """Shard ``number``'s manifest entry, from its task's ``entry``; a
        shard the task left on its machine (``write_shard``) is copied into
        the generation first, and written again should that machine be
        lost before it is."""
        ray = self.ray()
        lost = 0
        while (copy := entry.pop("copy", None)) is not None:
            node = entry.pop("node")
            try:
                fetched = fetch_folder(ray, node, copy, _work_folder(self.folder, number))
            except ray.exceptions.RayError:
                lost += 1
                if lost > SHARD_RETRIES:
                    raise
                del self._tasks[number]
                self._start(number)
                entry = ray.get(self._tasks[number])
                continue
            place(fetched, self.folder / shard_name(number))
            on_node(ray, node, remove_copy).remote(copy)
        return entry

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
        if self._ray is not None:
            for task in self._tasks.values():
                self._ray.cancel(task, force=True)  # done by now, when written
            if self._feed is not None:
                self._ray.kill(self._feed)
        self._tasks, self._feed = {}, None
        self.writer.cancel()
        self._session.close()
        self._ray = None

    def write(self, known: KnownDocuments | None = None) -> Manifest:
        """Finish every changed shard's task (one per shard, started with
        its first chunk), and then write ``known`` (the table of what the
        generation holds) and the manifest; the generation is complete
        when this returns."""
        ray = self.ray()
        for number in range(self.writer.shards):
            if number not in self._tasks and self.base is not None and not self.writer.changed(number):
                continue
            self.writer.flush(number)
            self._start(number)
            self._fed().end.remote(
                number,
                len(self.writer.chunks[number]),
                sorted(self.writer.dropped[number]),
                sorted(self.writer.deleted[number]) if self.base is not None else [],
            )
        done = dict(zip(self._tasks, ray.get(list(self._tasks.values())), strict=True))
        written = {number: self._placed(number, entry) for number, entry in done.items()}
        # What attempts lost with their worker left behind.
        for left in self.folder.glob(".shard-*"):
            shutil.rmtree(left, ignore_errors=True)
        (self.folder / BUILD_MARK).unlink(missing_ok=True)
        parts = [
            ShardInfo(**written[n]) if n in written else self.base.parts[n]  # type: ignore[union-attr]
            for n in range(self.writer.shards)
        ]
        manifest = Manifest(shards=self.writer.shards, parts=parts, orders=self.writer.next_order)
        if known is not None:
            known.write(self.folder / KNOWN_FILE, 0, manifest_fingerprint(manifest))
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
    documents would read. From the generation's side file when it
    describes the manifest exactly, else read from every shard."""
    manifest = read_manifest(generation)
    kept = KnownDocuments.read(generation / KNOWN_FILE, 0, manifest_fingerprint(manifest), manifest.documents)
    if kept is not None:
        return kept
    rows = []
    for part in manifest.parts:
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


class ChunkFeed:
    """Hands each shard's task its chunks as the command decides them (a
    Ray actor, on the command's node): a task asks for chunk 0, 1, 2...
    and waits for the next; when the command is done it says how many
    chunks there were and what to drop and delete. A retried task asks
    from chunk 0 again, so the feed keeps every chunk's reference."""

    def __init__(self, shards: int) -> None:
        self._chunks: list[dict[int, Any]] = [{} for _ in range(shards)]
        #: shard -> (chunk count, dropped places, deleted ids), once known.
        self._ends: list[tuple[int, list[int], list[str]] | None] = [None] * shards
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made on the actor's event loop
            self._changed = asyncio.Condition()
        return self._changed

    async def add(self, number: int, index: int, refs: list[Any]) -> None:
        async with self._condition():
            self._chunks[number][index] = refs[0]
            self._condition().notify_all()

    async def end(self, number: int, count: int, dropped: list[int], deleted: list[str]) -> None:
        async with self._condition():
            self._ends[number] = (count, dropped, deleted)
            self._condition().notify_all()

    async def next(self, number: int, index: int) -> tuple[str, Any]:
        """("chunk", [reference]) of chunk ``index``, or ("end", (count,
        dropped, deleted)) after the last."""

        def ready() -> bool:
            end = self._ends[number]
            return index in self._chunks[number] or (end is not None and index >= end[0])

        async with self._condition():
            await self._condition().wait_for(ready)
        if index in self._chunks[number]:
            return "chunk", [self._chunks[number][index]]
        return "end", self._ends[number]


def _feed_documents(writer: Any, feed: Any, number: int, skipped: set[int]) -> tuple[list[int], tuple]:
    """Add shard ``number``'s documents from ``feed`` as they come, except
    the places in ``skipped``: the places added, and the feed's end."""
    import ray

    added: list[int] = []
    index = 0
    while True:
        kind, payload = ray.get(feed.next.remote(number, index))
        if kind == "end":
            return added, payload
        for order, fields in ray.get(payload[0]):
            if order not in skipped:
                writer.add_document(**fields, **{ORDER_FIELD: order})
                added.append(order)
        index += 1


def write_shard(
    folder: str,
    number: int,
    settings: Settings,
    feed: Any,
    following: bool = False,
    run: str = "",
    source: str | None = None,
) -> dict:
    """One shard of a sharded generation (run as a Ray task): written anew,
    or (``following``) the shard's files there with the ids the feed says
    were deleted gone and the documents the feed hands over added, except
    those it says to drop. Documents are added as they come; a document
    replaced after it was added (rare: an id twice in one crawl, far
    apart) means writing them again, skipping it. The work is done in a
    folder of its own and renamed into place once committed, so a task
    that Ray runs again after losing its worker starts from the shard as
    it was; one that finds its own run already in place returns it.

    A task on a machine that does not see ``folder`` (``source``: the Ray
    node of the command, which does), or on any machine when
    ``settings.shard_cache`` is set, works in that machine's shard folder
    instead (``indexer.shipping``) and leaves the shard there: its entry
    then says where (``node``, ``copy``), for the command to copy it in.
    The task writes with as many processes as it holds cores
    (``_task_settings``)."""
    generation = Path(folder)
    final = generation / shard_name(number)
    if source is not None and (settings.shard_cache or not _sees(generation, run)):
        return _write_shard_elsewhere(generation, number, settings, feed, following, run, source)
    previous = _previous(final)
    if not final.exists() and previous.exists():
        os.replace(previous, final)  # an attempt died between its two renames
    if run and (final / RUN_FILE).is_file() and (final / RUN_FILE).read_text() == run:
        return shard_info(final, number)
    work = _work_folder(generation, number)
    try:
        if following:
            link_tree(final, work)
        else:
            work.mkdir()
        _write_into(work, settings, feed, number, following, run)
        place(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return shard_info(final, number)


def _write_shard_elsewhere(
    generation: Path, number: int, settings: Settings, feed: Any, following: bool, run: str, source: str
) -> dict:
    """``write_shard`` in this machine's shard folder; a following shard's
    files are copied from the command's machine first."""
    import ray

    root = local_root(settings.shard_cache)
    # Named for the node too: the Ray nodes of one machine share the folder.
    node = this_node(ray)
    work = root / "builds" / run / f"{shard_name(number)}.{node}.{uuid.uuid4().hex[:8]}"
    try:
        if following:
            fetch_folder(ray, source, str(generation / shard_name(number)), work)
        else:
            work.mkdir(parents=True)
        _write_into(work, settings, feed, number, following, run)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {**shard_info(work, number), "node": node, "copy": str(work)}


def _sees(generation: Path, run: str) -> bool:
    """Whether this machine sees the command's generation folder (the run's
    mark in it, ``BUILD_MARK``)."""
    try:
        return (generation / BUILD_MARK).read_text() == run
    except OSError:
        return False


def _write_into(work: Path, settings: Settings, feed: Any, number: int, following: bool, run: str) -> None:
    """Shard ``number``'s documents from ``feed`` written into the index in
    ``work`` (a new one unless ``following``), committed, marked with
    ``run``."""
    from indexer.merging import commit as commit_merging
    from indexer.writer import open_writer

    if following:
        (work / RUN_FILE).unlink(missing_ok=True)
        ix = whoosh_index.open_dir(work)
    else:
        ix = whoosh_index.create_in(work, build_schema(settings.segmentation, sharded=True))
    task = _task_settings(settings)
    writer = open_writer(ix, task, fresh=not following)
    added, (_count, dropped, deleted) = _feed_documents(writer, feed, number, set())
    if not set(dropped).isdisjoint(added):
        writer.cancel()
        writer = open_writer(ix, task, fresh=not following)
        _feed_documents(writer, feed, number, set(dropped))
    # Deletions reach only the segments committed before: the
    # documents just added, some under the same ids, stay.
    for doc_id in deleted:
        writer.delete_by_term("id", doc_id)
    commit_merging(writer)
    ix.close()
    (work / RUN_FILE).write_text(run)


def _work_folder(generation: Path, number: int) -> Path:
    """A folder of its own in ``generation`` where shard ``number`` is
    written or copied before ``place`` puts it in place (what an attempt
    left of one is removed when the generation is written)."""
    return generation / f".{shard_name(number)}.{uuid.uuid4().hex}"


def _previous(final: Path) -> Path:
    """Where ``place`` keeps the shard it replaces until the new one is in."""
    return final.parent / f".{final.name}.previous"


def place(work: Path, final: Path) -> None:
    """Put the complete shard in ``work`` in the place of ``final``: at no
    moment is there no complete shard under one of the two names."""
    previous = _previous(final)
    if final.exists():
        os.replace(final, previous)
    os.replace(work, final)
    shutil.rmtree(previous, ignore_errors=True)


def _task_settings(settings: Settings) -> Settings:
    """What a shard task writes with: as many processes as the cores Ray
    gave it (``task_procs`` of them for a new shard, one for a later
    crawl's), and their share of the writer budget. The budget is a
    machine's, and a node runs shard tasks on all its cores at once, as
    the processes of a single build share it: a 200,000-article build in 4
    shards on two cores peaked at 1,046 MB a task with the whole budget
    each."""
    import ray

    procs = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    node = this_node(ray)
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    return settings.replace(
        index_procs=procs, writer_memory_mb=max(32, settings.writer_memory_mb * procs // max(1, int(cpus)))
    )


def task_procs(nodes: list[dict[str, Any]], shards: int) -> int:
    """Processes (and cores) for each new shard's task: the cluster's cores
    shared among the shards, so that a build in fewer shards than cores
    uses them all, as a single build does (one shard on two cores wrote
    with one process, three times as long as a single build); and no more
    than the smallest node has, so that a task retried after its node was
    lost fits on any that is left."""
    cpus = [c for n in nodes if n.get("Alive", True) and (c := int(n["Resources"].get("CPU", 0))) > 0]
    if not cpus:
        return 1
    return max(1, min(sum(cpus) // max(1, shards), min(cpus)))


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


def serving_folder(settings: Settings, folder: str, node: str, fingerprint: str) -> str:
    """The folder a shard actor serves the shard in ``folder`` from: that
    one, where this machine sees the generation the command serves (its
    manifest here has ``fingerprint``) and no ``shard_cache`` is set;
    otherwise this machine's copy (``indexer.shipping``), copied first
    from Ray node ``node`` (the command's) if need be."""
    import ray

    shard = Path(folder)
    generation = shard.parent
    if not settings.shard_cache:
        try:
            if manifest_fingerprint(read_manifest(generation)) == fingerprint:
                return folder
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not here, or not that generation
    root = local_root(settings.shard_cache)
    copy = local_folder(root, generation.parent, f"{generation.name}-{fingerprint[:12]}", shard.name)
    # The copies of earlier generations: most of their files are this one's.
    earlier = sorted(copy.parent.parent.glob(f"gen-*/{shard.name}"), reverse=True)
    fetch_folder(ray, node, folder, copy, earlier)
    prune_generations(copy.parent.parent, keep=copy.parent.name)
    return str(copy)
