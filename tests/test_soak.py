"""A short soak: clients searching a real `search serve` while batches are
indexed and a rebuild runs (benchmarks/soak.py; the long run is manual)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _soak_module():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_soak_serves_through_reindexing_and_loses_nothing():
    figures = _soak_module().main(["--clients", "6", "--seconds", "8", "--docs", "300", "--batch", "20", "--json"])
    assert figures["requests"] > 100, figures
    assert figures["batches"] >= 2 and figures["rebuild_seconds"] is not None, figures
    assert figures["errors"] == 0, figures["first_errors"]
    assert (figures["lost"], figures["stale"], figures["not_deleted"]) == (0, 0, 0), figures
