"""BM25 over Vietnamese syllables, in three fields: the text as written, the text with accents folded, and
syllables plus adjacent syllable pairs (word-like units); with the diacritic model of the same texts.

Scoring and persistence are `bm25s`'s (its sparse score matrix, `get_scores`, `save`/`load`, which
write only `.npy` arrays and JSON). Building is done here, vectorised with numpy: `bm25s.BM25.index`
counts terms document by document in Python, which takes ~8 s per field at 100k chunks, while the
same matrix built from flat token-id arrays takes about a second. The folded field is derived from
the normal one at the vocabulary level (folding each distinct syllable once) instead of tokenizing
the corpus twice; the pair field reuses the syllables' postings and adds the pairs'.

Memory: the occurrences are `int32` (document, token) arrays, turned into postings by sorting them once,
and the per-occurrence arithmetic goes in slices of `_SLICE`, so the temporaries stay small beside the
corpus. The build's peak at 100k synthetic chunks went from 2.7 to 1.4 GB with the same score matrices, bit
for bit (at 1M chunks the former build was killed at 23 GB).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from array import array
from itertools import repeat
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import bm25s
import numpy as np

from index.text import RAW_TOKEN_BYTES_RE, fold_diacritics, syllable_pairs, tokenize
from retrieval.search.restore import DiacriticRestorer

log = logging.getLogger(__name__)

Field = Literal["plain", "folded", "pairs"]
# plain: syllables as written; folded: syllables without accents; pairs: syllables and adjacent pairs
# (`index.text.syllable_pairs`), the word-like field.
FIELDS: tuple[Field, ...] = ("plain", "folded", "pairs")

_FORMAT_VERSION = 3  # 2: the diacritic model saved with the fields; 3: the syllable-pair field
# Each generic question phrasing (`restore.QUESTION_PHRASES`) counts as this many sentences of the corpus:
# question words are rare in news prose. Syllable accuracy of restored questions, tuning set (ViNewsQA
# dev, 2,497 questions typed without diacritics): corpus alone .959, with the phrases .971 at 5, 20,
# 50 and 200 alike; XQuAD-vi (not tuned on) .938 -> .971.
QUESTION_PRIOR_WEIGHT = 20
_BATCH = 1024
# Occurrences or postings a vectorised build step takes at a time, so that its temporaries stay small beside
# the corpus: at 1M chunks a field has ~150M occurrences.
_SLICE = 1 << 22


class IndexedChunk(Protocol):
    """What the lexical index needs from a stored chunk."""

    chunk_id: int
    article_id: str
    text: str


class IndexedArticle(Protocol):
    """What the lexical index needs from a stored article."""

    article_id: str
    title: str
    source: str | None


class ChunkSource(Protocol):
    """The part of the index store the lexical index is built from."""

    def articles(self) -> Sequence[IndexedArticle]: ...

    def chunks(self) -> Sequence[IndexedChunk]: ...


class LexicalIndex:
    """BM25 scores of every chunk for a question, in the `plain`, `folded` or `pairs` field."""

    def __init__(
        self, chunk_ids: np.ndarray, fields: dict[Field, bm25s.BM25], article_ids: np.ndarray | None = None,
        restorer: DiacriticRestorer | None = None,
    ) -> None:
        self.chunk_ids = np.asarray(chunk_ids, dtype=np.int64)
        self.restorer = restorer  # restores accents of questions typed without them, from these texts
        # The article of each row, so that filters become a row mask without asking the store.
        self.article_ids = np.asarray(article_ids if article_ids is not None else [""] * len(self.chunk_ids), dtype=str)
        self._fields = fields
        self._row_of = {int(c): i for i, c in enumerate(self.chunk_ids)}
        self._idf: dict[Field, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(
        cls,
        chunk_ids: Sequence[int],
        texts: Sequence[str],
        article_ids: Sequence[str] | None = None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> LexicalIndex:
        """Index `texts[i]` under `chunk_ids[i]` (a chunk of article `article_ids[i]`)."""
        if len(chunk_ids) != len(texts) or (article_ids is not None and len(article_ids) != len(texts)):
            raise ValueError("chunk_ids, texts and article_ids differ in length")
        vocab, doc_of, token_of = _tokenize_corpus(texts)
        n_docs = len(texts)
        doc_len = np.bincount(doc_of, minlength=n_docs)
        tok, doc, tf = _postings(doc_of, token_of, n_docs)
        del doc_of, token_of
        plain = _bm25(tok, doc, tf, doc_len, vocab, k1=k1, b=b)
        folded_vocab, fold_map = _fold_vocabulary(vocab)
        folded = _bm25(*_merge_postings(fold_map[tok], doc, tf, n_docs), doc_len, folded_vocab, k1=k1, b=b)
        pair_vocab, pair_doc_of, pair_token_of = _pair_tokens(texts, len(vocab))
        doc_len += np.bincount(pair_doc_of, minlength=n_docs)
        # Pair ids follow the syllable ids, so the syllables' postings and the pairs' put end to end are
        # still ordered by (token, document).
        pair_tok, pair_doc, pair_tf = _postings(pair_doc_of, pair_token_of, n_docs)
        del pair_doc_of, pair_token_of
        pairs = _bm25(np.concatenate([tok, pair_tok]), np.concatenate([doc, pair_doc]), np.concatenate([tf, pair_tf]),
                      doc_len, vocab + pair_vocab, k1=k1, b=b)
        del tok, doc, tf, pair_tok, pair_doc, pair_tf
        restorer = DiacriticRestorer.build(texts, question_weight=QUESTION_PRIOR_WEIGHT)
        fields = {"plain": plain, "folded": folded, "pairs": pairs}
        return cls(np.asarray(chunk_ids, dtype=np.int64), fields, article_ids, restorer)

    @classmethod
    def from_store(cls, store: ChunkSource) -> LexicalIndex:
        """Index every chunk of the store with its article's title and source prepended.

        The title names the topic; the outlet often names the province (`Báo Quảng Ngãi`), which
        cleaning takes out of the text.
        """
        heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in store.articles()}
        chunks = store.chunks()
        texts = [f"{heads.get(c.article_id, '')}\n{c.text}" for c in chunks]
        chunk_ids, article_ids = [c.chunk_id for c in chunks], [c.article_id for c in chunks]
        del chunks  # the texts are all the build needs: at 1M chunks the chunk objects are ~1.5 GB more
        return cls.build(chunk_ids, texts, article_ids)

    def save(self, directory: Path) -> None:
        """Write the index as `.npy` arrays and JSON (no pickle) under `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "chunk_ids.npy", self.chunk_ids, allow_pickle=False)
        np.save(directory / "article_ids.npy", self.article_ids, allow_pickle=False)
        for name, bm25 in self._fields.items():
            bm25.save(str(directory / name), allow_pickle=False)
        if self.restorer is not None:
            (directory / "restorer.json").write_text(self.restorer.to_json(), encoding="utf-8")
        (directory / "lexical.json").write_text(
            json.dumps({"format": _FORMAT_VERSION, "n_chunks": len(self.chunk_ids)}), encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Read an index written by `save` (its score arrays memory-mapped: a question reads only the postings
        of its tokens); raises `FileNotFoundError`/`ValueError` when absent or stale."""
        meta = json.loads((directory / "lexical.json").read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT_VERSION:
            raise ValueError(f"lexical index format {meta.get('format')} is not {_FORMAT_VERSION}")
        chunk_ids = np.load(directory / "chunk_ids.npy", allow_pickle=False)
        article_ids = np.load(directory / "article_ids.npy", allow_pickle=False)
        fields = {name: bm25s.BM25.load(str(directory / name), allow_pickle=False, mmap=True) for name in FIELDS}
        restorer = DiacriticRestorer.from_json((directory / "restorer.json").read_text(encoding="utf-8"))
        return cls(chunk_ids, fields, article_ids, restorer)

    def restore(self, query: str) -> str:
        """`query` with the accents it was typed without restored from this corpus (unchanged without a model)."""
        return query if self.restorer is None else self.restorer.restore(query)

    def query_tokens(self, query: str, field: Field) -> list[str]:
        """The query's tokens for `field`, as the index tokenized its documents."""
        return query_tokens(query, field)

    def scores(self, query: str, field: Field, *, tokens: Sequence[str] | None = None) -> np.ndarray:
        """BM25 score of every chunk (row order of `chunk_ids`); zeros when no query token is known."""
        bm25 = self._fields[field]
        ids = bm25.get_tokens_ids(list(tokens if tokens is not None else self.query_tokens(query, field)))
        if not ids:
            return np.zeros(len(self.chunk_ids), dtype=np.float32)
        return bm25.get_scores_from_ids(ids)

    def search(
        self,
        query: str,
        k: int,
        *,
        field: Field = "plain",
        allowed: np.ndarray | None = None,
        tokens: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """The `k` best (chunk_id, score) pairs with a positive score; `allowed` is a boolean row mask."""
        scores = self.scores(query, field, tokens=tokens)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        return [(int(self.chunk_ids[i]), float(scores[i])) for i in top_rows(scores, k)]

    def article_of(self, chunk_id: int) -> str | None:
        """The article a chunk belongs to (None for an unknown chunk)."""
        row = self._row_of.get(chunk_id)
        return None if row is None else str(self.article_ids[row])

    def article_mask(self, article_ids: set[str]) -> np.ndarray:
        """Boolean row mask of the chunks whose article is in `article_ids`."""
        return np.isin(self.article_ids, np.array(sorted(article_ids), dtype=str))

    def idf(self, token: str, field: Field = "folded") -> float:
        """Inverse document frequency of a token (0 for a token the corpus never uses)."""
        if field not in self._idf:
            self._idf[field] = _idf_per_token(self._fields[field])
        token_id = self._fields[field].vocab_dict.get(token)
        return 0.0 if token_id is None else float(self._idf[field][token_id])


def query_tokens(query: str, field: Field) -> list[str]:
    """A query's tokens for `field`, as the lexical fields tokenize documents (here and in the PostgreSQL store)."""
    if field == "pairs":
        return tokenize(query) + syllable_pairs(query)
    return tokenize(query, fold=(field == "folded"))


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the `k` highest positive scores, best first (ties broken by row, for determinism)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        part = np.argpartition(-scores[positive], k - 1)[:k]
        positive = positive[part]
    order = np.lexsort((positive, -scores[positive]))
    return positive[order]


def _tokenize_corpus(texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Flat (document, token id) `int32` arrays for a corpus, with the vocabulary; same tokens as `tokenize`."""
    raw_vocab: dict[bytes, int] = {}
    raw_ids = array("i")
    lengths = np.zeros(len(texts), dtype=np.int64)
    for first in range(0, len(texts), _BATCH):
        batch = [
            RAW_TOKEN_BYTES_RE.findall(text.lower().encode("utf-8"))
            for text in texts[first : first + _BATCH]
        ]
        # Only new distinct tokens cost Python bytecode; the per-token mapping runs in C.
        for token in set().union(*batch).difference(raw_vocab):
            raw_vocab[token] = len(raw_vocab)
        for offset, raw in enumerate(batch):
            lengths[first + offset] = len(raw)
            raw_ids.extend(map(raw_vocab.__getitem__, raw))
    raw_flat = np.frombuffer(raw_ids, dtype=np.int32) if raw_ids else np.zeros(0, dtype=np.int32)
    raw_ends = np.cumsum(lengths)

    # Each raw token becomes 0..n real tokens (its words, plus the digits-only form of a number).
    vocab: dict[str, int] = {}
    expansion_ptr = np.zeros(len(raw_vocab) + 1, dtype=np.int64)
    expansion: list[int] = []
    for raw_token, raw_id in raw_vocab.items():
        for token in tokenize(raw_token.decode("utf-8", errors="ignore")):
            expansion.append(vocab.setdefault(token, len(vocab)))
        expansion_ptr[raw_id + 1] = len(expansion)
    expansion_ids = np.asarray(expansion, dtype=np.int32)
    expansion_len = np.diff(expansion_ptr)
    total = sum(int(expansion_len[raw_flat[s : s + _SLICE]].sum()) for s in range(0, len(raw_flat), _SLICE))
    doc_of, token_of = np.empty(total, dtype=np.int32), np.empty(total, dtype=np.int32)
    done = 0
    for s in range(0, len(raw_flat), _SLICE):  # in slices: the temporaries are 8 bytes a raw token each
        raw = raw_flat[s : s + _SLICE]
        counts, starts = expansion_len[raw], expansion_ptr[raw]
        # Position of every output token inside its raw token's expansion, without a Python loop.
        within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        n = len(within)
        token_of[done : done + n] = expansion_ids[np.repeat(starts, counts) + within]
        docs = np.searchsorted(raw_ends, np.arange(s, s + len(raw)), side="right")
        doc_of[done : done + n] = np.repeat(docs, counts)
        done += n
    return list(vocab), doc_of, token_of


def _pair_tokens(texts: Sequence[str], first_id: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The syllable pairs of each text as flat (document, token id) `int32` arrays, ids from `first_id` on."""
    vocab: dict[str, int] = {}
    doc_of, token_of = array("i"), array("i")
    for doc, text in enumerate(texts):
        ids = [vocab.setdefault(pair, first_id + len(vocab)) for pair in syllable_pairs(text.lower())]
        token_of.extend(ids)
        doc_of.extend(repeat(doc, len(ids)))
    return list(vocab), np.frombuffer(doc_of, dtype=np.int32), np.frombuffer(token_of, dtype=np.int32)


def _fold_vocabulary(vocab: list[str]) -> tuple[list[str], np.ndarray]:
    """The folded vocabulary and, for each normal token id, its folded token id."""
    folded: dict[str, int] = {}
    fold_map = np.fromiter(
        (folded.setdefault(fold_diacritics(token), len(folded)) for token in vocab), dtype=np.int32, count=len(vocab)
    )
    return list(folded), fold_map


def _postings(doc_of: np.ndarray, token_of: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (token, document, term frequency) of flat token occurrences, ordered by token then document."""
    keys = token_of.astype(np.int64)
    keys *= max(n_docs, 1)
    keys += doc_of
    keys.sort()
    return _runs(keys, None, n_docs)


def _merge_postings(tok: np.ndarray, doc: np.ndarray, tf: np.ndarray, n_docs: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Postings whose tokens were mapped onto fewer (several to one per document, as folding does), summed."""
    keys = tok.astype(np.int64)
    keys *= max(n_docs, 1)
    keys += doc
    order = np.argsort(keys, kind="stable")
    return _runs(keys[order], tf[order], n_docs)


def _runs(keys: np.ndarray, tf: np.ndarray | None, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token, document, summed tf) of each run of equal sorted keys token * n_docs + document (`tf` None: each
    key is one occurrence)."""
    if len(keys) == 0:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty, empty
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    del first
    unique = keys[starts]
    if tf is None:
        summed = np.diff(np.append(starts, len(keys))).astype(np.int32)
    else:
        summed = np.add.reduceat(tf, starts).astype(np.int32)
    return (unique // max(n_docs, 1)).astype(np.int32), (unique % max(n_docs, 1)).astype(np.int32), summed


def _bm25(tok: np.ndarray, doc: np.ndarray, tf: np.ndarray, doc_len: np.ndarray, vocab: list[str], *,
          k1: float, b: float) -> bm25s.BM25:
    """A `bm25s.BM25` (Lucene variant) whose score matrix is computed from postings ordered by (token, document)."""
    n_docs = len(doc_len)
    df = np.bincount(tok, minlength=len(vocab))
    doc_len = doc_len.astype(np.float64)
    avg_len = max(float(doc_len.mean()) if n_docs else 0.0, 1.0)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    data = np.empty(len(tf), dtype=np.float32)
    for s in range(0, len(tf), _SLICE):  # in slices: float64 temporaries of the whole corpus would double its peak
        t = tf[s : s + _SLICE]
        data[s : s + _SLICE] = idf[tok[s : s + _SLICE]] * (t / (k1 * (1 - b + b * doc_len[doc[s : s + _SLICE]] / avg_len) + t))
    bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
    # Ordered by (token, document), the postings already are the columns of bm25s's CSC score matrix.
    bm25.scores = {
        "data": data,
        "indices": doc,
        "indptr": np.concatenate([[0], np.cumsum(df)]).astype(np.int64),
        "num_docs": n_docs,
    }
    bm25.vocab_dict = {token: i for i, token in enumerate(vocab)}
    bm25.unique_token_ids_set = set(bm25.vocab_dict.values())
    bm25.nonoccurrence_array = None
    return bm25


def _idf_per_token(bm25: bm25s.BM25) -> np.ndarray:
    """Lucene IDF per token id, recomputed from the document frequencies in the score matrix."""
    df = np.diff(np.asarray(bm25.scores["indptr"]))
    n_docs = int(bm25.scores["num_docs"])
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


# ---------------------------------------------------------------------------- saved with an index generation

SAVED_FOLDER = "lexical"  # the saved BM25 index, a folder inside the store generation
# What numpy, json and bm25s raise on a cut-off or overwritten file (EOFError: an empty .npy).
_DAMAGE = (OSError, ValueError, EOFError, KeyError)


class GenerationStore(ChunkSource, Protocol):
    """An index generation: a folder that never changes once written, and its chunk count."""

    @property
    def directory(self) -> Path: ...

    def chunk_count(self) -> int: ...


def open_lexical_index(store: GenerationStore) -> LexicalIndex:
    """The BM25 index of a store generation: loaded from its folder, or built once and saved there.

    A generation never changes once written, so a lexical index saved inside it stays consistent with it.
    A saved index that is damaged is only a cache: it is rebuilt from the store and replaced.
    """
    folder = store.directory / SAVED_FOLDER
    try:
        lexical = LexicalIndex.load(folder)
        problem = _mismatch(lexical, store.chunk_count())
        if problem is None:
            return lexical
        log.warning("rebuilding the lexical index in %s: %s", folder, problem)
    except FileNotFoundError:
        log.info("building the lexical index of %s", store.directory)
    except _DAMAGE as reason:
        log.warning("rebuilding the unreadable lexical index in %s (%s)", folder, reason)
    lexical = LexicalIndex.from_store(store)
    partial = store.directory / f"{SAVED_FOLDER}.{os.getpid()}.partial"
    stale = store.directory / f"{SAVED_FOLDER}.{os.getpid()}.stale"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        lexical.save(partial)
        if folder.exists():  # a damaged save: os.replace cannot overwrite a folder, so move it aside first
            os.replace(folder, stale)
        os.replace(partial, folder)  # readers see the old folder, no folder, or the complete new one
    except OSError as error:  # a read-only index still answers; it just rebuilds BM25 at each start
        log.warning("could not save the lexical index in %s: %s", folder, error)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
    return lexical


def saved_lexical_problems(store: GenerationStore) -> list[str]:
    """What is wrong with the BM25 index saved in a store generation (nothing when none is saved yet)."""
    folder = store.directory / SAVED_FOLDER
    if not folder.exists():
        return []  # built at the first question
    hint = "it is rebuilt at the next start, or run `hoidap index --rebuild`"
    try:
        lexical = LexicalIndex.load(folder)
    except _DAMAGE as reason:
        return [f"the saved BM25 index {folder} is unreadable ({reason}); {hint}"]
    problem = _mismatch(lexical, store.chunk_count())
    if problem is None and lexical.article_ids.tolist() != [chunk.article_id for chunk in store.chunks()]:
        problem = "its passages belong to other articles"
    if problem is not None:
        return [f"the saved BM25 index {folder} does not match the store: {problem}; {hint}"]
    return []


def _mismatch(lexical: LexicalIndex, n_chunks: int) -> str | None:
    """Why a loaded lexical index does not belong to a store of `n_chunks` chunks, or None when it does."""
    if len(lexical) != n_chunks or not np.array_equal(lexical.chunk_ids, np.arange(n_chunks)):
        return f"it indexes {len(lexical)} passages, the store holds {n_chunks}"
    if len(lexical.article_ids) != n_chunks:
        return f"it names the article of {len(lexical.article_ids)} passages, the store holds {n_chunks}"
    return None
