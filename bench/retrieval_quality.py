"""Retrieval quality at size: every candidate retriever side by side, on any corpus/question sets, in one run.

Usage:
    .venv/bin/python bench/retrieval_quality.py \
        --set NAME=CORPUS.jsonl,QUESTIONS.jsonl [--set ...] [--corpus C --questions Q ...] \
        [--fit NAME] [--fit-plain NAME] [--subset 100] [--seed 0] [--english bench/xquad_en_questions.tsv \
        --english-set NAME] [--folded-copy NAME] [--latency-chunks 100000] [--work-dir DIR] [--json OUT] [--md OUT]

Sets are in the `hoidap eval` format (corpus lines {"id","title","text",...}; question lines
{"id","question","answers","passage_id","answerable"}); only answerable questions with a gold article
are scored. Each distinct corpus is indexed once with the project's own pipeline (`sync_index`:
cleaning, 220-word chunks with one sentence of overlap, the configured embedder) into
`<work-dir>/index-<digest>` and reused by later runs; query vectors are cached as `.npy` there too,
and so are the word segmentations (pyvi, underthesea), so a rerun costs only the retrieval itself.
Every corpus larger than `--subset` articles also gets a seeded random subset of that many articles
(its questions restricted to them), indexed the same way, to show the trend with corpus size.

A hit is a top-k chunk of the gold article (article-level recall); figures are R@1, R@5, R@10 and
MRR@10, with the query latency of each method (ms/query, warm, on the largest corpus).
Candidates, each over the same chunks:

- BM25 over syllables as shipped (`retrieval.search.lexical`, title and source prepended), without the title,
  with the title twice, over the title alone; over accent-folded syllables; over pyvi words and over
  underthesea words (both tokenisers timed, in words/s);
- dense multilingual-e5 (the configured embedder, exact inner-product search of the stored index);
- segmenter-free alternatives to pyvi at query time: (A) BM25 over syllable unigrams plus every adjacent
  syllable pair within a punctuation-free run (`đảng_viên`), in one field; (B) the pyvi words field
  (pyvi at index time only) searched with the question segmented by greedy longest match (up to 4
  syllables) against the multi-syllable words of that field; (C) both on restored questions. Each
  replaces the pyvi words in the fusions (A re-fitted on `--fit`/`--fit-plain`, B also with the previous
  weights), with the agreement of max-match and pyvi on the questions and the cold start-up costs
  (pyvi import, field and vocabulary loads, in a fresh interpreter);
- the shipped `HybridRetriever` through its own `retrieve` (passages), and its routes re-computed here;
- fusions of {words, syllables, folded, dense} (+ title field): reciprocal rank (k=20, 60) and min-max
  normalised score fusion, equal weights and a weight grid fitted on `--fit` (accented questions) and
  `--fit-plain` (questions without diacritics, whose accents are first restored by
  `retrieval.search.restore.DiacriticRestorer`, built from the indexed chunks only). The grid's best is
  reported with its neighbours (each weight one step away) and a two-fold cross-validation by article,
  to show whether it is a knife-edge.

Questions without diacritics are also measured for restoration accuracy (syllables, against the
accented question with the same id in another set over the same corpus). English questions
(`--english`, a TSV of question id and English text for `--english-set`) compare dense and lexical.
`--latency-chunks` times each method on a synthetic corpus of that many chunks (the real chunks'
sentences reshuffled and renumbered, vectors as noisy copies of the real ones).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bm25s

from bot.settings import Settings
from bot.wiring import build_embedder, chunk_settings
from index.chunking import split_into_sentences
from index.indexer import sync_index
from index.store import IndexStore
from retrieval.search.hybrid import DEFAULT_ROUTES, HybridRetriever, Route, _entity_tokens
from retrieval.search.lexical import LexicalIndex, top_rows
from retrieval.search.restore import DiacriticRestorer
from index.text import (
    detect_query_kind,
    fold_diacritics,
    has_diacritics,
    normalize_tone_marks,
    syllable_pairs,
    tokenize,
)

DEPTH = 50  # candidates per ranked list, as HybridRetriever asks for
KS = (1, 5, 10)
MAIN_SOURCES = ("words", "syl", "fold", "dense")
GRID_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
TITLE_STEPS = (0.0, 0.25, 0.5)
FUSIONS: tuple[tuple[str, int], ...] = (("score", 0), ("rrf", 20), ("rrf", 60))
_WORD_RE = re.compile(r"[^\W_]", re.UNICODE)
_WORD_RUN = re.compile(r"[^\W\d_]+")


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Question:
    """A scored question: its id, its text and the article that answers it."""

    qid: str
    text: str
    gold: str


@dataclass
class QuestionSet:
    """Questions asked of one corpus (`corpus` names a prepared `Corpus`)."""

    name: str
    corpus: str
    questions: list[Question]
    accented: dict[str, str] = field(default_factory=dict)  # qid -> accented original, for unaccented sets


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_questions(path: Path) -> list[Question]:
    """The answerable questions of a `hoidap eval` question file that name their gold article."""
    questions = []
    for record in read_jsonl(path):
        gold = record.get("passage_id") or (record.get("passage_ids") or [None])[0]
        if record.get("answerable", True) and gold:
            questions.append(Question(str(record["id"]), unicodedata.normalize("NFC", record["question"]), str(gold)))
    return questions


def read_english(path: Path, base: QuestionSet) -> list[Question]:
    """English questions (TSV: question id, text) scored against the gold articles of `base`."""
    gold = {q.qid: q.gold for q in base.questions}
    questions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            qid, text = line.split("\t", 1)
            if qid in gold:
                questions.append(Question(qid, text.strip(), gold[qid]))
    return questions


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ tokenisers


def syllables(text: str) -> int:
    """Number of syllable tokens (the unit words/s figures are given in)."""
    return len(tokenize(text, number_variants=False))


def _word_tokens(words: Iterable[str]) -> list[str]:
    """Lower-cased, tone-normalised word tokens, punctuation dropped (a word keeps `_` between syllables)."""
    out = []
    for word in words:
        word = normalize_tone_marks(word.lower().replace(" ", "_"))
        if _WORD_RE.search(word):
            out.append(word)
    return out


def bigram_tokens(text: str) -> list[str]:
    """The shipped pair field's tokens (`LexicalIndex.query_tokens(.., "pairs")`): syllables and adjacent pairs."""
    return tokenize(text) + syllable_pairs(text)


def mm_syllables(text: str) -> list[str]:
    """The syllables max-match joins: `tokenize` without number variants (`%` dropped, as pyvi splits it off)."""
    return [t.rstrip("%") for t in tokenize(text, number_variants=False)]


class MaxMatch:
    """Greedy longest-match word segmentation (up to `max_len` syllables) against a vocabulary of
    multi-syllable words (those pyvi produced when the corpus was indexed): no model at query time."""

    def __init__(self, vocabulary: Iterable[str], max_len: int = 4) -> None:
        self.max_len = max_len
        self.words = frozenset(w for w in vocabulary if "_" in w and w.count("_") < max_len)

    def segment(self, text: str) -> list[str]:
        syl = mm_syllables(text)
        out: list[str] = []
        i = 0
        while i < len(syl):
            for n in range(min(self.max_len, len(syl) - i), 1, -1):
                word = "_".join(syl[i : i + n])
                if word in self.words:
                    out.append(word)
                    i += n
                    break
            else:
                out.append(syl[i])
                i += 1
        return out


