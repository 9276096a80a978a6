"""Web page extraction: our HTML loader vs trafilatura vs both combined (what indexing uses).

Pages are generated from known text (the 5 bundled articles and the first XQuAD-vi articles, their
paragraphs joined) in the three layouts of tests/news_pages.py, each with navigation, related links,
"most read" lists, comments, ads and scripts around the article. Per extractor and layout:
body-text token F1 (and precision, recall) against the article text, accents and case folded, bag
of words; title right (equal after whitespace is collapsed); date right (the same calendar day).

    .venv/bin/python bench/extraction.py            # 20 articles x 3 layouts = 60 pages, ~10 s
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.settings import BUNDLED_CORPUS
from index.cleaning import parse_date_hint
from index.text import words
from index.web.extraction import extract_fields
from tests.news_pages import LAYOUTS, NewsArticle, bundled_articles, render

EXTRACTORS = ("ours", "trafilatura", "both")


def xquad_articles(count: int) -> list[NewsArticle]:
    """The first `count` XQuAD-vi articles, paragraphs in order, with made-up publication dates."""
    grouped: dict[str, tuple[str, list[str]]] = {}
    for line in (REPO / "eval" / "xquad_vi" / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        key = record["id"].rsplit("_p", 1)[0]
        grouped.setdefault(key, (record["title"], []))[1].append(record["text"])
    articles = []
    for number, (key, (title, paragraphs)) in enumerate(list(grouped.items())[:count]):
        articles.append(NewsArticle(key, title, f"2021-{number % 12 + 1:02d}-{number % 27 + 1:02d}", paragraphs))
    return articles


def f1(found: str, truth: str) -> tuple[float, float, float]:
    got, want = Counter(words(found)), Counter(words(truth))
    overlap = sum((got & want).values())
    if not overlap:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / sum(got.values()), overlap / sum(want.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def same_title(found: str | None, truth: str) -> bool:
    return bool(found) and " ".join(found.split()) == " ".join(truth.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xquad", type=int, default=15, help="XQuAD-vi articles besides the 5 bundled ones")
    args = parser.parse_args()
    articles = bundled_articles(BUNDLED_CORPUS) + xquad_articles(args.xquad)
    scores: dict[tuple[str, str], list[tuple[float, float, float, bool, bool]]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    for article in articles:
        for layout in LAYOUTS:
            url = f"https://baoapbac.example/{layout}/{article.slug}.html"
            page = render(article, layout, url)
            for extractor in EXTRACTORS:
                started = time.perf_counter()
                fields = extract_fields(page, url, extractor)  # type: ignore[arg-type]
                seconds[extractor] += time.perf_counter() - started
                date = parse_date_hint(fields.date)
                scores[(extractor, layout)].append(
                    (*f1(fields.text, article.text), same_title(fields.title, article.title),
                     date is not None and date.isoformat() == article.date))
    pages = len(articles) * len(LAYOUTS)
    print(f"{len(articles)} articles x {len(LAYOUTS)} layouts = {pages} pages\n")
    print("| extractor | layout | body P | body R | body F1 | title right | date right |")
    print("|---|---|---|---|---|---|---|")
    for extractor in EXTRACTORS:
        for layout in (*LAYOUTS, "all"):
            rows = [r for (e, l), rs in scores.items() if e == extractor and layout in (l, "all") for r in rs]
            mean = [sum(r[i] for r in rows) / len(rows) for i in range(3)]
            right = [sum(r[i] for r in rows) for i in (3, 4)]
            label = f"**{layout}**" if layout == "all" else layout
            print(f"| {extractor} | {label} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | "
                  f"{right[0]}/{len(rows)} | {right[1]}/{len(rows)} |")
    print()
    for extractor in EXTRACTORS:
        print(f"{extractor}: {1000 * seconds[extractor] / pages:.1f} ms per page")


if __name__ == "__main__":
    main()
