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
writer there and keeps each shard's documents with their place in that
order. The shards are then analysed and written by parallel Ray tasks. A
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from indexer.config import Settings
from indexer.schema import ORDER_FIELD, build_schema

MANIFEST = "manifest.json"
ROUTING = "blake2b-64 of the id's UTF-8, big-endian, modulo the shard count"
#: How often Ray runs a shard's task again after losing the worker it ran on.
SHARD_RETRIES = 3
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
    are decided: keeps each shard's documents, in order, with their place
    in the whole build's order (what a single index's document numbers
    would be: a replaced document goes to the end)."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.pending: list[dict[str, tuple[int, dict[str, Any]]]] = [{} for _ in range(shards)]
        self._next = 0

    def add_document(self, **fields: Any) -> None:
        doc_id = fields["id"]
        table = self.pending[shard_of(doc_id, self.shards)]
        table.pop(doc_id, None)
        table[doc_id] = (self._next, {k: v for k, v in fields.items() if k not in _NOT_SENT})
        self._next += 1

    update_document = add_document

    def delete_by_term(self, fieldname: str, text: str) -> None:
        if fieldname == "id":
            self.pending[shard_of(text, self.shards)].pop(text, None)

    def doc_count(self) -> int:
        return sum(len(t) for t in self.pending)

    def cancel(self) -> None:
        self.pending = [{} for _ in range(self.shards)]


class ShardedGeneration:
    """A sharded generation being built: what ``indexer.writer`` asks of
    the index it writes to (its schema, its document count, a writer)."""

    def __init__(self, folder: Path, shards: int, settings: Settings) -> None:
        self.folder = folder
        self.settings = settings
        self.schema = build_schema(settings.segmentation, sharded=True)
        self.writer = ShardedWriter(shards)

    def doc_count_all(self) -> int:
        return 0

    def close(self) -> None:
        self.writer.cancel()

    def write(self, ray: Any) -> Manifest:
        """Write every shard in a Ray task of its own, and then the
        manifest; the generation is complete when this returns."""
        task = ray.remote(max_retries=SHARD_RETRIES)(write_shard)
        refs = []
        for number, table in enumerate(self.writer.pending):
            documents = ray.put(list(table.values()))
            refs.append(task.remote(str(self.folder), number, self.settings, documents))
        parts = [ShardInfo(**found) for found in ray.get(refs)]
        # What attempts lost with their worker left behind.
        for left in self.folder.glob(".shard-*"):
            shutil.rmtree(left, ignore_errors=True)
        manifest = Manifest(shards=self.writer.shards, parts=parts)
        write_manifest(self.folder, manifest)
        return manifest


def write_shard(folder: str, number: int, settings: Settings, documents: list[tuple[int, dict[str, Any]]]) -> dict:
    """One shard of a sharded generation (run as a Ray task): analysed and
    written in a folder of its own, renamed into place once committed."""
    from indexer.merging import commit as commit_merging
    from indexer.writer import open_writer

    final = Path(folder) / shard_name(number)
    work = Path(folder) / f".{shard_name(number)}.{uuid.uuid4().hex}"
    work.mkdir()
    try:
        ix = whoosh_index.create_in(work, build_schema(settings.segmentation, sharded=True))
        writer = open_writer(ix, settings.replace(index_procs=1), fresh=False)
        for order, fields in documents:
            writer.add_document(**fields, **{ORDER_FIELD: order})
        commit_merging(writer)
        ix = whoosh_index.open_dir(work)
        with ix.reader() as reader:
            info = {
                "name": shard_name(number),
                "documents": reader.doc_count(),
                "doc_count_all": reader.doc_count_all(),
                "field_lengths": {n: reader.field_length(n) for n, f in reader.schema.items() if f.scorable},
                "toc": ix.latest_generation(),
            }
        ix.close()
        if final.exists():  # an earlier attempt of this task got this far
            shutil.rmtree(final)
        os.replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info