def segmentation_agreement(pairs: Iterable[tuple[list[str], list[str]]]) -> dict[str, float]:
    """How far max-match tokens agree with pyvi's, over (max-match, pyvi) token lists of the same texts:
    share of texts segmented identically, and word precision/recall/F1 (multisets; tokens compared on
    their letters, digits and `_` only, so `tp.` = `tp`)."""
    from collections import Counter

    def norm(tokens: list[str]) -> list[str]:
        return [t for t in (re.sub(r"[^\w]+", "", x) for x in tokens) if t]

    same = n = hit = n_mm = n_pyvi = 0
    for mm, pyvi in pairs:
        mm, pyvi = norm(mm), norm(pyvi)
        n += 1
        same += mm == pyvi
        hit += sum((Counter(mm) & Counter(pyvi)).values())
        n_mm += len(mm)
        n_pyvi += len(pyvi)
    precision, recall = hit / max(n_mm, 1), hit / max(n_pyvi, 1)
    return {"identical": same / max(n, 1), "precision": precision, "recall": recall,
            "F1": 2 * precision * recall / max(precision + recall, 1e-12), "n": n}


class Segmenter:
    """A word segmenter (pyvi or underthesea) with a JSON cache of its output and its measured speed."""

    def __init__(self, name: str, cache: Path) -> None:
        self.name = name
        self.cache_path = cache
        self.cache: dict[str, list[str]] = {}
        self.timing = {"syllables": 0, "seconds": 0.0}
        if cache.is_file():
            stored = json.loads(cache.read_text(encoding="utf-8"))
            self.cache, self.timing = stored["tokens"], stored["timing"]
        self._segment: Callable[[str], list[str]] | None = None

    def _load(self) -> Callable[[str], list[str]]:
        if self._segment is None:
            if self.name == "pyvi":
                from pyvi import ViTokenizer

                self._segment = lambda text: ViTokenizer.tokenize(text).split()
            else:
                from underthesea import word_tokenize

                self._segment = lambda text: word_tokenize(text)
        return self._segment

    def segment(self, text: str) -> list[str]:
        """Word tokens of `text` (cached; uncached calls are timed for the words/s figure)."""
        tokens = self.cache.get(text)
        if tokens is None:
            segment = self._load()
            started = time.perf_counter()
            tokens = _word_tokens(segment(text))
            self.timing["seconds"] += time.perf_counter() - started
            self.timing["syllables"] += syllables(text)
            self.cache[text] = tokens
        return tokens

    def time_queries(self, texts: Sequence[str]) -> float:
        """Milliseconds per text to segment `texts` afresh (the per-question cost)."""
        segment = self._load()
        segment(texts[0])
        started = time.perf_counter()
        for text in texts:
            _word_tokens(segment(text))
        return 1000 * (time.perf_counter() - started) / len(texts)

    def words_per_second(self) -> float:
        return self.timing["syllables"] / self.timing["seconds"] if self.timing["seconds"] else float("nan")

    def save(self) -> None:
        self.cache_path.write_text(json.dumps({"tokens": self.cache, "timing": self.timing}, ensure_ascii=False),
                                   encoding="utf-8")


class TokenField:
    """BM25 (bm25s, Lucene variant, k1 1.2, b 0.75 as `retrieval.search.lexical`) over given token lists."""

    def __init__(self, documents: Sequence[list[str]]) -> None:
        self.bm25 = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        with contextlib.redirect_stdout(io.StringIO()):  # bm25s prints a line per index built
            self.bm25.index([list(doc) or [""] for doc in documents], show_progress=False)
        self.n = len(documents)

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        known = [t for t in tokens if t in self.bm25.vocab_dict and t]
        return self.bm25.get_scores(known) if known else np.zeros(self.n, dtype=np.float32)


# --------------------------------------------------------------------------------------------- corpora


@dataclass
class Corpus:
    """One indexed corpus with every field the candidates search."""

    name: str
    store: IndexStore
    lexical: LexicalIndex
    chunk_ids: np.ndarray
    article_index: np.ndarray  # per chunk row, an article number
    article_names: list[str]
    fields: dict[str, TokenField]
    title_field: TokenField  # one document per article
    chunks_of_article: list[np.ndarray]
    restorer: DiacriticRestorer
    restorer_corpus_only: DiacriticRestorer  # question_weight 0, for the accuracy table
    build_seconds: dict[str, float]
    n_syllables: int
    maxmatch: MaxMatch | None = None  # over the pyvi words field's vocabulary

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_ids)


def build_index(corpus: Path, work_dir: Path, settings: Settings, embedder) -> Path:
    """The project's own index of a corpus file, built once under `work_dir` (keyed by its bytes)."""
    index_dir = work_dir / f"index-{digest(corpus.read_bytes())}" / "index"
    started = time.perf_counter()
    summary = sync_index([corpus], index_dir, embedder, chunk_settings(settings))
    if summary.changed:
        print(f"  indexed {corpus}: {summary.n_articles} articles, {summary.n_chunks} chunks, "
              f"{summary.chunks_embedded} embedded in {time.perf_counter() - started:.0f} s", flush=True)
    return index_dir


def prepare_corpus(name: str, index_dir: Path, embedder, segmenters: dict[str, Segmenter],
                   question_weight: int) -> Corpus:
    """Open an index and build the lexical fields and the diacritic model of its chunks."""
    store = IndexStore.open(index_dir, model=embedder.identity)
    articles = store.articles()
    chunks = store.chunks()
    titles = {a.article_id: a.title for a in articles}
    heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in articles}
    names = sorted(titles)
    number = {article_id: i for i, article_id in enumerate(names)}
    article_index = np.array([number[c.article_id] for c in chunks], dtype=np.int64)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    lexical = LexicalIndex.from_store(store)
    seconds["syllables + folded (shipped)"] = time.perf_counter() - started
    bodies = [c.text for c in chunks]
    with_head = [f"{heads[c.article_id]}\n{c.text}" for c in chunks]
    fields: dict[str, TokenField] = {}
    fields["syl_notitle"] = TokenField([tokenize(t) for t in bodies])
    fields["syl_title2"] = TokenField([tokenize(f"{titles[c.article_id]}\n{t}") for c, t in zip(chunks, with_head)])
    for seg_name, segmenter in segmenters.items():
        before = segmenter.timing["seconds"]
        started = time.perf_counter()
        documents = [segmenter.segment(text) for text in with_head]
        fields[seg_name] = TokenField(documents)
        tokenising = segmenter.timing["seconds"] - before
        seconds[f"{seg_name} words (segmenting {'cached' if tokenising == 0 else f'{tokenising:.1f} s'})"] = (
            time.perf_counter() - started)
    started = time.perf_counter()
    # A copy of the pair field as a bare bm25s field, only for the start-up cost figures (`load_costs`).
    fields["bigram"] = TokenField([bigram_tokens(t) for t in with_head])
    seconds["syllable bigrams+unigrams field"] = time.perf_counter() - started
    maxmatch = None
    if "words" in fields:
        started = time.perf_counter()
        maxmatch = MaxMatch(fields["words"].bm25.vocab_dict)
        seconds[f"max-match vocabulary ({len(maxmatch.words)} words, from the pyvi field)"] = time.perf_counter() - started
    title_field = TokenField([tokenize(titles[a]) for a in names])
    chunks_of_article = [np.flatnonzero(article_index == i) for i in range(len(names))]
    started = time.perf_counter()
    restorer = DiacriticRestorer.build(with_head, question_weight=question_weight)
    seconds["diacritic model"] = time.perf_counter() - started
    corpus_only = DiacriticRestorer.build(with_head)
    n_syllables = sum(syllables(t) for t in with_head)
    return Corpus(name, store, lexical, np.asarray(lexical.chunk_ids), article_index, names, fields, title_field,
                  chunks_of_article, restorer, corpus_only, seconds, n_syllables, maxmatch)


