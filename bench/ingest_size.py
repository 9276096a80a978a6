"""Indexing time and peak memory against input size: one text file of 1, 10 and 50 MB through the real CLI.

Each size runs `hoidap index FILE` in a fresh data directory as a child process and reports its wall
time, chunk count and peak resident memory (`getrusage(RUSAGE_CHILDREN)` of a wrapper that runs only
that child), then the cost per extra MB between sizes: equal slopes mean time and memory grow linearly.

By default the file repeats one block of 64 distinct paragraphs, so its identical passages are embedded
once each (the indexer's bounded passage cache) and the figures measure everything around the model:
reading, decoding, cleaning, chunking, storing every chunk with its vector, FAISS, BM25. With
`--distinct` every sentence differs and every chunk goes through the model (about 0.1-0.3 s per chunk
on 2 shared cores: 1 MB is ~1,100 chunks), which is the real cost of new text.

    .venv/bin/python bench/ingest_size.py [--sizes 1 10 50] [--distinct]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLACES = ["Hà Nội", "Huế", "Đà Nẵng", "Cần Thơ", "Hải Phòng", "Nha Trang", "Vinh", "Quy Nhơn"]
TOPICS = ["giá lúa", "mưa lớn", "giao thông", "trường học", "bệnh viện", "điện gió", "du lịch", "cảng biển"]

_MEASURE = """
import json, resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    code = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL).returncode
print(json.dumps({"code": code, "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def paragraph(place: str, topic: str, number: int) -> str:
    return (f"Tại {place}, chuyện {topic} được người dân quan tâm trong đợt {number}. Chính quyền {place} cho biết "
            f"sẽ có thêm {number * 7} tỷ đồng cho {topic}; người dân mong kết quả sớm đến trước mùa mưa năm sau.")


def write_input(path: Path, megabytes: int, distinct: bool) -> int:
    rng = random.Random(megabytes)
    block = "\n\n".join(paragraph(p, t, i) for i, (p, t) in enumerate(((p, t) for p in PLACES for t in TOPICS), 1))
    with path.open("w", encoding="utf-8") as handle:
        written, number = 0, 0
        while written < megabytes * 2**20:
            if distinct:
                number += 1
                piece = paragraph(rng.choice(PLACES), rng.choice(TOPICS), number) + "\n\n"
            else:
                piece = block + "\n\n"
            handle.write(piece)
            written += len(piece.encode("utf-8"))
    return path.stat().st_size


def index_once(source: Path, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOIDAP_")}
    env.update(HOIDAP_DATA_DIR=str(work / "data"), HOIDAP_MAX_ARTICLE_MB="64", HOIDAP_ANSWERER="extractive",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    if "HOIDAP_MODELS_DIR" in os.environ:
        env["HOIDAP_MODELS_DIR"] = os.environ["HOIDAP_MODELS_DIR"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(work / "summary.txt"), sys.executable, "-m", "bot.cli",
                           "index", str(source)], capture_output=True, text=True, env=env, cwd=work, check=True)
    seconds = time.perf_counter() - started
    report = json.loads(done.stdout)
    summary = (work / "summary.txt").read_text(encoding="utf-8")
    if report["code"] != 0:
        raise SystemExit(f"hoidap index failed ({report['code']}): {summary}")
    chunks = int(summary.split(" bài, ")[1].split(" ")[0]) if " bài, " in summary else -1
    return {"seconds": seconds, "peak_mb": report["peak_kb"] / 1024, "chunks": chunks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 10, 50])
    parser.add_argument("--distinct", action="store_true", help="every sentence different: every chunk embedded")
    args = parser.parse_args()
    rows = []
    for megabytes in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            source = work / f"tin_{megabytes}mb.txt"
            size = write_input(source, megabytes, args.distinct)
            measured = index_once(source, work)
        rows.append({"mb": size / 2**20, **measured})
        print(f"{size / 2**20:6.1f} MB  {measured['chunks']:7d} chunks  {measured['seconds']:7.1f} s  "
              f"peak RSS {measured['peak_mb']:7.0f} MB", flush=True)
    for before, after in itertools.pairwise(rows):
        extra = after["mb"] - before["mb"]
        print(f"{before['mb']:.0f} -> {after['mb']:.0f} MB: {(after['seconds'] - before['seconds']) / extra:.2f} s and "
              f"{(after['peak_mb'] - before['peak_mb']) / extra:.1f} MB of memory per extra MB")


if __name__ == "__main__":
    main()
