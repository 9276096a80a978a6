"""Chunk size and overlap, chosen by measurement: passage-level answer recall and extractive accuracy.

Article-level recall hardly moves with chunk size on short articles, so this measures what a citation
needs: does a top-k *passage* contain the gold answer, and does the extractive answer contain it?
Corpus: the bundled articles plus XQuAD-vi paragraphs joined back into their source articles (several
paragraphs each, so chunking matters). Questions: eval/bundled and eval/xquad_vi (answerable ones).

    .venv/bin/python bench/chunking.py [--sizes 80 120 160 220 300] [--overlaps 0 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bot.settings import BUNDLED_CORPUS, Settings
from bot.wiring import build_components, sync
from retrieval.evaluation import contains_answer

REPO = Path(__file__).resolve().parent.parent
XQUAD = REPO / "eval" / "xquad_vi"


def joined_xquad(target: Path) -> dict[str, str]:
    """Write XQuAD paragraphs grouped by source article as one jsonl; map paragraph id -> article id."""
    articles: dict[str, list[dict]] = defaultdict(list)
    for line in (XQUAD / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        articles[record["id"].rsplit("_p", 1)[0]].append(record)
    mapping = {}
    with target.open("w", encoding="utf-8") as out:
        for article_id, paragraphs in sorted(articles.items()):
            text = "\n\n".join(p["text"] for p in paragraphs)
            out.write(json.dumps({"id": article_id, "title": paragraphs[0]["title"], "text": text}, ensure_ascii=False) + "\n")
            mapping.update({p["id"]: article_id for p in paragraphs})
    return mapping


def questions() -> list[dict]:
    found = []
    for path in (REPO / "eval" / "bundled" / "questions.jsonl", XQUAD / "questions.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("answerable", True):
                found.append(record)
    return found


def measure(settings: Settings, items: list[dict], ks: tuple[int, ...] = (1, 3)) -> dict[str, float]:
    components = build_components(settings, answerer="extractive")
    hits = {k: 0 for k in ks}
    correct = 0
    for item in items:
        passages = components.retriever.retrieve(item["question"], max(ks))
        for k in ks:
            if any(contains_answer(p.text, gold) for p in passages[:k] for gold in item["answers"]):
                hits[k] += 1
        answer = components.answerer.answer(item["question"])
        correct += any(contains_answer(answer.text, gold) for gold in item["answers"])
    result = {f"passage R@{k}": hits[k] / len(items) for k in ks}
    result["extractive correct"] = correct / len(items)
    result["chunks"] = components.store.manifest.n_chunks
    components.store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[80, 120, 160, 220, 300])
    parser.add_argument("--overlaps", type=int, nargs="*", default=[0, 1])
    args = parser.parse_args()
    items = questions()
    print(f"{len(items)} answerable questions (bundled + XQuAD-vi)")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "xquad_articles.jsonl"
        joined_xquad(corpus)
        for size in args.sizes:
            for overlap in args.overlaps:
                settings = Settings(data_dir=Path(tmp) / f"data-{size}-{overlap}", chunk_size=size, chunk_overlap=overlap)
                began = time.perf_counter()
                sync(settings, [BUNDLED_CORPUS, corpus])
                built = time.perf_counter() - began
                figures = measure(settings, items)
                print(f"size {size:>3} overlap {overlap}: " + ", ".join(
                    f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}" for name, value in figures.items())
                    + f", build {built:.0f}s", flush=True)


if __name__ == "__main__":
    main()
