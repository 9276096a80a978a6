"""Crash safety of `hoidap index`: SIGKILL it at random moments on a growing corpus and check what is left.

Each trial changes the corpus (adds a few XQuAD-vi articles, sometimes edits or removes one), starts
the real CLI (`hoidap index`, or `hoidap index --rebuild` in about one trial in five) and kills it with
SIGKILL. Six kills in ten come after a seeded random delay spread over the whole length of a run of
that kind (measured on unkilled runs), so they land in start-up, embedding and writing; the others
come the moment the new vectors file appears (manifest, fsync, rename, swap follow) or the moment the
link names the new generation (the BM25 index is being saved), windows too short to hit by chance. Then:

- the index opens and `check_index` (IndexStore.verify and the saved BM25 index) finds no problem;
- it holds exactly the articles of the corpus before the trial's changes or after them, never a mix;
- `hoidap ask --json` on a known question answers it (found, with "74.127");
- an unkilled `hoidap index` exits 0 and leaves exactly the corpus's articles and no *.building folder.

    .venv/bin/python bench/crash_safety.py [--trials 30] [--seed 7] [--workdir DIR]

Uses the real embedding model (HOIDAP_MODELS_DIR or the default cache); prints one line per trial and
`trials N, failures F`; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.settings import BUNDLED_CORPUS, Settings
from bot.wiring import check_index
from index.errors import HoidapError
from index.loading import load_documents
from index.store import IndexStore

REPO = Path(__file__).resolve().parent.parent
EXTRA_ARTICLES = REPO / "eval" / "xquad_vi" / "corpus.jsonl"
QUESTION = "Tổng số đảng viên của Đảng bộ Khối các cơ quan tỉnh năm 2023 là bao nhiêu?"
EXPECTED = "74.127"


@dataclass
class Workspace:
    """The corpus folder, the data folder and the environment of the CLI runs."""

    corpus: Path
    data_dir: Path
    env: dict[str, str]

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                              env=self.env, cwd=self.data_dir.parent, timeout=900)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "bot.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.data_dir.parent)


def make_workspace(root: Path) -> Workspace:
    corpus, data_dir = root / "corpus", root / "data"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(BUNDLED_CORPUS, corpus)
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOIDAP_")}
    env.update(HOIDAP_DATA_DIR=str(data_dir), HOIDAP_MODELS_DIR=str(Settings(_env_file=None).models_dir),
               HOIDAP_ANSWERER="extractive", PYTHONIOENCODING="utf-8", PYTHONPATH=str(REPO))
    return Workspace(corpus, data_dir, env)


class GrowingCorpus:
    """Adds a few articles per trial as small JSON-lines files; sometimes edits or removes one of them."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder = folder
        self.rng = rng
        self.pending = [json.loads(line) for line in EXTRA_ARTICLES.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.files: list[Path] = []

    def change(self) -> str:
        added = self.pending[:self.rng.randint(2, 6)]
        del self.pending[:len(added)]
        if added:
            path = self.folder / f"extra-{len(self.files):03d}.jsonl"
            path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in added), encoding="utf-8")
            self.files.append(path)
        note = f"+{len(added)}"
        roll = self.rng.random()
        if roll < 0.25 and len(self.files) > 1:
            victim = self.rng.choice(self.files[:-1])
            lines = victim.read_text(encoding="utf-8").splitlines()
            article = json.loads(lines[0])
            article["text"] += f" Bản cập nhật lúc {time.time():.0f}."
            victim.write_text("\n".join([json.dumps(article, ensure_ascii=False), *lines[1:]]) + "\n", encoding="utf-8")
            note += f", edited {article['id']}"
        elif roll < 0.4 and len(self.files) > 1:
            victim = self.rng.choice(self.files[:-1])
            self.files.remove(victim)
            victim.unlink()
            note += f", removed {victim.name}"
        return note

    def article_ids(self) -> set[str]:
        documents, _ = load_documents([self.folder])
        return {doc.doc_id for doc in documents}


def indexed_ids(index_dir: Path) -> set[str]:
    store = IndexStore.open(index_dir)
    try:
        return {article.article_id for article in store.articles()}
    finally:
        store.close()


Event = Callable[[], bool]


def _at_time(workspace: Workspace, before: Path, moment: float) -> Event:
    return lambda: time.monotonic() >= moment


def _at_write(workspace: Workspace, before: Path, moment: float) -> Event:
    """The vectors are written: the manifest, the fsync, the rename and the swap follow within milliseconds.

    Also true once the new generation is complete, so a poll that misses the short window kills just after it.
    """
    def written() -> bool:
        if any(workspace.data_dir.glob("index.*.building/vectors.faiss")):
            return True
        return any(path != before and not path.name.endswith(".building") for path in workspace.data_dir.glob("index.*"))

    return written


def _at_swap(workspace: Workspace, before: Path, moment: float) -> Event:
    """The link names the new generation: the BM25 index is being built and saved into it."""
    return lambda: workspace.index_dir.resolve() != before


