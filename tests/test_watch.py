"""`search index --watch DIR`: a real process indexing the files dropped
into a folder, stopped by signals, restarted without reading again what
it has read."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from indexer.check import check_index
from indexer.config import Settings
from indexer.store import IndexStore
from search.engine import SearchEngine, SearchRequest

from conftest import search_command, write_jsonl

BODY = "卖家在旺季前调整备货节奏，关注海外仓库存周转、尾程配送时效与支付合规。"


def record(i: int, body: str = BODY) -> dict:
    return {"id": f"w{i}", "title": f"观察第{i}期", "body": f"编号 k{i}q。{body}"}


class Watching:
    """``search index --watch`` in a process of its own, its output lines
    read as they come."""

    def __init__(self, index: Path, folder: Path, *options: str) -> None:
        env = {**os.environ, "ZHSEARCH_INDEX": str(index)}
        self.proc = subprocess.Popen(
            [*search_command(), "index", "--watch", str(folder), "--poll", "0.2", *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _read(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def line(self, timeout: float = 30) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output within {timeout} s; stderr: {self.errors}")

    def json(self, timeout: float = 30) -> dict:
        return json.loads(self.line(timeout))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def said(self, text: str, timeout: float = 30) -> None:
        """Wait for a line of standard error holding ``text``."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.errors):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"never said {text!r}: {self.errors}")
            time.sleep(0.05)

    def quiet_for(self, seconds: float) -> bool:
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected output: {line}")


def drop(folder: Path, name: str, records) -> Path:
    """Write a file as a crawler hands it over: under a .part name, renamed when complete."""
    part = write_jsonl(folder / f"{name}.part", records)
    return part.rename(folder / name)


def _ids(engine: SearchEngine, q: str) -> list[str]:
    return [h.id for h in engine.search(SearchRequest(q=q, size=50)).hits]


def test_watch_indexes_dropped_files_stops_on_signals_and_remembers(tmp_path):
    index, folder = tmp_path / "ix", tmp_path / "crawl"
    folder.mkdir()
    watching = Watching(index, folder, "--json")
    try:
        assert watching.json() == {"watching": str(folder), "index": str(index), "indexed_before": 0}
        drop(folder, "a.jsonl", [record(i) for i in range(20)])
        run = watching.json()
        assert (run["watched"], run["added"], run["documents"]) == (["a.jsonl"], 20, 20)
        engine = SearchEngine(Settings(index=index))
        assert _ids(engine, "k7q") == ["w7"]
        # Unfinished and hidden files are left alone; a bad record is
        # reported with its file and line, and the rest is indexed.
        write_jsonl(folder / "c.jsonl.part", [record(100)])
        write_jsonl(folder / ".d.jsonl", [record(101)])
        drop(folder, "b.jsonl", [record(20), "{not json", record(21)])
        run = watching.json()
        assert (run["watched"], run["added"], run["documents"]) == (["b.jsonl"], 2, 22)
        assert [r["location"] for r in run["rejected"]] == [f"{folder / 'b.jsonl'}:2"]
        query = subprocess.run(
            [*search_command(), "--index", str(index), "query", "k21q", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert [hit["id"] for hit in json.loads(query.stdout)["results"]] == ["w21"]
        # A stop while a run reads: nothing of it is committed.
        drop(folder, "big.jsonl", [record(i, BODY * 30) for i in range(1_000, 3_000)])
        generation = index / IndexStore(index).current_name()
        deadline = time.monotonic() + 30
        while not (generation / "MAIN.tmp").exists():  # the run's writer is open
            assert time.monotonic() < deadline and watching.proc.poll() is None
            time.sleep(0.02)
        assert watching.stop(signal.SIGTERM) == 0
    finally:
        if watching.proc.poll() is None:
            watching.proc.kill()
    assert watching.quiet_for(0.1)
    assert any("stopped during a run" in e for e in watching.errors), watching.errors
    report = check_index(index)
    assert report.ok and report.documents == 22 and not report.leftovers, report
    (folder / "big.jsonl").unlink()

    # Restarted: what was read is not read again; a changed file is.
    watching = Watching(index, folder)
    try:
        watching.said("2 file(s) indexed before, not read again")
        assert watching.quiet_for(2.0)  # time enough to settle and read them, were they read again
        with open(folder / "a.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record(22), ensure_ascii=False) + "\n")
        line = watching.line()
        assert line.startswith(f"{folder}: a.jsonl: 1 added, 0 updated, 20 unchanged"), line
        assert watching.stop(signal.SIGINT) == 0
    finally:
        if watching.proc.poll() is None:
            watching.proc.kill()
    assert "stopped" in watching.errors
    assert _ids(SearchEngine(Settings(index=index)), "k22q") == ["w22"]
