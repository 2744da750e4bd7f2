"""Verifying an index: what `search check` runs.

Opens the live generation and every segment in it, checks each segment
file's size against its header, reads every live document's stored fields
and id, looks each id up in the inverted index, and reads every posting
list of every term. Anything that fails is damage, named by where it is.
Files that no table of contents refers to (left by an interrupted run) and
generations that are neither live nor the one kept after a rebuild are
leftovers: reported, and removed with ``clean=True`` (under the writer
lock, so never a running writer's files), but not damage. ``clean=True``
also makes the newest complete generation live again when ``CURRENT`` is
missing.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index

from indexer.known import known_file
from indexer.merging import retired_file, retired_segments
from indexer.shards import KNOWN_FILE, MANIFEST, RUN_FILE, is_sharded, read_manifest, shard_info, shard_of
from indexer.store import (
    CURRENT,
    LOCK_FILE,
    WATCH_STATE_PREFIX,
    WATCH_STATE_SUFFIX,
    IndexDamaged,
    IndexMissing,
    IndexStore,
    segment_files,
)

_TOC_RE = re.compile(r"^_MAIN_(\d+)\.toc$")


@dataclass
class CheckReport:
    index: str
    generation: str | None = None
    segments: int = 0
    documents: int = 0
    deleted: int = 0
    terms: int = 0
    damage: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    repaired: str | None = None

    @property
    def ok(self) -> bool:
        return not self.damage

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def check_index(
    root: str | os.PathLike[str], clean: bool = False, lock_timeout: float = 60, cluster: str | None = None
) -> CheckReport:
    """``clean``: remove what no generation uses, holding the writer lock
    (of ``cluster`` too: see ``IndexStore.write_lock``) so that nothing a
    writer is still making goes."""
    store = IndexStore(root)
    if not clean:
        return _check(store)
    with store.write_lock(lock_timeout, cluster):
        repaired = store.repair_current() if store.current_name() is None and store.generations() else None
        report = _check(store)
        report.repaired = repaired
        for name in report.leftovers:
            target = store.root / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            report.removed.append(name)
    return report


def _check(store: IndexStore) -> CheckReport:
    report = CheckReport(index=str(store.root))
    if store.current_name() is None and store.generations():
        report.damage.append(
            f"{CURRENT} is missing (generations: {', '.join(store.generations())}); "
            f"'search check --clean' or the next 'search index' makes the newest complete one live"
        )
        return report
    try:
        path = store.current_dir()
    except (IndexMissing, IndexDamaged) as err:
        report.damage.append(str(err))
        return report
    report.generation = path.name
    if is_sharded(path):
        _check_shards(path, report)
    else:
        _check_whoosh_index(path, path.name, report)
    report.leftovers.extend(_leftover_generations(store))
    return report


def _check_whoosh_index(path: Path, where: str, report: CheckReport, route: tuple[int, int] | None = None) -> None:
    """One Whoosh index (a generation, or one shard of a sharded one)."""
    try:
        ix = whoosh_index.open_dir(path)
        segment_files(ix)
        _check_segments(ix, report, f"{where}: " if route is not None else "", route)
    except IndexDamaged as err:
        report.damage.append(str(err))
        return
    except Exception as err:  # noqa: BLE001 - any failure to read is what this reports
        report.damage.append(f"cannot read {where}: {type(err).__name__}: {err}")
        return
    found = _leftover_files(path, ix)
    if route is not None:  # named from the index's root; a shard's run mark is its own
        found = [f"{path.parent.name}/{name}" for name in found if name != f"{path.name}/{RUN_FILE}"]
    report.leftovers.extend(found)


def _check_shards(path: Path, report: CheckReport) -> None:
    """Every shard of a sharded generation as one index, and the manifest
    against them: its counts and field-length totals are what queries score
    with, and each document must be in the shard its id routes to."""
    try:
        manifest = read_manifest(path)
    except Exception as err:  # noqa: BLE001 - an unreadable manifest is damage
        report.damage.append(f"cannot read {path.name}/{MANIFEST}: {type(err).__name__}: {err}")
        return
    for number, part in enumerate(manifest.parts):
        where = f"{path.name}/{part.name}"
        found_damage = len(report.damage)
        _check_whoosh_index(path / part.name, where, report, (number, manifest.shards))
        if len(report.damage) > found_damage:
            continue
        actual = shard_info(path / part.name, number)
        listed = asdict(part)
        differs = sorted(k for k in actual if actual[k] != listed.get(k))
        if differs:
            report.damage.append(
                f"{where}: the manifest's {', '.join(differs)} differ from the shard's "
                f"({', '.join(f'{k} {listed.get(k)!r} against {actual[k]!r}' for k in differs)})"
            )
    named = {MANIFEST, KNOWN_FILE} | {part.name for part in manifest.parts}
    report.leftovers.extend(f"{path.name}/{name}" for name in sorted(os.listdir(path)) if name not in named)


def _check_segments(ix, report: CheckReport, where: str = "", route: tuple[int, int] | None = None) -> None:
    """``route``: the shard's number and the shard count, when ``ix`` is a
    shard (each of its documents must route to it)."""
    segments = ix._segments()  # the TOC's list; there is no public accessor
    report.segments += len(segments)
    with ix.searcher() as searcher:
        for number, (reader, offset) in enumerate(searcher.reader().leaf_readers()):
            seg = f"{where}segment {number + 1}"
            ids = reader.column_reader("id")
            for docnum in range(reader.doc_count_all()):
                if reader.is_deleted(docnum):
                    report.deleted += 1
                    continue
                stored = reader.stored_fields(docnum)
                doc_id = stored.get("id")
                column_id = ids[docnum]
                column_id = column_id.decode("utf-8") if isinstance(column_id, bytes) else column_id
                if not doc_id or doc_id != column_id:
                    report.damage.append(
                        f"{seg}: document {docnum + offset} has id {doc_id!r} but column {column_id!r}"
                    )
                    continue
                if ("id", doc_id) not in reader:
                    report.damage.append(f"{seg}: id {doc_id!r} is not in the inverted index")
                    continue
                if route is not None and shard_of(doc_id, route[1]) != route[0]:
                    report.damage.append(f"{seg}: id {doc_id!r} belongs in shard {shard_of(doc_id, route[1])}")
                    continue
                report.documents += 1
            for fieldname in reader.indexed_field_names():
                for term in reader.lexicon(fieldname):
                    report.terms += 1
                    try:
                        for _docnum in reader.postings(fieldname, term).all_ids():
                            pass
                    except Exception as err:  # noqa: BLE001 - a posting list that cannot be read is damage
                        shown = term.decode("utf-8", "replace") if isinstance(term, bytes) else term
                        report.damage.append(
                            f"{seg}: the postings of {fieldname}:{shown!r} cannot be read ({type(err).__name__}: {err})"
                        )


def _leftover_files(path: Path, ix) -> list[str]:
    """Files in the live generation that its newest TOC does not use (the
    segments its commit merged away are kept for searchers until the next
    commit, and its table of the documents is kept beside it: neither is a
    leftover)."""
    used = set()
    tocs = sorted((int(m[1]), name) for name in os.listdir(path) if (m := _TOC_RE.match(name)))
    segids = {seg.segment_id() for seg in ix._segments()}
    if tocs:
        generation, toc = tocs[-1]
        used.add(toc)
        used.add(retired_file(ix.indexname, generation))
        used.add(known_file(ix.indexname, generation))
        segids |= retired_segments(path, ix.indexname, generation)
    used.update(name for name in os.listdir(path) if name.split(".", 1)[0] in segids)
    used.add(f"{ix.indexname}_WRITELOCK")
    return [f"{path.name}/{name}" for name in sorted(os.listdir(path)) if name not in used]


def _leftover_generations(store: IndexStore) -> list[str]:
    """Generations that are not live: one is kept after a rebuild (the
    newest of them); older ones, and unfinished ones, are leftovers."""
    live = store.current_name()
    others = [g for g in store.generations() if g != live]
    leftovers = []
    for name in others:
        path = store.root / name
        if not (whoosh_index.exists_in(path) or is_sharded(path)) or live is None or name > live:
            leftovers.append(name)  # unfinished rebuild
    finished_older = [g for g in others if g not in leftovers]
    leftovers.extend(finished_older[:-1])
    extra = {p.name for p in store.root.iterdir() if p.is_file() and not _is_watch_state(p.name)} - {CURRENT, LOCK_FILE}
    leftovers.extend(sorted(extra))
    return leftovers


def _is_watch_state(name: str) -> bool:
    """The files ``index --watch`` remembers a folder's indexed files in."""
    return name.startswith(WATCH_STATE_PREFIX) and name.endswith(WATCH_STATE_SUFFIX)
