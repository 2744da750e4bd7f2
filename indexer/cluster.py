"""Ray, for sharded indexes: joining a cluster, or starting one on this
machine for the length of a command.

Ray is an optional extra (``pip install 'zhsearch[cluster]'``); a plain
index never imports it. An embedded cluster listens on 127.0.0.1 only:
Ray resolves a loopback address to the machine's own address unless told
that this is not a multi-machine cluster, so the variable that tells it so
is set before Ray is first imported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: With "0", Ray keeps a local cluster on the loopback address.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: The Ray namespace of what zhsearch names in a cluster (the shard actors,
#: the writer locks), so that every process of the cluster finds it.
ACTOR_NAMESPACE = "zhsearch"
#: Seconds between two tries at a writer lock another command holds.
LOCK_POLL = 0.5


class ClusterUnavailable(Exception):
    """Ray is not installed, or the cluster cannot be reached."""

    code = "cluster_unavailable"


def _is_loopback(address: str | None) -> bool:
    if not address:
        return True
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1")


def import_ray(address: str | None = None) -> Any:
    """The ``ray`` module, imported so that a cluster on this machine
    stays on the loopback address; ClusterUnavailable without it."""
    if _is_loopback(address):
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable("a sharded index needs Ray: install it with pip install 'zhsearch[cluster]'") from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected: to the cluster at ``address``, to the one this
    process is already connected to, or to an embedded local one on
    127.0.0.1 that stops when the block ends."""
    ray = import_ray(address)
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _node_ip_address="127.0.0.1",
            )
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {address or 'this machine'}: {err}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class _WriterLock:
    """Holds an index's writer lock on a cluster: the lock is this actor's
    name. An actor goes when the process that made it goes (Ray's fate
    sharing), and this one runs on that process's machine, so neither a
    killed command nor a lost machine leaves a stale lock."""

    def held(self) -> bool:
        return True


@contextmanager
def cluster_write_lock(address: str, key: str, timeout: float, folder: str) -> Iterator[None]:
    """Hold the writer lock of index ``key`` (``indexer.shipping.index_key``)
    on the cluster at ``address``: one writer at a time across the
    cluster's machines, where the index folder's own lock (flock) only
    keeps out the writers of the machine that takes it. ``folder``: the
    index, for the message of the ``IndexBusy`` raised when the lock stays
    taken for ``timeout`` seconds."""
    from indexer.store import IndexBusy  # (the store's module imports this one)

    with ray_session(address) as ray:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        holder = ray.remote(num_cpus=0, scheduling_strategy=here)(_WriterLock).options(
            name=f"writer:{key}", namespace=ACTOR_NAMESPACE
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                lock = holder.remote()  # a name that is taken raises at once
                break
            except ValueError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"another command on the Ray cluster at {address} is writing to {folder} "
                        f"and did not finish within {timeout:.0f} s"
                    ) from None
                time.sleep(LOCK_POLL)
        try:
            ray.get(lock.held.remote())
            yield
        finally:
            ray.kill(lock)