def subset_corpus(corpus: Path, n_articles: int, seed: int, work_dir: Path) -> tuple[Path, set[str]]:
    """A corpus file of `n_articles` articles drawn at random (seeded) from `corpus`, and their ids."""
    records = read_jsonl(corpus)
    ids = sorted(str(r["id"]) for r in records)
    chosen = set(np.random.default_rng(seed).choice(ids, size=n_articles, replace=False).tolist())
    path = work_dir / f"subset-{digest(corpus.read_bytes())}-{n_articles}-{seed}.jsonl"
    if not path.is_file():
        lines = [json.dumps(r, ensure_ascii=False) for r in records if str(r["id"]) in chosen]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, chosen


# ----------------------------------------------------------------------------------------- query side


class VectorCache:
    """Query vectors of the configured embedder, cached in `.npy` (+ a JSON list of the texts)."""

    def __init__(self, embedder, work_dir: Path) -> None:
        self.embedder = embedder
        precision = "" if embedder.identity.precision == "fp32" else f"-{embedder.identity.precision}"
        stem = work_dir / f"query-vectors-{embedder.identity.weights_sha256[:12]}{precision}"
        self.npy, self.texts_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
        self.vectors: dict[str, np.ndarray] = {}
        if self.npy.is_file() and self.texts_path.is_file():
            texts = json.loads(self.texts_path.read_text(encoding="utf-8"))
            matrix = np.load(self.npy, allow_pickle=False)
            if len(texts) == len(matrix):
                self.vectors = dict(zip(texts, matrix))
        self.dirty = False

    def ensure(self, texts: Iterable[str]) -> None:
        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            print(f"  embedding {len(missing)} questions", flush=True)
            for first in range(0, len(missing), 64):
                batch = missing[first : first + 64]
                self.vectors.update(zip(batch, self.embedder.embed_queries(batch)))
            self.dirty = True

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        self.ensure(texts)
        return np.stack([self.vectors[t] for t in texts])

    def save(self) -> None:
        if self.dirty:
            texts = list(self.vectors)
            np.save(self.npy, np.stack([self.vectors[t] for t in texts]).astype(np.float32), allow_pickle=False)
            self.texts_path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")


Ranked = tuple[np.ndarray, np.ndarray]  # chunk rows and scores, best first


def _top(scores: np.ndarray, k: int = DEPTH) -> Ranked:
    rows = top_rows(scores, k)
    return rows, scores[rows].astype(np.float64)


class Searcher:
    """Every ranked list (source) of a corpus for a question text, cached per (source, text)."""

    def __init__(self, corpus: Corpus, vectors: VectorCache, segmenters: dict[str, Segmenter]) -> None:
        self.corpus = corpus
        self.vectors = vectors
        self.segmenters = segmenters
        self._cache: dict[tuple[str, str], Ranked] = {}
        self._restored: dict[str, str] = {}
        self.row_of = {int(c): i for i, c in enumerate(corpus.chunk_ids)}

    def restored(self, text: str) -> str:
        if text not in self._restored:
            self._restored[text] = self.corpus.restorer.restore(text)
        return self._restored[text]

    def ranked(self, source: str, text: str) -> Ranked:
        """Top `DEPTH` chunk rows for `text` from `source` (`r:` prefix: on the restored text)."""
        key = (source, text)
        if key not in self._cache:
            self._cache[key] = self._search(source, text)
        return self._cache[key]

    def _search(self, source: str, text: str) -> Ranked:
        corpus = self.corpus
        if source.startswith("r:"):
            return self._search(source[2:], self.restored(text))
        if source == "syl":
            return _top(corpus.lexical.scores(text, "plain"))
        if source == "fold":
            return _top(corpus.lexical.scores(text, "folded"))
        if source == "fold_entities":  # what the shipped route searches for an English question
            return _top(corpus.lexical.scores(text, "folded", tokens=_entity_tokens(text)))
        if source in ("syl_notitle", "syl_title2"):
            return _top(corpus.fields[source].scores(tokenize(text)))
        if source in self.segmenters:
            return _top(corpus.fields[source].scores(self.segmenters[source].segment(text)))
        if source == "bigram":  # the shipped pair field itself
            return _top(corpus.lexical.scores(text, "pairs"))
        if source == "mm":  # the pyvi words field, the question segmented by max-match
            assert corpus.maxmatch is not None
            return _top(corpus.fields["words"].scores(corpus.maxmatch.segment(text)))
        if source == "title":
            per_article = corpus.title_field.scores(tokenize(text))
            order = top_rows(per_article, DEPTH)
            rows = [corpus.chunks_of_article[a] for a in order]
            if not rows:
                return np.zeros(0, dtype=np.int64), np.zeros(0)
            flat = np.concatenate(rows)[:DEPTH]
            scores = np.concatenate([np.full(len(r), per_article[a]) for r, a in zip(rows, order)])[:DEPTH]
            return flat, scores.astype(np.float64)
        if source == "dense":
            hits = corpus.store.search(self.vectors.embed_queries([text]), DEPTH)[0]
            rows = np.array([self.row_of[c] for c, _ in hits], dtype=np.int64)
            return rows, np.array([s for _, s in hits], dtype=np.float64)
        raise ValueError(f"unknown source {source}")


# ------------------------------------------------------------------------------------------- scoring


def ranks_of(article_order: Sequence[int], gold: int) -> float:
    """1-based rank of `gold` among distinct articles in order, or inf beyond 10 / absent."""
    seen: list[int] = []
    for article in article_order:
        if article not in seen:
            seen.append(article)
            if article == gold:
                return float(len(seen)) if len(seen) <= 10 else float("inf")
            if len(seen) >= 10:
                return float("inf")
    return float("inf")