# Kills at a random time land mostly in start-up and embedding; the other two aim at the short windows.
TRIGGERS: dict[str, Callable[[Workspace, Path, float], Event]] = {"timer": _at_time, "at-write": _at_write, "at-swap": _at_swap}


def kill_when(process: subprocess.Popen[str], event: Event, deadline: float) -> bool:
    """SIGKILL the process as soon as `event` holds (or at `deadline`); True when it finished first."""
    while process.poll() is None:
        if event() or time.monotonic() >= deadline:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return False
        time.sleep(0.002)
    return True


def where_killed(process_done: bool, before: Path, workspace: Workspace) -> str:
    """Which phase the kill interrupted, read from what it left on disk."""
    if process_done:
        return "after it finished"
    after = workspace.index_dir.resolve()
    if after == before:
        building = list(workspace.data_dir.glob("index.*.building"))
        return "embedding or writing the new generation" if building else "in start-up, before any folder"
    return "after the swap, BM25 saved" if (after / "lexical").is_dir() else "after the swap, before the BM25 save"


def problems_after_kill(workspace: Workspace, expected: tuple[set[str], set[str]]) -> list[str]:
    """What is wrong with the index a killed run left, as found by a reader and a user."""
    try:
        described, problems = check_index(workspace.index_dir)
        held = indexed_ids(workspace.index_dir)
    except HoidapError as error:
        return [f"index does not open: {error}"]
    if held not in expected:
        problems.append(f"index holds {len(held)} articles, neither the {len(expected[0])} before nor the "
                        f"{len(expected[1])} after this trial's changes")
    answer = workspace.run("ask", "--json", QUESTION)
    if answer.returncode != 0:
        return [*problems, f"ask exited {answer.returncode}: {answer.stderr.strip()[-300:]}"]
    result = json.loads(answer.stdout)
    if not result["found"] or EXPECTED not in result["answer"]:
        problems.append(f"ask did not answer {EXPECTED}: {result['answer'][:120]!r}")
    return problems


def problems_after_resume(workspace: Workspace, wanted: set[str], args: list[str]) -> tuple[list[str], float]:
    """Run `hoidap index` to completion; what is wrong afterwards, and how long it took."""
    started = time.monotonic()
    finished = workspace.run("index", *args, str(workspace.corpus))
    seconds = time.monotonic() - started
    if finished.returncode != 0:
        return [f"next index exited {finished.returncode}: {finished.stderr.strip()[-300:]}"], seconds
    _, problems = check_index(workspace.index_dir)
    held = indexed_ids(workspace.index_dir)
    if held != wanted:
        problems.append(f"next index holds {len(held)} articles, the corpus has {len(wanted)}")
    leftovers = [p.name for p in workspace.data_dir.glob("index.*.building")]
    if leftovers:
        problems.append(f"building folders left: {leftovers}")
    return problems, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-crash-safety")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workspace = make_workspace(args.workdir)
    corpus = GrowingCorpus(workspace.corpus, rng)
    started = time.monotonic()

    first = workspace.run("index", str(workspace.corpus))
    if first.returncode != 0:
        print(f"initial index failed: {first.stderr}", file=sys.stderr)
        return 1
    # How long an unkilled run of each kind takes: kills are drawn over that whole span (and a bit past it).
    duration: dict[str, float] = {}
    for kind, extra in (("sync", []), ("rebuild", ["--rebuild"])):
        corpus.change()
        problems, duration[kind] = problems_after_resume(workspace, corpus.article_ids(), extra)
        if problems:
            print(f"calibration run ({kind}) failed: {problems}", file=sys.stderr)
            return 1
    print(f"one run takes {duration['sync']:.1f} s (sync), {duration['rebuild']:.1f} s (--rebuild)", flush=True)

    failures = 0
    for trial in range(1, args.trials + 1):
        kind = "rebuild" if rng.random() < 0.2 else "sync"
        extra = ["--rebuild"] if kind == "rebuild" else []
        before_ids, before_target = indexed_ids(workspace.index_dir), workspace.index_dir.resolve()
        change = corpus.change()
        wanted = corpus.article_ids()
        trigger = rng.choices(list(TRIGGERS), weights=[6, 2, 2])[0]
        delay = rng.uniform(0.0, 1.1 * duration[kind])
        started_at = time.monotonic()
        process = workspace.start("index", *extra, str(workspace.corpus))
        done = kill_when(process, TRIGGERS[trigger](workspace, before_target, started_at + delay), started_at + 3 * duration[kind])
        killed_at = time.monotonic() - started_at
        phase = where_killed(done, before_target, workspace)
        problems = problems_after_kill(workspace, (before_ids, wanted))
        resumed, seconds = problems_after_resume(workspace, wanted, extra)
        duration[kind] = seconds  # the corpus grows: keep the kill window as long as a run is now
        problems += resumed
        failures += bool(problems)
        status = "ok" if not problems else "FAIL: " + " | ".join(problems)
        print(f"trial {trial:2d}: {kind:7s} {trigger:9s} killed at {killed_at:5.2f} s ({phase}); corpus {change} -> "
              f"{len(wanted)} articles; {status}", flush=True)

    print(f"trials {args.trials}, failures {failures} ({time.monotonic() - started:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
