"""Damage and unlucky operations: segments cut short under a running
server, a truncated table of contents, a damaged posting block, a missing
CURRENT, and a clean-up while a writer runs. Detected before use, reported
in plain words, never a crash, a traceback or a lost generation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from indexer.config import Settings
from indexer.store import IndexStore
from indexer.writer import export_documents, index_paths

from conftest import SAMPLE, running_server, search_command, write_jsonl


@pytest.fixture(scope="module")
def sample_built(tmp_path_factory) -> Path:
    """The sample articles indexed once for the module."""
    root = tmp_path_factory.mktemp("damage-sample") / "ix"
    index_paths(Settings(index=root), [str(SAMPLE)])
    return root


@pytest.fixture
def index(tmp_path, sample_built) -> Path:
    """A copy of the sample index for this test to damage: copying is far
    cheaper than indexing the articles again."""
    root = tmp_path / "ix"
    shutil.copytree(sample_built, root)
    return root


def _segment(index: Path) -> Path:
    (seg,) = (index / IndexStore(index).current_name()).glob("*.seg")
    return seg


def _run(index: Path, *args: str):
    return CliRunner().invoke(cli, ["--index", str(index), *args])


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_segment_cut_short_under_the_server_is_a_503_and_the_server_stays(index, tmp_path):
    with running_server(index) as (base, proc):
        assert _get(base + "/api/search?q=%E7%89%A9%E6%B5%81")[0] == 200
        seg = _segment(index)
        os.truncate(seg, seg.stat().st_size // 2)
        for _ in range(6):  # each worker, more than once
            status, body = _get(base + "/api/search?q=%E6%B5%B7%E5%A4%96%E4%BB%93")
            assert status == 503 and body["error"]["code"] == "index_damaged", body
        assert proc.poll() is None
        # A rebuild replaces the damaged generation; the same workers serve it.
        crawl = write_jsonl(tmp_path / "again.jsonl", [json.loads(x) for x in SAMPLE.read_text().splitlines() if x])
        index_paths(Settings(index=index), [str(crawl)], rebuild=True)
        status, body = _get(base + "/api/search?q=%E7%89%A9%E6%B5%81")
        assert status == 200 and body["total"] > 0


def test_a_server_started_on_a_damaged_index_answers_503(index):
    seg = _segment(index)
    os.truncate(seg, seg.stat().st_size - 100)
    with running_server(index) as (base, proc):
        status, body = _get(base + "/api/search?q=%E7%89%A9%E6%B5%81")
        assert status == 503 and "header says" in body["error"]["message"]
        assert proc.poll() is None
    result = _run(index, "query", "物流")
    assert result.exit_code == 1 and "header says" in result.output and "Traceback" not in result.output


def test_a_truncated_table_of_contents_is_reported(index):
    (toc,) = (index / IndexStore(index).current_name()).glob("_MAIN_*.toc")
    os.truncate(toc, toc.stat().st_size // 2)
    result = _run(index, "check")
    assert result.exit_code == 1 and "cannot be read" in result.output, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    result = _run(index, "query", "物流")
    assert result.exit_code == 1 and "cannot be read" in result.output


def test_check_reads_every_posting_list(index):
    seg = _segment(index)
    data = seg.read_bytes()
    assert data.count(b"W3Bl") > 0
    seg.write_bytes(data.replace(b"W3Bl", b"XXXX"))
    result = _run(index, "check")
    assert result.exit_code == 1, result.output
    assert "DAMAGE: segment 1: the postings of" in result.output and "Block tag error" in result.output
    result = _run(index, "query", "物流")
    assert result.exit_code == 1 and "cannot be read (Block tag error" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_a_missing_current_is_repaired_never_replaced(index, tmp_path):
    live = IndexStore(index).current_name()
    (index / "CURRENT").unlink()
    result = _run(index, "check")
    assert result.exit_code == 1 and "CURRENT is missing" in result.output
    one = write_jsonl(tmp_path / "one.jsonl", [{"id": "new", "title": "新文章 物流"}])
    result = _run(index, "index", str(one))
    assert result.exit_code == 0, result.output
    assert f"CURRENT was missing: {live}" in result.output
    assert len(list(export_documents(Settings(index=index)))) == 61
    # And the next rebuild keeps the generation it replaces.
    result = _run(index, "index", "--rebuild", str(SAMPLE))
    assert result.exit_code == 0 and live in IndexStore(index).generations()


def test_check_clean_waits_for_the_writer_lock(index):
    store = IndexStore(index)
    unfinished = index / "gen-000009"
    unfinished.mkdir()
    (unfinished / "MAIN_x.seg").write_bytes(b"being written")
    held = threading.Event()
    release = threading.Event()

    def writer():
        with store.write_lock(10):
            held.set()
            release.wait(20)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        held.wait(10)
        env = {**os.environ, "ZHSEARCH_INDEX": str(index), "ZHSEARCH_LOCK_TIMEOUT": "1"}
        proc = subprocess.run([*search_command(), "check", "--clean"], capture_output=True, text=True, env=env)
        assert proc.returncode == 1 and "another process is writing" in proc.stderr, proc.stderr
        assert unfinished.exists()
    finally:
        release.set()
        thread.join()
    result = _run(index, "check", "--clean")
    assert result.exit_code == 0 and "gen-000009 (removed)" in result.output
    assert not unfinished.exists()