def metrics(ranks: np.ndarray) -> dict[str, float]:
    """R@1, R@5, R@10, MRR@10 of article ranks (inf = missed), over the last axis."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in KS}
    out["MRR@10"] = float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0)))
    return out


def single_ranks(searcher: Searcher, source: str, questions: Sequence[Question]) -> np.ndarray:
    corpus = searcher.corpus
    number = {name: i for i, name in enumerate(corpus.article_names)}
    out = []
    for q in questions:
        rows, _ = searcher.ranked(source, q.text)
        out.append(ranks_of(corpus.article_index[rows].tolist(), number.get(q.gold, -1)))
    return np.array(out)


def fused_ranks(lists: Sequence[Ranked], weights: np.ndarray, fusion: str, rrf_k: int,
                article_index: np.ndarray, gold: int) -> np.ndarray:
    """Article rank of `gold` under each weight row of `weights` (combos x sources), vectorised.

    `score`: each list's scores min-max normalised (the lowest of a list counts 0, as in
    `retrieval.search.hybrid._fuse`), weighted and summed; `rrf`: weighted 1 / (rrf_k + rank). A chunk counts
    only if a list with a positive weight found it. Ties go to the lower chunk id, as in the hybrid.
    """
    non_empty = [r for r, _ in lists if len(r)]
    if not non_empty:
        return np.full(len(weights), np.inf)
    union = np.unique(np.concatenate(non_empty))
    values = np.zeros((len(lists), len(union)))
    present = np.zeros((len(lists), len(union)))
    for s, (rows, scores) in enumerate(lists):
        if not len(rows):
            continue
        position = np.searchsorted(union, rows)
        if fusion == "rrf":
            values[s, position] = 1.0 / (rrf_k + np.arange(1, len(rows) + 1))
        else:
            low, high = scores.min(), scores.max()
            values[s, position] = (scores - low) / (high - low if high > low else 1.0)
        present[s, position] = 1.0
    fused = weights @ values - 1e-9 * np.arange(len(union)) / len(union)
    fused[((weights > 0).astype(float) @ present) == 0] = -np.inf
    articles = article_index[union]
    order = np.argsort(articles, kind="stable")
    sorted_articles = articles[order]
    starts = np.flatnonzero(np.r_[True, sorted_articles[1:] != sorted_articles[:-1]])
    best = np.maximum.reduceat(fused[:, order], starts, axis=1)
    names = sorted_articles[starts]
    is_gold = names == gold
    if not is_gold.any():
        return np.full(len(weights), np.inf)
    gold_best = best[:, is_gold][:, 0]
    ahead = (best[:, ~is_gold] >= gold_best[:, None]).sum(axis=1)
    ranks = (1 + ahead).astype(np.float64)
    ranks[~np.isfinite(gold_best) | (ranks > 10)] = np.inf
    return ranks


def fused_rank_matrix(searcher: Searcher, sources: Sequence[str], questions: Sequence[Question],
                      weights: np.ndarray, fusion: str, rrf_k: int) -> np.ndarray:
    """Ranks (combos x questions) of every weight row for every question."""
    corpus = searcher.corpus
    number = {name: i for i, name in enumerate(corpus.article_names)}
    columns = []
    for q in questions:
        lists = [searcher.ranked(source, q.text) for source in sources]
        columns.append(fused_ranks(lists, weights, fusion, rrf_k, corpus.article_index, number.get(q.gold, -1)))
    return np.stack(columns, axis=1)


def hybrid_ranks(retriever: HybridRetriever, corpus: Corpus, questions: Sequence[Question]) -> np.ndarray:
    """Article ranks through the shipped `HybridRetriever.retrieve` (passages, top 10)."""
    number = {name: i for i, name in enumerate(corpus.article_names)}
    out = []
    for q in questions:
        order = [number[p.article_id] for p in retriever.retrieve(q.text, 10)]
        out.append(ranks_of(order, number.get(q.gold, -1)))
    return np.array(out)


def weight_grid(n_sources: int, title: bool) -> np.ndarray:
    """Every weight combination of the grid (at least one positive weight)."""
    steps = [GRID_STEPS] * n_sources + ([TITLE_STEPS] if title else [])
    rows = [w for w in itertools.product(*steps) if any(w)]
    return np.array(rows, dtype=np.float64)


def objective(ranks: np.ndarray) -> np.ndarray:
    """What the grid maximises: R@5, then MRR@10 as a tie-breaker."""
    r5 = (ranks <= 5).mean(axis=-1)
    mrr = np.where(ranks <= 10, 1.0 / ranks, 0.0).mean(axis=-1)
    return r5 + 1e-3 * mrr


# -------------------------------------------------------------------------------------- restoration


def _syllables(text: str) -> list[str]:
    return [normalize_tone_marks(t) for t in tokenize(text, number_variants=False) if not t[0].isdigit()]


def restoration_accuracy(restore: Callable[[str], str], originals: dict[str, str], typed: dict[str, str]
                         ) -> dict[str, float]:
    """Syllable accuracy (lower-cased) of `restore(typed[qid])` against `originals[qid]`, and the share of
    questions restored exactly."""
    right = total = exact = n = 0
    for qid, original in originals.items():
        if qid not in typed:
            continue
        want, got = _syllables(original), _syllables(restore(typed[qid]))
        if len(want) != len(got):
            got = got[: len(want)] + [""] * (len(want) - len(got))
        right += sum(a == b for a, b in zip(want, got))
        total += len(want)
        exact += want == got
        n += 1
    return {"syllable_accuracy": right / max(total, 1), "exact_questions": exact / max(n, 1), "n": n}


# ------------------------------------------------------------------------------------------- latency


def time_per_query(function: Callable[[str], object], texts: Sequence[str]) -> float:
    """Warm milliseconds per call over `texts`."""
    function(texts[0])
    started = time.perf_counter()
    for text in texts:
        function(text)
    return 1000 * (time.perf_counter() - started) / len(texts)


def synthetic_latency(base: Corpus, n_chunks: int, questions: Sequence[str], vectors: VectorCache,
                      segmenter: Segmenter | None, work_dir: Path, seed: int = 0) -> dict[str, float]:
    """Per-method query latency (ms) and build costs on `n_chunks` chunks grown from `base`'s chunks.

    Each synthetic chunk is a real chunk's sentences shuffled, plus two sentences of other chunks, with
    every number replaced by a random one (so the vocabulary grows as news does); its vector is the
    real chunk's plus gaussian noise (sigma 0.03 per dimension), renormalised. Word segmentation is
    cached per sentence here (the cost of segmenting is reported from the real corpus's words/s).
    """
    import faiss

    rng = np.random.default_rng(seed)
    chunks = base.store.chunks()
    sentences = [[c.text[s:e] for s, e in split_into_sentences(c.text)] or [c.text] for c in chunks]
    real_vectors = base.store.vectors()
    bases = rng.integers(0, len(chunks), n_chunks)
    number = re.compile(r"\d+")
    texts, pieces_of = [], []
    for b in bases:
        pieces = list(sentences[b])
        rng.shuffle(pieces)
        for other in rng.integers(0, len(chunks), 2):
            pieces.append(sentences[other][rng.integers(0, len(sentences[other]))])
        pieces_of.append(pieces)
        texts.append(number.sub(lambda m: str(rng.integers(1, 10 ** len(m.group()))), " ".join(pieces)))
    out: dict[str, float] = {"chunks": n_chunks}
    started = time.perf_counter()
    lexical = LexicalIndex.build(list(range(n_chunks)), texts)
    out["build syllables+folded s"] = time.perf_counter() - started
    started = time.perf_counter()
    restorer = DiacriticRestorer.build(texts)
    out["build diacritic model s"] = time.perf_counter() - started
    out["diacritic model MB (JSON)"] = len(restorer.to_json().encode("utf-8")) / 1e6
    noisy = real_vectors[bases] + rng.normal(0, 0.03, (n_chunks, real_vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(noisy.shape[1])
    flat.add(noisy.astype(np.float32))
    words_field = None
    if segmenter is not None:
        started = time.perf_counter()
        docs = [[w for s in pieces for w in segmenter.segment(s)] for pieces in pieces_of]
        words_field = TokenField(docs)
        out["build words field s (segmenting cached per sentence)"] = time.perf_counter() - started
        out["segmenting at this size, estimated s"] = sum(syllables(t) for t in texts) / segmenter.words_per_second()
    started = time.perf_counter()
    bigram_field = TokenField([bigram_tokens(t) for t in texts])
    out["build bigram+unigram field s (no segmenter)"] = time.perf_counter() - started
    out["bigram field vocabulary"] = len(bigram_field.bm25.vocab_dict)
    maxmatch = None
    if words_field is not None:
        out["words field vocabulary"] = len(words_field.bm25.vocab_dict)
        started = time.perf_counter()
        maxmatch = MaxMatch(words_field.bm25.vocab_dict)
        out["build max-match vocabulary s"] = time.perf_counter() - started
    query_vectors = vectors.embed_queries(list(questions))
    vector_of = dict(zip(questions, query_vectors))
    out["BM25 syllables ms"] = time_per_query(lambda q: top_rows(lexical.scores(q, "plain"), DEPTH), questions)
    out["BM25 folded ms"] = time_per_query(lambda q: top_rows(lexical.scores(q, "folded"), DEPTH), questions)
    out["dense search (flat) ms"] = time_per_query(lambda q: flat.search(vector_of[q][None, :], DEPTH), questions)
    if words_field is not None and segmenter is not None:
        out["BM25 words (+segmenting) ms"] = time_per_query(
            lambda q: top_rows(words_field.scores(_word_tokens(segmenter._load()(q))), DEPTH), questions)
    out["A: BM25 bigram+unigram (+tokenising) ms"] = time_per_query(
        lambda q: top_rows(bigram_field.scores(bigram_tokens(q)), DEPTH), questions)
    if words_field is not None and maxmatch is not None:
        out["B: BM25 words, max-match question (+segmenting) ms"] = time_per_query(
            lambda q: top_rows(words_field.scores(maxmatch.segment(q)), DEPTH), questions)
    plain = [fold_diacritics(q) for q in questions]
    out["restore (unaccented question) ms"] = time_per_query(restorer.restore, plain)
    fields = {"bigram": bigram_field, **({"words": words_field} if words_field is not None else {})}
    out.update(load_costs(work_dir / "startup-synthetic", lexical, fields, maxmatch))
    return out


def cold_seconds(code: str, runs: int = 3) -> float:
    """Median seconds `code` takes in a fresh interpreter (measured inside it, interpreter start excluded;
    `t0` is taken before `code`, which may reset it)."""
    import subprocess

    program = f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\nt0 = time.perf_counter()\n{code}\n" \
              "print(time.perf_counter() - t0)"
    times = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
        times.append(float(result.stdout.strip().splitlines()[-1]))
    return float(np.median(times))


def save_field(field: TokenField, directory: Path) -> float:
    """Write a field as the shipped index does (bm25s, no pickle); its size in MB."""
    field.bm25.save(str(directory), allow_pickle=False)
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 1e6


def load_costs(directory: Path, lexical: LexicalIndex, fields: dict[str, TokenField],
               maxmatch: MaxMatch | None) -> dict[str, float]:
    """Start-up costs of the lexical side of an index: each part saved under `directory`, then loaded cold
    (a fresh interpreter), in ms, with sizes in MB."""
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    out: dict[str, float] = {}
    lexical.save(directory / "lexical")
    out["shipped lexical index (plain+folded+pairs+diacritic model) MB"] = sum(
        f.stat().st_size for f in (directory / "lexical").rglob("*") if f.is_file()) / 1e6
    out["load shipped lexical index (+import bm25s) ms"] = 1000 * cold_seconds(
        f"from pathlib import Path\nfrom retrieval.search.lexical import LexicalIndex\n"
        f"LexicalIndex.load(Path({str(directory / 'lexical')!r}))")
    out["import bm25s ms"] = 1000 * cold_seconds("import bm25s")
    for name, token_field in fields.items():
        out[f"{name} field MB"] = save_field(token_field, directory / name)
        out[f"load {name} field (bm25s.load, import excluded) ms"] = 1000 * cold_seconds(
            f"import bm25s\nt0 = time.perf_counter()\nbm25s.BM25.load({str(directory / name)!r}, allow_pickle=False)")
    if maxmatch is not None:
        path = directory / "maxmatch.json"
        path.write_text(json.dumps(sorted(maxmatch.words), ensure_ascii=False), encoding="utf-8")
        out["max-match vocabulary words"] = len(maxmatch.words)
        out["max-match vocabulary MB (JSON)"] = path.stat().st_size / 1e6
        out["load max-match vocabulary (JSON -> frozenset) ms"] = 1000 * cold_seconds(
            f"import json\nfrozenset(json.loads(open({str(path)!r}, encoding='utf-8').read()))")
    return out


def startup_costs(work_dir: Path) -> dict[str, float]:
    """Cold start-up figures of the query-time segmenters (ms, fresh interpreter, median of 3)."""
    out = {"import pyvi + first ViTokenizer.tokenize ms": 1000 * cold_seconds(
        "from pyvi import ViTokenizer\nViTokenizer.tokenize('Ai là chủ tịch nước Việt Nam')")}
    out["import sklearn alone ms"] = 1000 * cold_seconds("import sklearn")
    out["import index.text (syllable tokenizer) ms"] = 1000 * cold_seconds("import index.text")
    return out


# -------------------------------------------------------------------------------------------- report


def fmt_row(name: str, m: dict[str, float], extra: str = "") -> str:
    return f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in ("R@1", "R@5", "R@10", "MRR@10")) + f" | {extra} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=CORPUS,QUESTIONS")
    parser.add_argument("--corpus", action="append", default=[], type=Path)
    parser.add_argument("--questions", action="append", default=[], type=Path)
    parser.add_argument("--fit", help="set whose accented questions fit the fusion weights (default: the first)")
    parser.add_argument("--fit-plain", help="set of questions without diacritics that fits their route")
    parser.add_argument("--subset", type=int, default=100, help="articles in the random subset (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--english", type=Path, help="TSV of question id and English question")
    parser.add_argument("--english-set", help="the set those ids belong to")
    parser.add_argument("--folded-copy", action="append", default=[], help="also ask this set's questions folded")
    parser.add_argument("--no-underthesea", action="store_true")
    parser.add_argument("--question-weight", type=int, default=20,
                        help="counts of retrieval.restore.QUESTION_PHRASES in the diacritic model (0: corpus only)")
    parser.add_argument("--latency-chunks", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/hoidap-retrieval-bench"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path, help="also write the tables (markdown) here")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    run_started = time.perf_counter()

    pairs: list[tuple[str, Path, Path]] = []
    for spec in args.set:
        name, paths = spec.split("=", 1)
        corpus_path, questions_path = paths.split(",", 1)
        pairs.append((name, Path(corpus_path), Path(questions_path)))
    if len(args.corpus) != len(args.questions):
        parser.error("give one --questions per --corpus")
    for corpus_path, questions_path in zip(args.corpus, args.questions):
        pairs.append((questions_path.parent.name, corpus_path, questions_path))
    if not pairs:
        parser.error("give at least one --set or --corpus/--questions pair")

    settings = Settings()
    embedder = build_embedder(settings, new_index=True)
    vectors = VectorCache(embedder, args.work_dir)
    segmenters = {"words": Segmenter("pyvi", args.work_dir / "segment-pyvi.json")}
    if not args.no_underthesea:
        segmenters["uts"] = Segmenter("underthesea", args.work_dir / "segment-underthesea.json")

    # Corpora (by content) and question sets, with the random subsets.
    corpus_dirs: dict[str, Path] = {}
    corpus_size: dict[str, int] = {}
    sets: list[QuestionSet] = []
    for name, corpus_path, questions_path in pairs:
        key = digest(corpus_path.read_bytes())
        corpus_dirs.setdefault(key, build_index(corpus_path, args.work_dir, settings, embedder))
        corpus_size[key] = len(read_jsonl(corpus_path))
        questions = read_questions(questions_path)
        sets.append(QuestionSet(name, key, questions))
        if args.subset and corpus_size[key] > args.subset:
            sub_path, chosen = subset_corpus(corpus_path, args.subset, args.seed, args.work_dir)
            sub_key = digest(sub_path.read_bytes())
            corpus_dirs.setdefault(sub_key, build_index(sub_path, args.work_dir, settings, embedder))
            corpus_size[sub_key] = args.subset
            sets.append(QuestionSet(f"{name}@{args.subset}", sub_key, [q for q in questions if q.gold in chosen]))
    for name in args.folded_copy:
        base = next(s for s in sets if s.name == name)
        sets.append(QuestionSet(f"{name}-nodia", base.corpus,
                                [Question(q.qid, fold_diacritics(q.text), q.gold) for q in base.questions]))
    if args.english:
        base = next(s for s in sets if s.name == (args.english_set or sets[0].name))
        sets.append(QuestionSet(f"{base.name}-en", base.corpus, read_english(args.english, base)))
    # Unaccented sets: their accented originals, from a set over the same corpus with the same ids.
    for qset in sets:
        if qset.questions and np.mean([not has_diacritics(q.text) for q in qset.questions]) > 0.9 \
                and not qset.name.endswith("-en"):
            for other in sets:
                if other.corpus == qset.corpus and other is not qset and not other.name.endswith("-en"):
                    accented = {q.qid: q.text for q in other.questions if has_diacritics(q.text)}
                    if len(accented) > len(qset.accented):
                        qset.accented = accented

    print("preparing lexical fields and diacritic models", flush=True)
    corpora = {key: prepare_corpus(key, d, embedder, segmenters, args.question_weight) for key, d in corpus_dirs.items()}
    for segmenter in segmenters.values():
        segmenter.save()
    searchers = {key: Searcher(c, vectors, segmenters) for key, c in corpora.items()}
    for qset in sets:
        vectors.ensure(q.text for q in qset.questions)
    for qset in sets:
        if qset.accented:
            restorer = corpora[qset.corpus].restorer
            vectors.ensure(restorer.restore(q.text) for q in qset.questions)
    vectors.save()

    def is_plain(qset: QuestionSet) -> bool:
        return bool(qset.accented)

    def english(qset: QuestionSet) -> bool:
        return qset.name.endswith("-en")

    # --- single retrievers and shipped hybrid
    singles = {
        "BM25 syllables (shipped plain field)": "syl",
        "BM25 syllables, no title": "syl_notitle",
        "BM25 syllables, title x2": "syl_title2",
        "BM25 title only": "title",
        "BM25 folded syllables": "fold",
        "BM25 pyvi words": "words",
        "BM25 underthesea words": "uts",
        "dense e5-small": "dense",
        "A: BM25 syllable bigrams+unigrams": "bigram",
        "B: BM25 pyvi words, question by max-match": "mm",
        "restored -> BM25 syllables": "r:syl",
        "restored -> BM25 pyvi words": "r:words",
        "restored -> dense": "r:dense",
        "restored -> A: BM25 syllable bigrams+unigrams": "r:bigram",
        "restored -> B: BM25 pyvi words, max-match (C)": "r:mm",
    }
    if args.no_underthesea:
        singles.pop("BM25 underthesea words")
    results: dict[str, dict[str, dict[str, float]]] = {}  # method -> set -> metrics
    per_question: dict[str, dict[str, np.ndarray]] = {}

    def record(method: str, qset: QuestionSet, ranks: np.ndarray) -> None:
        results.setdefault(method, {})[qset.name] = metrics(ranks)
        per_question.setdefault(method, {})[qset.name] = ranks

    print("single retrievers", flush=True)
    for qset in sets:
        searcher = searchers[qset.corpus]
        for method, source in singles.items():
            if source.startswith("r:") and not is_plain(qset):
                continue
            record(method, qset, single_ranks(searcher, source, qset.questions))
        hybrid = HybridRetriever(corpora[qset.corpus].store, vectors, corpora[qset.corpus].lexical)
        record("HybridRetriever as shipped (retrieve)", qset, hybrid_ranks(hybrid, corpora[qset.corpus], qset.questions))

    # --- the shipped routes, re-computed with the vectorised fusion (a check of the method)
    def route_ranks(searcher: Searcher, questions: Sequence[Question], route: Route, plain_source: str = "syl",
                    english_route: bool = False) -> np.ndarray:
        restored = "r:" if route.restore else ""
        sources = [restored + plain_source, "fold_entities" if english_route else "fold", restored + "dense",
                   restored + "bigram"]
        weights = np.array([[route.plain, route.folded, route.dense, route.pairs]])
        return fused_rank_matrix(searcher, sources, questions, weights, route.fusion, route.rrf_k)[0]

    for qset in sets:
        searcher = searchers[qset.corpus]
        by_kind: dict[str, list[int]] = {}
        for i, q in enumerate(qset.questions):
            by_kind.setdefault(detect_query_kind(q.text), []).append(i)
        ranks = np.full(len(qset.questions), np.inf)
        for kind, idx in by_kind.items():
            subset = [qset.questions[i] for i in idx]
            ranks[idx] = route_ranks(searcher, subset, DEFAULT_ROUTES[kind], english_route=(kind == "en"))
        record("shipped routes, chunk-level (check)", qset, ranks)

    # --- fusion grids
    fit_name = args.fit or sets[0].name
    fit_plain_name = args.fit_plain or next((s.name for s in sets if is_plain(s) and "@" not in s.name), None)
    vi_sources = list(MAIN_SOURCES) + ["title"]
    plain_sources = ["r:words", "r:syl", "fold", "r:dense", "r:title"]
    grid = weight_grid(len(MAIN_SOURCES), title=True)
    fitted: dict[str, dict] = {}

    def sources_for(qset: QuestionSet) -> list[str]:
        return plain_sources if is_plain(qset) else vi_sources

    def fit(qset: QuestionSet, label: str, sources: list[str] | None = None,
            fusions: Sequence[tuple[str, int]] = FUSIONS) -> None:
        """Try every fusion and weight on `qset`; remember the best, its neighbours and a 2-fold check."""
        searcher = searchers[qset.corpus]
        sources = sources or sources_for(qset)
        gold_of = [q.gold for q in qset.questions]
        articles = sorted(set(gold_of))
        fold_of = {a: i % 2 for i, a in enumerate(np.random.default_rng(args.seed).permutation(articles))}
        folds = np.array([fold_of[g] for g in gold_of])
        best_overall = None
        for fusion, rrf_k in fusions:
            started = time.perf_counter()
            ranks = fused_rank_matrix(searcher, sources, qset.questions, grid, fusion, rrf_k)
            score = objective(ranks)
            best = int(np.argmax(score))
            neighbours = [i for i, w in enumerate(grid)
                          if np.all(np.abs(w - grid[best]) <= 0.25 + 1e-9) and np.sum(np.abs(w - grid[best]) > 1e-9) == 1]
            r5 = (ranks <= 5).mean(axis=1)
            cv = []
            for held in (0, 1):
                chosen = int(np.argmax(objective(ranks[:, folds != held])))
                held_r5 = (ranks[:, folds == held] <= 5).mean(axis=1)
                cv.append({"weights": grid[chosen].tolist(), "held_out_R@5": float(held_r5[chosen]),
                           "oracle_held_out_R@5": float(held_r5.max())})
            name = f"{fusion}{rrf_k if fusion == 'rrf' else ''}"
            equal = int(np.flatnonzero(np.all(grid == np.array([1, 1, 1, 1, 0]), axis=1))[0])
            entry = {
                "fusion": fusion, "rrf_k": rrf_k, "sources": sources, "weights": grid[best].tolist(),
                "R@5": float(r5[best]), "metrics": metrics(ranks[best]), "equal_weights_R@5": float(r5[equal]),
                "neighbours_R@5": {"min": float(r5[neighbours].min()), "mean": float(r5[neighbours].mean()),
                                   "n": len(neighbours)},
                "top20_R@5_range": [float(np.sort(r5)[-20]), float(r5.max())],
                "two_fold": cv, "seconds": time.perf_counter() - started,
            }
            fitted[f"{label} {name}"] = entry
            print(f"  {label} {name}: best {grid[best].tolist()} R@5 {r5[best]:.3f} (equal {r5[equal]:.3f}; "
                  f"neighbours min {r5[neighbours].min():.3f}); 2-fold held-out "
                  f"{[round(c['held_out_R@5'], 3) for c in cv]} in {entry['seconds']:.0f} s", flush=True)
            if best_overall is None or score[best] > best_overall[0]:
                best_overall = (score[best], fusion, rrf_k, grid[best])
        assert best_overall is not None
        fitted[f"{label} best"] = {"fusion": best_overall[1], "rrf_k": best_overall[2],
                                   "weights": best_overall[3].tolist(), "sources": sources}

    print(f"fitting fusion weights on {fit_name} (accented) and {fit_plain_name} (without diacritics)", flush=True)
    fit(next(s for s in sets if s.name == fit_name), "vi")
    if fit_plain_name:
        fit(next(s for s in sets if s.name == fit_plain_name), "vi_plain")

    # Alternatives without pyvi at query time: A (bigram field for words) and B (max-match questions).
    a_sources = ["bigram", "syl", "fold", "dense", "title"]
    a_plain_sources = ["r:bigram", "r:syl", "fold", "r:dense", "r:title"]
    b_sources = ["mm", "syl", "fold", "dense", "title"]
    b_plain_sources = ["r:mm", "r:syl", "fold", "r:dense", "r:title"]
    fit_set = next(s for s in sets if s.name == fit_name)
    print("fitting A (bigram field) and B (max-match) fusions", flush=True)
    fit(fit_set, "A", a_sources)
    fit(fit_set, "B", b_sources, fusions=(("score", 0),))
    if fit_plain_name:
        fit(next(s for s in sets if s.name == fit_plain_name), "A_plain", a_plain_sources, fusions=(("score", 0),))

    def apply(qset: QuestionSet, label: str, key: str, sources: list[str] | None = None) -> None:
        spec = fitted[key]
        weights = np.array([spec["weights"]])
        ranks = fused_rank_matrix(searchers[qset.corpus], sources or sources_for(qset), qset.questions, weights,
                                  spec["fusion"], spec["rrf_k"])[0]
        record(label, qset, ranks)

    equal_specs = {
        "RRF k=60, equal {words,syl,fold,dense}": ("rrf", 60),
        "score fusion, equal {words,syl,fold,dense}": ("score", 0),
    }
    for qset in sets:
        if english(qset):
            continue
        sources = sources_for(qset)
        for label, (fusion, rrf_k) in equal_specs.items():
            ranks = fused_rank_matrix(searchers[qset.corpus], sources, qset.questions,
                                      np.array([[1.0, 1.0, 1.0, 1.0, 0.0]]), fusion, rrf_k)[0]
            record(label + (" (restored)" if is_plain(qset) else ""), qset, ranks)
        for fusion in ("score", "rrf20", "rrf60"):
            apply(qset, f"fitted {fusion} (vi weights)", f"vi {fusion}")
        apply(qset, "fitted best (vi weights)", "vi best")
        if fit_plain_name and is_plain(qset):
            apply(qset, "fitted best (vi_plain weights, restored)", "vi_plain best")
        # Title weighting inside the fusion: the vi best with its title weight set to 0.
        spec = dict(fitted["vi best"])
        spec["weights"] = spec["weights"][:4] + [0.0]
        fitted["vi best, no title field"] = spec
        apply(qset, "fitted best, title field off", "vi best, no title field")
        if is_plain(qset):
            if fit_plain_name:
                apply(qset, "A: fitted best (A_plain weights, restored; bigram for words)", "A_plain best",
                      a_plain_sources)
                apply(qset, "A: fitted best (A vi weights, restored; bigram for words)", "A best", a_plain_sources)
                apply(qset, "C: previous best (vi_plain weights, restored), max-match for pyvi", "vi_plain best",
                      b_plain_sources)
        else:
            apply(qset, "A: fitted best (A weights; bigram for words)", "A best", a_sources)
            apply(qset, "B: previous best (vi weights), max-match for pyvi", "vi best", b_sources)
            apply(qset, "B: refit (B weights), max-match for pyvi", "B best", b_sources)

    # --- the recommended design: route by kind, evaluated on every set
    def design_ranks(qset: QuestionSet, vi_key: str = "vi best", vi_src: list[str] | None = None,
                     plain_key: str = "vi_plain best", plain_src: list[str] | None = None) -> np.ndarray:
        searcher = searchers[qset.corpus]
        ranks = np.full(len(qset.questions), np.inf)
        by_kind: dict[str, list[int]] = {}
        for i, q in enumerate(qset.questions):
            by_kind.setdefault(detect_query_kind(q.text), []).append(i)
        for kind, idx in by_kind.items():
            subset = [qset.questions[i] for i in idx]
            if kind == "en":
                ranks[idx] = route_ranks(searcher, subset, DEFAULT_ROUTES["en"], english_route=True)
                continue
            spec = fitted[plain_key if kind == "vi_plain" and plain_key in fitted else vi_key]
            sources = (plain_src or plain_sources) if kind == "vi_plain" else (vi_src or vi_sources)
            ranks[idx] = fused_rank_matrix(searcher, sources, subset, np.array([spec["weights"]]),
                                           spec["fusion"], spec["rrf_k"])[0]
        return ranks

    for qset in sets:
        record("DESIGN: routed fitted fusion (+restoration)", qset, design_ranks(qset))
        record("DESIGN-A: routed, bigram field for pyvi words (A / A_plain weights)", qset,
               design_ranks(qset, "A best", a_sources, "A_plain best", a_plain_sources))
        record("DESIGN-B/C: routed, max-match questions (previous weights)", qset,
               design_ranks(qset, "vi best", b_sources, "vi_plain best", b_plain_sources))

    # --- restoration accuracy
    restoration: dict[str, dict] = {}
    for qset in sets:
        if not qset.accented:
            continue
        typed = {q.qid: q.text for q in qset.questions}
        restorer = corpora[qset.corpus].restorer
        restoration[qset.name] = {
            "none (as typed)": restoration_accuracy(lambda t: t, qset.accented, typed),
            "most frequent form": restoration_accuracy(
                lambda t, r=restorer: _WORD_RUN.sub(lambda m: (r.candidates(m.group()) or [m.group()])[0]
                                                    if not has_diacritics(m.group()) else m.group(), t),
                qset.accented, typed),
            "bigram Viterbi, corpus only": restoration_accuracy(
                corpora[qset.corpus].restorer_corpus_only.restore, qset.accented, typed),
            f"bigram Viterbi + question phrases x{args.question_weight} (used)": restoration_accuracy(
                restorer.restore, qset.accented, typed),
        }
        from pyvi import ViUtils

        def pyvi_accents(text: str) -> str:
            try:
                return ViUtils.add_accents(text)
            except KeyError:  # its feature lookup fails on some inputs ('bb'): count as not restored
                return text

        restoration[qset.name]["pyvi ViUtils.add_accents (first 300)"] = restoration_accuracy(
            pyvi_accents, dict(list(qset.accented.items())[:300]), typed)

    # --- max-match against pyvi, on the questions as asked (restored first when without diacritics)
    agreement: dict[str, dict[str, float]] = {}
    pyvi = segmenters["words"]
    for qset in sets:
        if english(qset):
            continue
        corpus, searcher = corpora[qset.corpus], searchers[qset.corpus]
        texts = [searcher.restored(q.text) if is_plain(qset) else q.text for q in qset.questions]
        assert corpus.maxmatch is not None
        agreement[qset.name] = segmentation_agreement((corpus.maxmatch.segment(t), pyvi.segment(t)) for t in texts)

    # --- latency on the largest corpus
    largest = max(corpora.values(), key=lambda c: c.n_chunks)
    big_searcher = Searcher(largest, vectors, segmenters)
    sample_set = next(s for s in sets if s.corpus == largest.name and not english(s) and not is_plain(s))
    sample = [q.text for q in sample_set.questions[:200]]
    plain_sample = [fold_diacritics(t) for t in sample]
    latency: dict[str, float] = {}
    for source in ("syl", "fold", "syl_notitle", "title", "dense", *segmenters, "bigram (+tokenising)",
                   "mm (+max-match)"):
        source = source.split(" ")[0]
        latency[{"bigram": "bigram (+tokenising)", "mm": "mm (+max-match)"}.get(source, source)] = time_per_query(
            lambda t, s=source: Searcher._search(big_searcher, s, t), sample)
    latency["restore"] = time_per_query(largest.restorer.restore, plain_sample)
    assert largest.maxmatch is not None
    latency["max-match segmenting"] = time_per_query(largest.maxmatch.segment, sample)
    latency["bigram tokenising"] = time_per_query(bigram_tokens, sample)
    for name, segmenter in segmenters.items():
        latency[f"{name} segmenting"] = segmenter.time_queries(sample)
    fresh = [f"{t} ?" for t in sample[:40]]
    started = time.perf_counter()
    for text in fresh:
        embedder.embed_queries([text])
    latency["query embedding (model)"] = 1000 * (time.perf_counter() - started) / len(fresh)
    spec = fitted["vi best"]
    latency["fusion step"] = time_per_query(
        lambda t: fused_ranks([big_searcher.ranked(s, t) for s in vi_sources], np.array([spec["weights"]]),
                              spec["fusion"], spec["rrf_k"], largest.article_index, 0), sample)
    for label, key, srcs in (("fusion step, A", "A best", a_sources), ("fusion step, B", "vi best", b_sources)):
        spec = fitted[key]
        latency[label] = time_per_query(
            lambda t, spec=spec, srcs=srcs: fused_ranks([big_searcher.ranked(s, t) for s in srcs],
                                                        np.array([spec["weights"]]), spec["fusion"], spec["rrf_k"],
                                                        largest.article_index, 0), sample)
    hybrid = HybridRetriever(largest.store, vectors, largest.lexical)
    latency["HybridRetriever.retrieve (cached query vector)"] = time_per_query(lambda t: hybrid.retrieve(t, 5), sample)

    big_latency: dict[str, float] = {}
    if args.latency_chunks:
        print(f"synthetic latency at {args.latency_chunks:,} chunks", flush=True)
        big_latency = synthetic_latency(largest, args.latency_chunks, sample[:100], vectors, segmenters.get("words"),
                                        args.work_dir)
    vectors.save()
    for segmenter in segmenters.values():
        segmenter.save()
    startup = startup_costs(args.work_dir)
    startup.update(load_costs(args.work_dir / "startup-largest", largest.lexical,
                              {k: largest.fields[k] for k in ("bigram", "words")}, largest.maxmatch))

    # --- print
    lines: list[str] = []
    out = lines.append
    out(f"# Retrieval quality at size ({time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - run_started:.0f} s)")
    out("")
    out("| set | articles | chunks | questions scored |")
    out("|---|---|---|---|")
    for qset in sets:
        c = corpora[qset.corpus]
        out(f"| {qset.name} | {len(c.article_names)} | {c.n_chunks} | {len(qset.questions)} |")
    for qset in sets:
        out("")
        out(f"## {qset.name}")
        out("")
        out("| method | R@1 | R@5 | R@10 | MRR@10 | |")
        out("|---|---|---|---|---|---|")
        for method, by_set in results.items():
            if qset.name in by_set:
                out(fmt_row(method, by_set[qset.name]))
    out("")
    out("## R@5 summary")
    out("")
    out("| method | " + " | ".join(s.name for s in sets) + " |")
    out("|---|" + "---|" * len(sets))
    for method, by_set in results.items():
        out(f"| {method} | " + " | ".join(f"{by_set[s.name]['R@5']:.3f}" if s.name in by_set else "-" for s in sets) + " |")
    out("")
    out("## Design checks (R@5): design minus the best single retriever of the same set")
    out("")
    out("| set | design | best single | which | margin |")
    out("|---|---|---|---|---|")
    single_names = [m for m in singles if not m.startswith("restored")]
    for qset in sets:
        design = results["DESIGN: routed fitted fusion (+restoration)"][qset.name]["R@5"]
        candidates = [(results[m][qset.name]["R@5"], m) for m in single_names if qset.name in results.get(m, {})]
        if is_plain(qset):
            candidates += [(results[m][qset.name]["R@5"], m) for m in singles if m.startswith("restored")
                           and qset.name in results.get(m, {})]
        best, which = max(candidates)
        out(f"| {qset.name} | {design:.3f} | {best:.3f} | {which} | {design - best:+.3f} |")
    out("")
    out("## Fitted fusions")
    out("")
    out("```")
    out(json.dumps(fitted, indent=1))
    out("```")
    out("")
    out("## Max-match segmentation of the questions against pyvi's (restored questions on the nodia sets)")
    out("")
    out("| set | identical questions | word precision | word recall | word F1 | n |")
    out("|---|---|---|---|---|---|")
    for name, a in agreement.items():
        out(f"| {name} | {a['identical']:.3f} | {a['precision']:.3f} | {a['recall']:.3f} | {a['F1']:.3f} | {a['n']} |")
    out("")
    out(f"## Start-up costs (cold, fresh interpreter, median of 3; index parts of the {largest.n_chunks}-chunk corpus)")
    out("")
    out("| figure | value |")
    out("|---|---|")
    for name, value in startup.items():
        out(f"| {name} | {value:,.2f} |")
    out("")
    out("## Diacritic restoration (syllables, lower-cased)")
    out("")
    out("| set | method | syllable accuracy | questions exact | n |")
    out("|---|---|---|---|---|")
    for name, by_method in restoration.items():
        for method, figures in by_method.items():
            if "error" in figures:
                out(f"| {name} | {method} | error: {figures['error']} | | |")
            else:
                out(f"| {name} | {method} | {figures['syllable_accuracy']:.3f} | {figures['exact_questions']:.3f} | {figures['n']} |")
    out("")
    out(f"## Latency, warm, ms/query, on {largest.n_chunks} chunks ({len(largest.article_names)} articles)")
    out("")
    out("| step | ms/query |")
    out("|---|---|")
    for name, value in latency.items():
        out(f"| {name} | {value:.2f} |")
    out("")
    out("## Index build, seconds, per corpus")
    out("")
    out("| corpus | chunks | syllables | step | s |")
    out("|---|---|---|---|---|")
    for c in corpora.values():
        for step, seconds in c.build_seconds.items():
            out(f"| {len(c.article_names)} articles | {c.n_chunks} | {c.n_syllables} | {step} | {seconds:.2f} |")
    out("")
    out("| segmenter | words/s (syllables per second, measured when first segmented) |")
    out("|---|---|")
    for name, segmenter in segmenters.items():
        out(f"| {segmenter.name} | {segmenter.words_per_second():,.0f} |")
    if big_latency:
        out("")
        out(f"## Synthetic corpus of {args.latency_chunks:,} chunks")
        out("")
        out("| figure | value |")
        out("|---|---|")
        for name, value in big_latency.items():
            out(f"| {name} | {value:,.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(text + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "fitted": fitted, "restoration": restoration,
                                         "latency": latency, "synthetic": big_latency, "agreement": agreement,
                                         "startup": startup}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
