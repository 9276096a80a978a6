"""Diacritic restoration from a corpus's own bigram statistics (retrieval/restore.py).

Only the project's bundled articles (index/corpus/) and sentences written for these tests are used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.search.restore import DiacriticRestorer
from index.text import fold_diacritics, normalize_tone_marks, tokenize

BUNDLED = Path(__file__).resolve().parents[2] / "index" / "corpus"

# Written for these tests: `ban` is bàn, bán, bạn or ban depending on its neighbours.
SMALL_CORPUS = [
    "Ban Thường vụ họp bàn về kế hoạch năm 2024.",
    "Ban Thường vụ đã bàn về công tác cán bộ.",
    "Người bán hàng bán rau ngoài chợ.",
    "Bạn của tôi là giáo viên. Bạn ấy dạy toán.",
    "Năm 2023 tỉnh có 120 đảng viên mới; năm 2022 có 98.",
]


@pytest.fixture(scope="module")
def small() -> DiacriticRestorer:
    return DiacriticRestorer.build(SMALL_CORPUS)


@pytest.fixture(scope="module")
def bundled() -> DiacriticRestorer:
    return DiacriticRestorer.build(path.read_text(encoding="utf-8") for path in sorted(BUNDLED.glob("*.txt")))


def test_context_picks_the_form(small: DiacriticRestorer) -> None:
    assert small.restore("ban thuong vu hop ban ve ke hoach") == "ban thường vụ họp bàn về kế hoạch"
    assert small.restore("nguoi ban hang") == "người bán hàng"
    assert small.restore("ban cua toi") == "bạn của tôi"


def test_candidates_are_the_corpus_forms_most_frequent_first(small: DiacriticRestorer) -> None:
    candidates = small.candidates("ban")
    assert set(candidates) == {"ban", "bàn", "bán", "bạn"}
    assert candidates[0] in ("ban", "bán", "bạn")  # each seen twice, bàn twice too: only the set is certain
    assert small.candidates("BAN") == candidates
    assert small.candidates("xyz") == []


def test_case_punctuation_and_spacing_are_kept(small: DiacriticRestorer) -> None:
    assert small.restore("Ban Thuong vu  hop, ban ve ke hoach?") == "Ban Thường vụ  họp, bàn về kế hoạch?"
    assert small.restore("NGUOI BAN HANG") == "NGƯỜI BÁN HÀNG"


def test_numbers_are_context(small: DiacriticRestorer) -> None:
    assert small.restore("nam 2025 co bao nhieu dang vien moi") .startswith("năm 2025 có")


def test_accented_and_unknown_syllables_are_left_as_typed(small: DiacriticRestorer) -> None:
    # `bàn` is typed with its accent: kept, and it still serves as context.
    assert small.restore("họp bàn ve ke hoach") == "họp bàn về kế hoạch"
    assert small.restore("Resveratrol cua Zalo") == "Resveratrol của Zalo"
    assert small.restore("") == ""
    assert small.restore("  ...  ") == "  ...  "


def test_an_empty_model_changes_nothing() -> None:
    empty = DiacriticRestorer.build([])
    assert empty.restore("thu do cua nuoc phap") == "thu do cua nuoc phap"


def test_json_round_trip_gives_the_same_model(bundled: DiacriticRestorer) -> None:
    document = bundled.to_json()
    json.loads(document)  # plain JSON
    again = DiacriticRestorer.from_json(document)
    assert again.forms == bundled.forms
    assert again.bigrams == bundled.bigrams
    question = "dang uy khoi cac co quan tinh da tap trung lanh dao"
    assert again.restore(question) == bundled.restore(question)


def test_from_json_refuses_other_formats() -> None:
    with pytest.raises(ValueError):
        DiacriticRestorer.from_json(json.dumps({"format": 99, "symbols": [], "counts": [], "bigrams": []}))
    with pytest.raises(ValueError):
        DiacriticRestorer.from_json(json.dumps({"format": 1, "symbols": ["a"], "counts": [], "bigrams": []}))
    with pytest.raises(ValueError):
        DiacriticRestorer.from_json("[]")


def test_pruning_keeps_only_frequent_pairs() -> None:
    full = DiacriticRestorer.build(SMALL_CORPUS)
    pruned = DiacriticRestorer.build(SMALL_CORPUS, min_bigram_count=2)
    assert set(pruned.bigrams) < set(full.bigrams)
    assert all(count >= 2 for count in pruned.bigrams.values())
    assert pruned.forms == full.forms


def test_restores_most_syllables_of_the_bundled_articles(bundled: DiacriticRestorer) -> None:
    """In-sample (the model has seen these sentences): a check of the search, not of generalisation."""
    texts = [path.read_text(encoding="utf-8") for path in sorted(BUNDLED.glob("*.txt"))]
    sentences = [line for text in texts for line in text.splitlines() if len(line.split()) >= 8][:60]
    right = total = 0
    for sentence in sentences:
        want = [normalize_tone_marks(t) for t in tokenize(sentence, number_variants=False)]
        got = tokenize(bundled.restore(fold_diacritics(sentence)), number_variants=False)
        assert len(got) == len(want)
        right += sum(a == b for a, b in zip(want, got))
        total += len(want)
    assert right / total > 0.95


def test_restoration_beats_most_frequent_form_on_held_out_sentences() -> None:
    """Built from four bundled articles, asked about the fifth: context must help over unigram choice."""
    paths = sorted(BUNDLED.glob("*.txt"))
    model = DiacriticRestorer.build(p.read_text(encoding="utf-8") for p in paths[:-1])
    held_out = [line for line in paths[-1].read_text(encoding="utf-8").splitlines() if len(line.split()) >= 8]
    viterbi = unigram = total = 0
    for sentence in held_out:
        want = [normalize_tone_marks(t) for t in tokenize(sentence, number_variants=False)]
        folded = fold_diacritics(sentence)
        got = tokenize(model.restore(folded), number_variants=False)
        first = [(model.candidates(t) or [t])[0] for t in tokenize(folded, number_variants=False)]
        viterbi += sum(a == b for a, b in zip(want, got))
        unigram += sum(a == b for a, b in zip(want, first))
        total += len(want)
    assert total > 100
    assert viterbi > unigram


def test_question_phrases_weight_question_words(small: DiacriticRestorer) -> None:
    """Question words rare in articles (`nhiêu` of `bao nhiêu`) come from the optional phrase list."""
    assert small.restore("bao nhieu") != "bao nhiêu"  # the corpus never says `nhiêu`
    weighted = DiacriticRestorer.build(SMALL_CORPUS, question_weight=5)
    assert weighted.restore("nam 2023 co bao nhieu dang vien moi") == "năm 2023 có bao nhiêu đảng viên mới"
    assert weighted.forms["nhiêu"] >= 5


def test_has_pair_knows_side_by_side_syllables_in_any_accents_and_either_final_i_or_y() -> None:
    model = DiacriticRestorer.build(["Tỷ lệ đăng ký mới tăng. Kỹ thuật mới được áp dụng."])
    assert model.has_pair("tỷ", "lệ") and model.has_pair("ty", "le")
    assert model.has_pair("tỉ", "lệ") and model.has_pair("đăng", "kí") and model.has_pair("ki", "thuat")
    assert not model.has_pair("lệ", "tỷ")  # order counts
    assert not model.has_pair("tăng", "kỹ")  # a sentence break between them
    assert not model.has_pair("tai", "le")  # only a lone i/y after the onset has two spellings (tai is not ty)
