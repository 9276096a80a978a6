"""`hoidap eval` through the real CLI: a slice of XQuAD-vi indexed with the real model, then the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOIDAP = Path(sys.executable).parent / "hoidap"
XQUAD = ROOT / "eval" / "xquad_vi"


def _slice(tmp_path: Path) -> tuple[Path, Path]:
    """10 paragraphs, 10 of their questions, and one question they cannot answer."""
    corpus_lines = (XQUAD / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:10]
    ids = {json.loads(line)["id"] for line in corpus_lines}
    question_lines = [line for line in (XQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()
                      if json.loads(line)["passage_id"] in ids][:10]
    question_lines.append(json.dumps({"id": "gold-price", "question": "Giá vàng hôm nay là bao nhiêu?",
                                      "answers": [], "answerable": False, "tags": ["unanswerable"]}, ensure_ascii=False))
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "questions.jsonl"
    corpus.write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    questions.write_text("\n".join(question_lines) + "\n", encoding="utf-8")
    return corpus, questions


def _eval(tmp_path: Path, *args: str, columns: int = 200) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOIDAP_DATA_DIR": str(tmp_path / "data"), "COLUMNS": str(columns)}
    return subprocess.run([str(HOIDAP), "eval", *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_eval_indexes_the_corpus_apart_and_writes_json_markdown_and_plot(tmp_path):
    corpus, questions = _slice(tmp_path)
    out = tmp_path / "reports" / "slice.json"
    run = _eval(tmp_path, "--questions", str(questions), "--corpus", str(corpus), "--answerer", "extractive",
                "--out", str(out))
    assert run.returncode == 0, run.stderr

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["meta"]["answerer"] == "extractive"
    assert report["meta"]["articles"] == 10
    overall = report["overall"]
    assert (overall["questions"], overall["answerable"], overall["unanswerable"]) == (11, 10, 1)
    for key in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "correct", "token_f1",
                "citation_precision", "citation_recall", "not_found_when_unanswerable", "latency_p50_ms",
                "latency_p95_ms"):
        assert key in overall, key
    assert len(overall["recall_curve"]) == 20
    # Ten paragraphs and questions written about them: retrieval must find nearly all.
    assert overall["recall_at_10"] >= 0.9
    assert 0 <= overall["correct"] <= 1 and overall["latency_p95_ms"] >= overall["latency_p50_ms"] > 0
    assert report["groups"]["unanswerable"]["questions"] == 1
    first = report["questions"][0]
    assert {"id", "question", "hit_rank", "answer", "found", "correct", "f1", "cited", "supporting",
            "latency_ms"} <= set(first)

    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| all | 11 |" in markdown and "R@5" in markdown
    assert "R@5" in run.stdout and "báo cáo:" in run.stdout

    # The corpus got an index of its own, keyed by its content; the default index was never built.
    data = tmp_path / "data"
    assert len([p for p in (data / "eval-indexes").iterdir() if p.is_symlink()]) == 1
    assert not (data / "index").exists()

    # A second run reuses that index: nothing is embedded again, the figures are the same.
    again = _eval(tmp_path, "--questions", str(questions), "--corpus", str(corpus), "--answerer", "extractive",
                  "--out", str(tmp_path / "again.json"), columns=80)
    assert again.returncode == 0, again.stderr
    assert "đã lập chỉ mục" not in again.stderr
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))["overall"]["recall_curve"] == overall["recall_curve"]

    # At 80 columns the table changes layout rather than cutting figures: every one is there, whole.
    table = again.stdout.split("  ✗", 1)[0].split("báo cáo:", 1)[0]
    assert max(len(line) for line in table.splitlines()) <= 80 and "…" not in table
    for key in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "correct", "token_f1"):
        assert f" {overall[key]:.3f} " in table, key
    assert "R@5" in table and "MRR@10" in table


@pytest.mark.e2e
def test_eval_reports_a_bad_question_line_clearly(tmp_path):
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"id": "q1", "question": "Ai?", "answers": ["X"]}\n', encoding="utf-8")
    run = _eval(tmp_path, "--questions", str(questions), "--answerer", "extractive")
    assert run.returncode == 1
    assert "dòng 1" in run.stderr and "passage_id" in run.stderr
    assert "Traceback" not in run.stderr
