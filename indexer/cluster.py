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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: With "0", Ray keeps a local cluster on the loopback address.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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
