"""What a small batch costs on a large index: in a process of its own, and as
one run of a long-lived ``search index --watch``.

Builds an index of --corpus once (or copies --base), then over --trials rounds copies it and
indexes --batch into the copy (a) with ``search index`` in a new process
(start-up and dictionary included, as a cron job pays them) and (b) as one
run of ``search index --watch`` that has run before (a one-record run first),
and prints the wall time and CPU of each: medians and minimums. --code DIR
runs (a) with the code of another checkout (its --watch is skipped unless
it has one), to compare two versions on the same index and batch.
--profile FILE writes a cProfile of one run, in this process, after a
warm-up run (what a run spends its time on, start-up aside).

    python -m benchmarks.small_batch --corpus ../shared/corpora/poetry-20k.jsonl --batch batch.jsonl \\
        [--trials 10] [--code DIR] [--profile FILE] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _search(code: Path | None) -> tuple[list[str], dict[str, str], Path]:
    """The command line, environment and working folder of ``search`` from ``code``."""
    where = code or ROOT
    env = {**os.environ, "PYTHONPATH": str(where)}
    return [sys.executable, "-m", "cli"], env, where


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_process(base: Path, batch: Path, work: Path, code: Path | None) -> tuple[float, float]:
    index = work / "process"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(base, index)
    command, env, cwd = _search(code)
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run(
        [*command, "--index", str(index), "index", str(batch)], env=env, cwd=cwd, check=True, capture_output=True
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def one_watch_run(base: Path, batch: Path, warm: Path, work: Path) -> tuple[float, float]:
    index, folder = work / "watched", work / "drop"
    shutil.rmtree(index, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, index)
    folder.mkdir()
    command, env, cwd = _search(None)
    proc = subprocess.Popen(
        [*command, "--index", str(index), "index", "--watch", str(folder), "--poll", "0.2", "--json"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        proc.stdout.readline()  # watching
        shutil.copy(warm, folder / "warm.jsonl")
        proc.stdout.readline()
        cpu = _process_cpu(proc.pid)
        shutil.copy(batch, folder / "batch.jsonl.part")
        (folder / "batch.jsonl.part").rename(folder / "batch.jsonl")
        run = json.loads(proc.stdout.readline())
        return run["seconds"], _process_cpu(proc.pid) - cpu
    finally:
        proc.terminate()
        proc.wait()


def _figures(rows: list[tuple[float, float]]) -> dict:
    wall, cpu = [r[0] for r in rows], [r[1] for r in rows]
    return {
        "wall_median": round(statistics.median(wall), 2),
        "wall_min": round(min(wall), 2),
        "cpu_median": round(statistics.median(cpu), 2),
        "cpu_min": round(min(cpu), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="JSON Lines corpus of the large index")
    parser.add_argument("--base", type=Path, help="an index to copy instead of building one from --corpus")
    parser.add_argument("--batch", type=Path, required=True, help="the small batch")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--code", type=Path, default=None, help="another checkout to run the process trials with")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of one in-process run here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.corpus or args.base):
        parser.error("give --corpus (or --base)")
    with tempfile.TemporaryDirectory(prefix="zhsearch-batch-") as tmp:
        work = Path(tmp)
        base = work / "base"
        command, env, cwd = _search(args.code)
        if args.base:
            shutil.copytree(args.base, base)
        else:
            build = [*command, "--index", str(base), "index", str(args.corpus)]
            subprocess.run(build, env=env, cwd=cwd, check=True, capture_output=True)
        warm = work / "warm.jsonl"
        warm.write_text(json.dumps({"id": "warm-up", "title": "预热", "body": "预热一次"}, ensure_ascii=False) + "\n")
        watch = (
            args.code is None
            or "--watch"
            in subprocess.run([*command, "index", "--help"], env=env, cwd=cwd, capture_output=True, text=True).stdout
        )
        process_rows, watch_rows = [], []
        for _trial in range(args.trials):
            process_rows.append(one_process(base, args.batch, work, args.code))
            if watch:
                watch_rows.append(one_watch_run(base, args.batch, warm, work))
        figures = {"trials": args.trials, "process": _figures(process_rows)}
        if watch_rows:
            figures["watch_run"] = _figures(watch_rows)
        if args.profile:
            _profile(base, args.batch, warm, work, args.profile)
            figures["profile"] = str(args.profile)
    if args.json:
        print(json.dumps(figures))
    else:
        for name in ("process", "watch_run"):
            if name in figures:
                f = figures[name]
                print(
                    f"{name:10s} wall {f['wall_median']:.2f} s (min {f['wall_min']:.2f}), "
                    f"CPU {f['cpu_median']:.2f} s (min {f['cpu_min']:.2f}), over {args.trials} trials"
                )
    return 0


def _profile(base: Path, batch: Path, warm: Path, work: Path, out: Path) -> None:
    from indexer.config import Settings
    from indexer.writer import index_paths

    index = work / "profiled"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(base, index)
    settings = Settings.load({"index": index}, environ={})
    index_paths(settings, [str(warm)])
    profiler = cProfile.Profile()
    profiler.runcall(index_paths, settings, [str(batch)])
    profiler.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
