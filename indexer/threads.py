"""OS threads, locks and sleeps as they are without gevent's patches.

A serving worker (gunicorn's gevent worker) patches ``threading``, ``time``
and ``_thread`` so that they act on greenlets. The few places that need a
real OS thread (the worker's background refresher) or must tell OS threads
apart (a mapped file's read position) take the originals from here.
"""

from __future__ import annotations

import _thread
import sys
import threading
from typing import Any


def original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent patched it (if it did)."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched(module):
            return monkey.get_original(module, name)
    return getattr(sys.modules.get(module) or __import__(module), name)


def native_lock() -> threading.Lock:
    """A lock of OS threads (gevent's would not wake a waiting OS thread).
    Hold it only for short sections: a greenlet waiting on it holds its
    whole worker."""
    return original("threading", "Lock")()


#: The calling OS thread's id (greenlets of one thread share it).
original_get_ident = original("_thread", "get_ident") if "gevent" in sys.modules else _thread.get_ident
