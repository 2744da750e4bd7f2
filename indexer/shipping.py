"""Shard folders carried between the machines of a Ray cluster through its
object store, for machines that do not share the index folder.

A sharded generation lives in the index folder of the machine that runs
the command (``search index``, ``search serve``). Where every machine of
the cluster sees that folder at the same path (one machine, or a shared
file system), shard tasks and shard actors work in it. Elsewhere, and on
every machine when a local shard folder is configured (``shard_cache``:
say, a fast local disk in front of a network one), a shard task writes its
shard there and the command copies it into the generation; a shard actor
copies the shard it serves there from the command's machine. Both copy
with ``fetch_folder``: a folder of one node, read in parts by tasks pinned
to that node, written beside the destination and renamed into place, so a
copy is complete or absent. A generation's files never change once its
manifest is written, so a copy that is there is the one wanted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections import deque
from pathlib import Path
from typing import Any

#: Bytes of a file sent as one object (a segment may be hundreds of MB).
PART_BYTES = 32 << 20
#: Parts on their way at once.
PARTS_IN_FLIGHT = 4
#: Where a machine that does not see the index folder keeps its shards
#: when no ``shard_cache`` is configured.
DEFAULT_LOCAL_ROOT = Path(tempfile.gettempdir()) / "zhsearch-shards"


def files_of(folder: str) -> list[tuple[str, int]]:
    """The files under ``folder``: (path relative to it, size)."""
    root = Path(folder)
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def read_part(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def remove_copy(folder: str) -> None:
    """A shard task's copy, once the command has its own, and the run's
    folder it was in when that is empty."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(folder))
    except OSError:
        pass  # the run's other shards, still to be copied


def this_node(ray: Any) -> str:
    return ray.get_runtime_context().get_node_id()


def on_node(ray: Any, node: str, function: Any, retries: int = 0) -> Any:
    """``function`` as a Ray task that runs on ``node`` and nowhere else
    (the files it reads are there)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy(node, soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=strategy, max_retries=retries)(function)


def fetch_folder(ray: Any, node: str, folder: str, destination: Path) -> Path:
    """Copy ``folder`` of Ray node ``node`` to ``destination`` here, whole
    or not at all; ``destination``. One already there is kept (another
    replica on this machine copied it first)."""
    if destination.is_dir():
        return destination
    listing = ray.get(on_node(ray, node, files_of, retries=2).remote(folder))
    reader = on_node(ray, node, read_part, retries=2)
    work = destination.parent / f".{destination.name}.{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    try:
        pending: deque[tuple[Path, Any]] = deque()

        def write_oldest() -> None:
            target, ref = pending.popleft()
            with open(target, "ab") as out:
                out.write(ray.get(ref))

        for name, size in listing:
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
            for offset in range(0, size, PART_BYTES):
                # Parts are written in the order they were asked for, so a
                # file's parts are appended in order.
                pending.append((target, reader.remote(os.path.join(folder, name), offset, PART_BYTES)))
                if len(pending) >= PARTS_IN_FLIGHT:
                    write_oldest()
        while pending:
            write_oldest()
        if sum(size for _name, size in listing) != sum(p.stat().st_size for p in work.rglob("*") if p.is_file()):
            raise OSError(f"copy of {folder} from node {node} is incomplete")
        try:
            os.rename(work, destination)
        except OSError:
            if not destination.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return destination


def local_folder(root: str | Path, index: Path, generation: str, name: str) -> Path:
    """Where a machine keeps its copy of shard ``name`` of ``generation``
    of the index in folder ``index`` (the index by a hash of its path: the
    copies of several indexes share a root)."""
    key = hashlib.sha1(str(Path(index).resolve()).encode("utf-8")).hexdigest()[:16]
    return Path(root) / key / generation / name


def prune_generations(index_root: Path, keep: str) -> None:
    """Drop this machine's copies of an index's generations older than
    ``keep`` (the one just copied) and the one before it: the replaced
    generation is served for a minute after a newer one is."""
    if not index_root.is_dir():
        return
    older = sorted(e for e in index_root.iterdir() if e.is_dir() and e.name.startswith("gen-") and e.name < keep)
    for entry in older[:-1]:
        shutil.rmtree(entry, ignore_errors=True)
