"""Resident memory after loading the index and the model, and cold start to the first answer (extractive).

- **Cold start**: wall time and peak RSS of `hoidap ask --json --answerer extractive QUESTION` as a fresh
  process, from spawn to exit (imports, settings, model load, index load, retrieval, answer, JSON), each
  run next to a bare `python -c "import faiss, numpy, onnxruntime, tokenizers"` (the floor: what any
  process using these libraries pays), so that a loaded machine shows in both figures. The first run may
  pay for a cold OS file cache; the median of the following runs is the usual figure.
- **Memory**: a fresh process builds the components exactly as the CLI does (`build_components`),
  answers one question (so the model and every lazy structure are loaded), then reads its RSS and
  peak RSS (VmHWM) from /proc.

Both run on the bundled articles (indexed into a private data folder under the work dir, so the
user's own index is never touched) and on a 100k-chunk synthetic index (bench/synthetic.py).

    .venv/bin/python bench/memory_coldstart.py [--runs 4] [--sizes 100000] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
HOIDAP = Path(sys.executable).parent / "hoidap"
QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_memory(data_dir: str) -> None:
    """Runs in a fresh process: load like the CLI, answer once, print RSS figures as JSON."""
    os.environ["HOIDAP_DATA_DIR"] = data_dir
    from bot.settings import Settings
    from bot.wiring import build_components

    baseline = status_mb("VmRSS")
    components = build_components(Settings(), answerer="extractive")
    answer = components.answerer.answer(QUESTION)
    print(json.dumps({"rss_mb": status_mb("VmRSS"), "peak_mb": status_mb("VmHWM"), "python_mb": baseline,
                      "found": answer.found, "chunks": components.store.manifest.n_chunks}))


def measure_memory(data_dir: Path) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child-memory", str(data_dir)], check=True,
                            capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


BARE_IMPORTS = [sys.executable, "-c", "import faiss, numpy, onnxruntime, tokenizers"]


# Runs one command and writes its peak RSS (kB) last on stderr: a process with a single child reads that
# child's own peak from RUSAGE_CHILDREN.
_PEAK_WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `command` to its end: (wall seconds, peak RSS in MB, stdout). The wrapper's own start-up is
    timed too, the same for both commands compared."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *command], env=env, capture_output=True,
                               text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {completed.stderr.strip()}")
    peak_kb = float(completed.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, completed.stdout


def cold_starts(data_dir: Path, runs: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]], dict]:
    """Per run: (seconds, peak MB) of `hoidap ask --json` and of the bare imports, alternating."""
    env = {**os.environ, "HOIDAP_DATA_DIR": str(data_dir), "HOIDAP_ANSWERER": "extractive"}
    asks, bare, result = [], [], {}
    for _ in range(runs):
        seconds, peak, stdout = measured([str(HOIDAP), "ask", "--json", QUESTION], env)
        asks.append((seconds, peak))
        result = json.loads(stdout)
        seconds, peak, _ = measured(BARE_IMPORTS, env)
        bare.append((seconds, peak))
    return asks, bare, result


def bundled_data_dir(work: Path) -> Path:
    """A private data folder holding an index of the bundled articles (built once)."""
    data_dir = work / "data-bundled"
    if not (data_dir / "index" / "manifest.json").is_file():
        env = {**os.environ, "HOIDAP_DATA_DIR": str(data_dir)}
        subprocess.run([str(HOIDAP), "index"], env=env, check=True, capture_output=True, cwd=ROOT)
    return data_dir


def synthetic_data_dir(work: Path, n_chunks: int) -> Path:
    """A private data folder whose `index` is the flat synthetic index of `n_chunks` chunks."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic import build_synthetic_index

    from bot.settings import Settings
    from bot.wiring import build_embedder

    dirs = build_synthetic_index(work, n_chunks, build_embedder(Settings(), new_index=True), hnsw=False, report=print)
    data_dir = work / f"data-synthetic-{n_chunks}"
    data_dir.mkdir(parents=True, exist_ok=True)
    link = data_dir / "index"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(dirs["flat"].resolve())
    return data_dir


def report(label: str, data_dir: Path, runs: int) -> None:
    memory = measure_memory(data_dir)
    asks, bare, answer = cold_starts(data_dir, runs)
    print(f"{label}: {memory['chunks']:,} chunks | RSS after load+answer {memory['rss_mb']:,.0f} MB "
          f"(peak {memory['peak_mb']:,.0f} MB; bare interpreter {memory['python_mb']:.0f} MB) | found={answer.get('found')}")
    for name, rows in (("hoidap ask --json", asks), ("bare imports     ", bare)):
        later = rows[1:] or rows
        seconds, peaks = [s for s, _ in later], [m for _, m in later]
        print(f"  {name}: first {rows[0][0]:.2f}s; median of next {len(later)} {statistics.median(seconds):.2f}s "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f}); peak RSS median {statistics.median(peaks):,.0f} MB "
              f"(max {max(peaks):,.0f})", flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child-memory":
        child_memory(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="cold starts per index")
    parser.add_argument("--sizes", default="100000", help="synthetic index sizes besides the bundled articles ('' for none)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench")
    args = parser.parse_args()
    if not HOIDAP.exists():
        raise SystemExit(f"{HOIDAP} not found: install the project first (make install).")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs; question: {QUESTION}")
    report("bundled articles", bundled_data_dir(args.work_dir), args.runs)
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        report(f"synthetic {size:,}", synthetic_data_dir(args.work_dir, size), args.runs)


if __name__ == "__main__":
    main()
