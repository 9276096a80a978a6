"""BM25 over the bundled articles: the fast builder, both fields, filters, persistence without pickle."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from retrieval.search import lexical as lexical_module
from retrieval.search.lexical import FIELDS, LexicalIndex, _tokenize_corpus, query_tokens, top_rows
from index.text import fold_diacritics, syllable_pairs, tokenize
from tests.unit.retrieval_fakes import FakeStore, bundled_articles

ARTICLE_2023 = "004_8775d9b0c7bf92f4"


@pytest.fixture(scope="module")
def lexical(store: FakeStore) -> LexicalIndex:
    return LexicalIndex.from_store(store)


def _articles_of(lexical: LexicalIndex, hits: list[tuple[int, float]]) -> list[str]:
    return [lexical.article_of(chunk_id) for chunk_id, _ in hits]


def test_fast_tokenizer_gives_the_tokens_of_tokenize() -> None:
    texts = [a.text for a in bundled_articles()] + ["“Xin chào” — đây là… 74.127 người, 87,8%; Tỉnh uỷ x2 café"]
    vocab, doc_of, token_of = _tokenize_corpus(texts)
    for i, text in enumerate(texts):
        assert sorted(vocab[t] for t in token_of[doc_of == i]) == sorted(tokenize(text))


def test_scores_equal_bm25s_own_indexing(store: FakeStore, lexical: LexicalIndex) -> None:
    heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in store.articles()}
    texts = [f"{heads[c.article_id]}\n{c.text}" for c in store.chunks()]
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([tokenize(t) for t in texts], show_progress=False)
    query = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    known = [t for t in tokenize(query) if t in reference.vocab_dict]
    assert np.allclose(lexical.scores(query, "plain"), reference.get_scores(known), atol=1e-5)


def _field_tokens(text: str, field: str) -> list[str]:
    """A document's tokens in `field`, spelled out one document at a time (what the vectorised build must match)."""
    if field == "folded":
        return [fold_diacritics(token) for token in tokenize(text)]
    if field == "pairs":
        return tokenize(text) + syllable_pairs(text.lower())
    return tokenize(text)


QUESTIONS = ("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?",
             "tong so dang vien toan dang bo tinh nam 2023 la bao nhieu", "Ai chủ trì hội nghị?")


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_scores_as_bm25s_indexing_its_tokens(store: FakeStore, lexical: LexicalIndex, field: str) -> None:
    heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in store.articles()}
    texts = [f"{heads[c.article_id]}\n{c.text}" for c in store.chunks()]
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([_field_tokens(t, field) for t in texts], show_progress=False)
    for question in QUESTIONS:
        known = [t for t in query_tokens(question, field) if t in reference.vocab_dict]
        assert known, question
        assert np.allclose(lexical.scores(question, field), reference.get_scores(known), atol=1e-5)


def test_the_build_in_small_slices_gives_the_same_index(store: FakeStore, lexical: LexicalIndex,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical_module, "_SLICE", 7)  # many slices over the bundled chunks, ragged at the end
    sliced = LexicalIndex.from_store(store)
    for field in FIELDS:
        for question in QUESTIONS:
            assert np.array_equal(sliced.scores(question, field), lexical.scores(question, field))


def test_accented_question_finds_the_2023_article(lexical: LexicalIndex) -> None:
    hits = lexical.search("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", 3, field="plain")
    assert _articles_of(lexical, hits)[0] == ARTICLE_2023


def test_question_without_diacritics_needs_the_folded_field(lexical: LexicalIndex) -> None:
    question = "tong so dang vien toan dang bo tinh nam 2023 la bao nhieu"
    folded = lexical.search(question, 3, field="folded")
    assert _articles_of(lexical, folded)[0] == ARTICLE_2023
    plain_scores = lexical.scores(question, "plain")
    folded_scores = lexical.scores(question, "folded")
    assert folded_scores.max() > 2 * plain_scores.max()


def test_number_typed_without_separator_matches(lexical: LexicalIndex) -> None:
    hits = lexical.search("74127", 1)
    assert _articles_of(lexical, hits) == [ARTICLE_2023]


def test_unknown_words_give_no_hits(lexical: LexicalIndex) -> None:
    assert lexical.search("xylophone zzz", 5) == []
    assert lexical.search("", 5) == []


def test_allowed_mask_filters_articles(lexical: LexicalIndex) -> None:
    mask = lexical.article_mask({"001_f6c7d3c508b4bd76"})
    hits = lexical.search("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023", 10, allowed=mask)
    assert hits and set(_articles_of(lexical, hits)) == {"001_f6c7d3c508b4bd76"}


def test_idf_is_lower_for_common_words(lexical: LexicalIndex) -> None:
    assert lexical.idf("dang") < lexical.idf("74127")
    assert lexical.idf("xylophone") == 0.0


def test_save_and_load_use_no_pickle(lexical: LexicalIndex, tmp_path: Path) -> None:
    lexical.save(tmp_path / "lexical")
    files = sorted(p.suffix for p in (tmp_path / "lexical").rglob("*") if p.is_file())
    assert set(files) <= {".npy", ".json"}
    for array in (tmp_path / "lexical").rglob("*.npy"):
        np.load(array, allow_pickle=False)  # raises if an array needed pickle
    loaded = LexicalIndex.load(tmp_path / "lexical")
    question = "tong so dang vien nam 2023"
    assert loaded.search(question, 5, field="folded") == lexical.search(question, 5, field="folded")
    assert loaded.article_of(0) == lexical.article_of(0)


def test_load_refuses_a_missing_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LexicalIndex.load(tmp_path / "nothing")


def test_top_rows_orders_by_score_then_row() -> None:
    scores = np.array([0.0, 2.0, 1.0, 2.0, 0.5], dtype=np.float32)
    assert top_rows(scores, 3).tolist() == [1, 3, 2]
    assert top_rows(scores, 10).tolist() == [1, 3, 2, 4]


def test_build_checks_lengths() -> None:
    with pytest.raises(ValueError):
        LexicalIndex.build([1, 2], ["một"])
