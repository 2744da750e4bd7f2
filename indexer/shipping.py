"""Shard folders copied between the machines of a Ray cluster, for
machines that do not share the index folder.

A sharded generation lives in the index folder of the machine that runs
the command (``search index``, ``search serve``). Where every machine of
the cluster sees that folder at the same path (one machine, or a shared
file system), shard tasks and shard actors work in it. Elsewhere, and on
every machine when a local shard folder is configured (``shard_cache``:
say, a fast local disk in front of a network one), a shard task writes its
shard there and the command copies it into the generation; a shard actor
copies the shard it serves there from the command's machine. Both copy
with ``fetch_folder``: a folder of one node, each file streamed in small
parts by a generator task pinned to that node, written beside the
destination and renamed into place, so a copy is complete or absent. A
generation's files never change once its manifest is written, so a copy
that is there is the one wanted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: Bytes of a file sent as one object: under the 100 KB up to which Ray
#: hands an object over in its reply instead of through the shared object
#: store. Through the store, the pages of every part a copy received stayed
#: counted in the receiving process: a 4-shard build of 200,000 articles
#: peaked at 1,116 MB in the command against 803 MB in place; in small
#: parts, copying its 690 MB of shards added 20-40 MB.
PART_BYTES = 96 << 10
#: Parts a file's sender may be ahead of the copy.
PARTS_AHEAD = 16
#: Where a machine that does not see the index folder keeps its shards
#: when no ``shard_cache`` is configured.
DEFAULT_LOCAL_ROOT = Path(tempfile.gettempdir()) / "zhsearch-shards"


def local_root(shard_cache: str | None) -> Path:
    """This machine's folder for shards: the configured one, or the default."""
    return Path(shard_cache) if shard_cache else DEFAULT_LOCAL_ROOT


def files_of(folder: str) -> list[tuple[str, int, int]]:
    """The files under ``folder``: (path relative to it, size, modification
    time in nanoseconds)."""
    root = Path(folder)
    listing = []
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            listing.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return sorted(listing)


def _same_file(earlier: list[Path], name: str, size: int, mtime_ns: int) -> Path | None:
    """A file of an earlier copy that is the one listed (same name, size
    and modification time, which a copy keeps): a segment file never
    changes once written, and a later generation's shard holds the
    earlier one's files as they were (hard links)."""
    for folder in earlier:
        try:
            stat = (folder / name).stat()
        except OSError:
            continue
        if stat.st_size == size and stat.st_mtime_ns == mtime_ns:
            return folder / name
    return None


def file_parts(path: str) -> Iterator[bytes]:
    """The file, ``PART_BYTES`` at a time (a Ray generator task)."""
    with open(path, "rb") as f:
        while part := f.read(PART_BYTES):
            yield part


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


def fetch_folder(ray: Any, node: str, folder: str, destination: Path, earlier: Iterable[Path] = ()) -> Path:
    """Copy ``folder`` of Ray node ``node`` to ``destination`` here, whole
    or not at all; ``destination``. One already there is kept (another
    replica on this machine copied it first). Files that ``earlier``
    copies here hold unchanged are linked from them instead of sent (a
    later crawl adds a segment or two to a shard)."""
    if destination.is_dir():
        return destination
    earlier = [e for e in earlier if e.is_dir()]
    listing = ray.get(on_node(ray, node, files_of, retries=2).remote(folder))
    sender = on_node(ray, node, file_parts, retries=2).options(_generator_backpressure_num_objects=PARTS_AHEAD)
    work = destination.parent / f".{destination.name}.{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    try:
        for name, size, mtime_ns in listing:
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            same = _same_file(earlier, name, size, mtime_ns)
            if same is not None:
                os.link(same, target)
                continue
            with open(target, "wb") as out:
                for ref in sender.remote(os.path.join(folder, name)):
                    out.write(ray.get(ref))
            # The source's time, for a later copy to compare.
            os.utime(target, ns=(mtime_ns, mtime_ns))
        if sum(entry[1] for entry in listing) != sum(p.stat().st_size for p in work.rglob("*") if p.is_file()):
            raise OSError(f"copy of {folder} from node {node} is incomplete")
        try:
            os.rename(work, destination)
        except OSError:
            if not destination.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return destination


def index_key(index: Path) -> str:
    """An index across the cluster: a hash of its folder's path on the
    machine of the commands."""
    return hashlib.sha1(str(Path(index).resolve()).encode("utf-8")).hexdigest()[:16]


def local_folder(root: str | Path, index: Path, generation: str, name: str) -> Path:
    """Where a machine keeps its copy of shard ``name`` of ``generation``
    of the index in folder ``index`` (the copies of several indexes share
    a root)."""
    return Path(root) / index_key(index) / generation / name


def prune_generations(index_root: Path, keep: str) -> None:
    """Drop this machine's copies of an index's generations older than
    ``keep`` (the one just copied) and the one before it: the replaced
    generation is served for a minute after a newer one is."""
    if not index_root.is_dir():
        return
    older = sorted(e for e in index_root.iterdir() if e.is_dir() and e.name.startswith("gen-") and e.name < keep)
    for entry in older[:-1]:
        shutil.rmtree(entry, ignore_errors=True)
