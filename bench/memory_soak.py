"""Memory soak of `hoidap ask --json -`: 1,000 mixed questions through ONE process, its RSS sampled.

The index is built by the real CLI (`hoidap index`) in a temporary data dir from the bundled articles
and the XQuAD-vi corpus. The questions are a seeded shuffle of: the bundled evaluation questions, the
XQuAD-vi questions, both again without diacritics, the English XQuAD questions, unanswerable ones, and
hostile ones (very long, emoji, HTML fragments, one over the batch line limit, blank lines). They are
fed one line at a time and each JSON line is read before the next question goes in, so the child's RSS
(psutil) can be sampled at exact points: after a warm-up of --warm-up questions and every --every
questions after it.

    .venv/bin/python bench/memory_soak.py                    # 1,000 questions, extractive answerer
    .venv/bin/python bench/memory_soak.py --questions 300 --seed 7

Prints the RSS series, the growth from the warm-up to the end, and answers/s. Exit status 1 if the
RSS grew by more than --max-growth percent, or if a question got no line or a line out of order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bot.settings import BUNDLED_CORPUS  # noqa: E402
from index.text import fold_diacritics  # noqa: E402

XQUAD = REPO / "eval" / "xquad_vi"
BUNDLED_QUESTIONS = REPO / "eval" / "bundled" / "questions.jsonl"
ENGLISH_QUESTIONS = REPO / "bench" / "xquad_en_questions.tsv"
HOIDAP = [sys.executable, "-m", "bot.cli"]

UNANSWERABLE = [
    "Giá vàng SJC hôm nay là bao nhiêu?", "Ai vô địch World Cup 2022?", "Lãi suất tiết kiệm ngân hàng tháng này?",
    "Thời tiết Đà Lạt cuối tuần này thế nào?", "Công thức nấu phở bò ngon nhất là gì?",
    "Tỷ giá đô la Mỹ hôm nay?", "Who won the 2024 Nobel Prize in Physics?", "Bao giờ có iPhone mới?",
    "Giá xăng RON 95 kỳ điều chỉnh tới?", "Lịch thi đấu V-League vòng sau?",
]
EMOJI = ["🇻🇳", "🤔", "❓", "😀😀😀", "🔥", "👍🏽", "🧧", "👨‍👩‍👧", "⭐"]
HTML = ["<b>{q}</b>", "<script>alert('{q}')</script>", "{q} </a>", "<a href=\"javascript:x\">{q}", "&lt;{q}&gt; &amp;",
        "<div><p>{q}</p></div>", "{q} <br> <img src=x onerror=alert(1)>"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def real_questions() -> list[str]:
    """Every question of the bundled and XQuAD-vi sets, the same without diacritics, and the English ones."""
    vietnamese = [row["question"] for path in (BUNDLED_QUESTIONS, XQUAD / "questions.jsonl")
                  for row in read_jsonl(path) if row.get("question")]
    english = [line.split("\t", 1)[1] for line in ENGLISH_QUESTIONS.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#") and "\t" in line]
    return vietnamese + [fold_diacritics(q) for q in vietnamese] + english


def hostile_questions(base: list[str], rng: random.Random, count: int) -> list[str]:
    """Long, emoji-laden and HTML-wrapped variants of real questions; a few blank and over-long lines."""
    made = ["", "   ", "x" * 10_001]
    while len(made) < count:
        question = rng.choice(base)
        kind = rng.randrange(3)
        if kind == 0:
            made.append(" ".join([question] * rng.randint(10, 60)))  # 1,000 to 6,000 characters
        elif kind == 1:
            made.append(" ".join(rng.choice(EMOJI) + word for word in question.split()) + rng.choice(EMOJI) * 5)
        else:
            made.append(rng.choice(HTML).format(q=question))
    return made


def mixed_questions(n: int, seed: int) -> list[str]:
    """`n` questions, a seeded shuffle of every kind; the pool repeats if `n` is larger than it."""
    rng = random.Random(seed)
    base = real_questions()
    pool = base + UNANSWERABLE * 4 + hostile_questions(base, rng, 120)
    pool = [" ".join(q.splitlines()) for q in pool]  # one question, one line
    rng.shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)]


def build_index(data_dir: Path, env: dict[str, str]) -> None:
    """The real `hoidap index` over the bundled articles and the XQuAD-vi corpus."""
    started = time.monotonic()
    done = subprocess.run([*HOIDAP, "index", str(BUNDLED_CORPUS), str(XQUAD / "corpus.jsonl")], env=env,
                          capture_output=True, text=True, cwd=data_dir.parent)
    if done.returncode:
        raise SystemExit(f"hoidap index failed:\n{done.stderr[-3000:]}")
    print(f"{done.stdout.strip()} ({time.monotonic() - started:.0f} s)", flush=True)


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--warm-up", type=int, default=100, help="questions before the baseline sample")
    parser.add_argument("--every", type=int, default=100, help="questions between samples")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--answerer", default="extractive")
    parser.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth after warm-up, in %%")
    args = parser.parse_args()

    questions = mixed_questions(args.questions, args.seed)
    with tempfile.TemporaryDirectory(prefix="hoidap-soak-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOIDAP_") or k == "HOIDAP_MODELS_DIR"}
        env.update(HOIDAP_DATA_DIR=str(data_dir), HOIDAP_ANSWERER=args.answerer, PYTHONIOENCODING="utf-8", COLUMNS="200")
        build_index(data_dir, env)
        with (Path(tmp) / "stderr.txt").open("w+", encoding="utf-8") as stderr:
            child = subprocess.Popen([*HOIDAP, "ask", "--json", "-"], env=env, cwd=tmp, text=True,
                                     encoding="utf-8", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
            process = psutil.Process(child.pid)
            series: list[tuple[int, float]] = [(0, rss_mb(process))]
            kinds = {"answered": 0, "not found": 0, "error": 0}
            out_of_order = 0
            first_answered = 0.0
            assert child.stdin is not None and child.stdout is not None
            for number, question in enumerate(questions, start=1):
                child.stdin.write(question + "\n")
                child.stdin.flush()
                line = child.stdout.readline()
                if not line:
                    stderr.seek(0)
                    raise SystemExit(f"hoidap ask stopped at question {number}:\n{stderr.read()[-3000:]}")
                reply = json.loads(line)
                out_of_order += reply["line"] != number
                kinds["error" if "error" in reply else "answered" if reply["found"] else "not found"] += 1
                if number == 1:  # the model and the index are loaded: from here on it is answering alone
                    first_answered = time.monotonic()
                if (number >= args.warm_up and (number - args.warm_up) % args.every == 0) or number == len(questions):
                    series.append((number, rss_mb(process)))
            elapsed = time.monotonic() - first_answered
            child.stdin.close()
            child.wait(60)

    baseline = next(rss for n, rss in series if n >= args.warm_up)
    growth = 100 * (series[-1][1] - baseline) / baseline
    print(f"{len(questions)} questions through one `hoidap ask --json -` ({args.answerer}); "
          f"answered {kinds['answered']}, not found {kinds['not found']}, error lines {kinds['error']}, "
          f"out of order {out_of_order}")
    print("RSS (MB) after question: " + "  ".join(f"{n or 'start'}: {rss:.0f}" for n, rss in series))
    print(f"growth from question {args.warm_up} to {series[-1][0]}: {growth:+.1f} % (limit {args.max_growth:.0f} %)")
    print(f"{(len(questions) - 1) / elapsed:.1f} answers/s after the first ({elapsed:.0f} s)")
    return 1 if growth > args.max_growth or out_of_order or child.returncode not in (0, 1) else 0


if __name__ == "__main__":
    sys.exit(main())
