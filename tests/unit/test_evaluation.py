"""Every evaluation metric on hand-computed cases, the loop with fakes of our Protocols, and the shipped sets."""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from itertools import count
from pathlib import Path

import pytest

from retrieval.evaluation import (
    EvalQuestion,
    QuestionFormatError,
    best_f1,
    cited_sources,
    contains_answer,
    evaluate,
    hit_rank,
    is_correct,
    key_tokens,
    mrr_at,
    names_all,
    normalize_answer,
    parse_question,
    percentile,
    recall_at,
    summarize,
    supports,
    token_f1,
)
from retrieval.types import Answer, AnswerStream, Passage, SearchFilters, Source, Turn

ROOT = Path(__file__).resolve().parents[2]
A_2018 = "001_f6c7d3c508b4bd76"
A_2016 = "003_e35ce0b84459139b"
A_2023 = "004_8775d9b0c7bf92f4"


def source(n: int, article_id: str, text: str) -> Source:
    return Source(n=n, article_id=article_id, title="t", date=None, source=None, text=text, start=0, end=len(text), score=1.0)


# ---------------------------------------------------------------------------- normalisation and correctness


def test_normalize_answer_lowercases_strips_punctuation_and_collapses_spaces():
    assert normalize_answer("  Tổng số:  74.127 đồng chí! ") == "tổng số 74 127 đồng chí"
    assert normalize_answer("Tổng số: 74.127 (87,8%)", join_numbers=True) == "tổng số 74127 878"


def test_normalize_answer_composes_decomposed_unicode():
    decomposed = unicodedata.normalize("NFD", "Trần Thế Ngọc")
    assert decomposed != "Trần Thế Ngọc"
    assert normalize_answer(decomposed) == "trần thế ngọc"


def test_contains_answer_matches_whole_tokens_only():
    assert contains_answer("có 69 tổ chức đảng trực thuộc", "69")
    assert not contains_answer("thành lập năm 1969", "69")
    assert not contains_answer("Trần Thế Ngọcx", "Trần Thế Ngọc")


def test_contains_answer_ignores_thousands_separators_and_case():
    assert contains_answer("The province had 74,127 party members.", "74.127")
    assert contains_answer("tổng cộng 74127 đồng chí", "74.127")
    assert contains_answer("BÍ THƯ TRẦN ĐÌNH QUẾ phát biểu", "Trần Đình Quế")
    assert contains_answer("reached 87.8% of the target", "87,8%")


def test_is_correct_ignores_citation_numbers():
    assert not is_correct("Xem nguồn [2].", ["2"])
    assert is_correct("Có 22 đảng viên bị kỷ luật [1].", ["22"])
    assert is_correct("Theo [1, 3], khai trừ 2 người.", ["khai trừ 2"])
    assert not is_correct("Không tìm thấy.", ["74.127"])


def test_names_all_requires_every_gold_answer():
    golds = ["3.463", "gần 3.500"]
    assert names_all("Năm 2018 có 3.463 đảng viên [1]; năm 2016 gần 3.500 đảng viên [2].", golds)
    assert not names_all("Năm 2018 có 3.463 đảng viên [1].", golds)
    assert not names_all("anything", [])


def test_token_f1_on_hand_computed_cases():
    # 5 predicted tokens, 3 shared: precision 3/5, recall 3/3 -> F1 = 2 * .6 * 1 / 1.6
    assert token_f1("Nguyễn Minh Tiến chủ trì", "Nguyễn Minh Tiến") == pytest.approx(0.75)
    # the citation marker is not a token: precision 1/3, recall 1 -> F1 = .5
    assert token_f1("74.127 đồng chí [1]", "74,127") == pytest.approx(0.5)
    assert token_f1("không có", "817") == 0.0
    assert best_f1("817 tổ chức", ["301", "817"]) == pytest.approx(0.5)  # 1 of 3 tokens, the whole gold
    assert best_f1("anything", []) == 0.0


# ---------------------------------------------------------------------------- citations


def test_cited_sources_follow_markers_or_fall_back_to_all():
    sources = [source(1, "a", "x"), source(2, "b", "y"), source(3, "c", "z")]
    assert [s.n for s in cited_sources(Answer("Một [1], hai [3].", True, sources))] == [1, 3]
    assert [s.n for s in cited_sources(Answer("Một [1, 2].", True, sources))] == [1, 2]
    assert [s.n for s in cited_sources(Answer("Không có đánh dấu.", True, sources))] == [1, 2, 3]


def test_key_tokens_are_numbers_when_present_else_words():
    assert key_tokens("gần 3.500") == {"3500"}
    assert key_tokens("527/600") == {"527", "600"}
    assert key_tokens("Trần Đình Quế") == {"trần", "đình", "quế"}


def test_supports_by_containment_from_any_article():
    passage = source(1, "other", "Tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí.")
    assert supports(passage, ["74.127"], [A_2023])


def test_supports_by_key_tokens_only_from_a_gold_article():
    text = "Số lượng đảng viên đông (3.500 người) với nhiều loại hình."
    assert supports(source(1, A_2016, text), ["gần 3.500"], [A_2016])
    assert not supports(source(1, A_2018, text), ["gần 3.500"], [A_2016])
    assert not supports(source(1, A_2016, "Đảng ủy Khối có 70 cơ sở đảng."), ["gần 3.500"], [A_2016])


# ---------------------------------------------------------------------------- retrieval figures


def test_hit_rank_recall_and_mrr_on_hand_computed_ranks():
    assert hit_rank(["a", "b", "c", "c"], ["c"]) == 3
    assert hit_rank(["a", "b"], ["c", "b"]) == 2
    assert hit_rank(["a", "b"], ["z"]) is None
    ranks = [1, 3, None, 12]
    assert recall_at(ranks, 1) == 0.25
    assert recall_at(ranks, 5) == 0.5
    assert recall_at(ranks, 10) == 0.5
    assert recall_at(ranks, 20) == 0.75
    assert mrr_at(ranks, 10) == pytest.approx((1 + 1 / 3) / 4)
    assert math.isnan(recall_at([], 5))


def test_percentile_interpolates_linearly():
    assert percentile([40, 10, 30, 20], 50) == 25
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


# ---------------------------------------------------------------------------- question lines


def test_parse_question_accepts_both_passage_forms_and_defaults():
    one = parse_question({"id": "q1", "question": "Ai?", "answers": ["X"], "passage_id": "a"})
    assert one == EvalQuestion("q1", "Ai?", ("X",), ("a",), True, ())
    many = parse_question({"id": "q2", "question": "Ai?", "answers": ["X", "Y"], "passage_ids": ["a", "b"],
                           "answerable": True, "tags": ["conflicting"]})
    assert many.passage_ids == ("a", "b") and many.tags == ("conflicting",)
    none = parse_question({"id": "q3", "question": "Giá vàng?", "answers": [], "answerable": False})
    assert not none.answerable and none.passage_ids == ()


@pytest.mark.parametrize("record, message", [
    ({"question": "Ai?", "answers": ["X"], "passage_id": "a"}, "'id'"),
    ({"id": "q", "question": "Ai?", "answers": "X", "passage_id": "a"}, "'answers'"),
    ({"id": "q", "question": "Ai?", "answers": ["X"]}, "passage_id"),
    ({"id": "q", "question": "Ai?", "answers": ["X"], "passage_id": "a", "answerable": "yes"}, "'answerable'"),
])
def test_parse_question_says_what_is_wrong(record, message):
    with pytest.raises(QuestionFormatError, match=message) as raised:
        parse_question(record)
    assert message in raised.value.in_language("vi") and raised.value.in_language("vi") != str(raised.value)


# ---------------------------------------------------------------------------- the loop, with fakes


class FakeRetriever:
    """Returns fixed article ids per question, as passages."""

    def __init__(self, ranking: dict[str, list[str]]):
        self.ranking = ranking
        self.calls: list[tuple[str, int]] = []

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        self.calls.append((query, k))
        return [Passage(a, "t", None, None, "text", 0, 4, 1.0) for a in self.ranking[query][:k]]


class FakeAnswerer:
    """Returns a fixed answer per question."""

    def __init__(self, answers: dict[str, Answer]):
        self.answers = answers

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        return self.answers[question]

    def stream(self, question: str, history: list[Turn] | None = None) -> AnswerStream:
        return AnswerStream.of(self.answers[question])

    def warm_up(self) -> None:
        return None


def test_evaluate_scores_questions_and_aggregates_by_hand():
    questions = [
        EvalQuestion("q1", "tổng số đảng viên 2023?", ("74.127",), (A_2023,), True, ("number",)),
        EvalQuestion("q2", "có bao nhiêu đảng viên?", ("3.463", "gần 3.500"), (A_2018, A_2016), True, ("conflicting",)),
        EvalQuestion("q3", "giá vàng?", (), (), False, ("unanswerable",)),
    ]
    retriever = FakeRetriever({
        "tổng số đảng viên 2023?": [A_2023, A_2018],
        "có bao nhiêu đảng viên?": ["x", "y", A_2016],
        "giá vàng?": [A_2018],
    })
    answerer = FakeAnswerer({
        "tổng số đảng viên 2023?": Answer("Tổng số là 74.127 đồng chí [1].", True, [
            source(1, A_2023, "nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí."),
            source(2, A_2018, "không được trích"),
        ]),
        # Names one of the two values; cites one supporting and one unrelated passage.
        "có bao nhiêu đảng viên?": Answer("Có 3.463 đảng viên [1] [2].", True, [
            source(1, A_2018, "toàn Đảng bộ khối có 3.463 đảng viên"),
            source(2, "other", "Đảng ủy Khối có 70 cơ sở đảng."),
        ]),
        "giá vàng?": Answer("Không tìm thấy trong các bài báo.", False, [source(1, A_2018, "gần nhất")]),
    })
    ticks = count()
    report = evaluate(questions, retriever=retriever, answerer=answerer, k_max=20, clock=lambda: next(ticks) * 0.01)

    assert retriever.calls[0] == ("tổng số đảng viên 2023?", 20)
    q1, q2, q3 = report.results
    assert (q1.hit_rank, q1.correct, q1.cited, q1.supporting) == (1, True, [f"[1] {A_2023}"], [f"[1] {A_2023}"])
    assert (q2.hit_rank, q2.correct, q2.complete) == (3, True, False)
    assert q2.supporting == [f"[1] {A_2018}"] and len(q2.cited) == 2
    assert q3.hit_rank is None and not q3.found and q3.cited == []
    # Each call lasts one tick of 10 ms.
    assert q1.latency_ms == pytest.approx(10) and q1.retrieval_ms == pytest.approx(10)

    overall = report.overall
    assert (overall.questions, overall.answerable, overall.unanswerable) == (3, 2, 1)
    assert overall.recall_at(1) == 0.5 and overall.recall_at(5) == 1.0
    assert overall.mrr_at_10 == pytest.approx((1 + 1 / 3) / 2)
    assert overall.correct == 1.0
    assert overall.citation_precision == pytest.approx(2 / 3)
    assert overall.citation_recall == 1.0
    assert overall.not_found_when_unanswerable == 1.0
    assert overall.complete_when_conflicting == 0.0
    assert overall.token_f1 == pytest.approx((token_f1(q1.answer, "74.127") + best_f1(q2.answer, ["3.463", "gần 3.500"])) / 2)
    assert len(overall.recall_curve) == 20

    assert list(report.groups) == ["conflicting", "unanswerable", "number"]
    assert report.groups["unanswerable"].not_found_when_unanswerable == 1.0
    assert report.groups["number"].citation_precision == 1.0
    data = json.loads(json.dumps(report.to_dict()))
    assert data["overall"]["recall_at_5"] == 1.0
    assert data["groups"]["unanswerable"]["recall_at_5"] is None
    assert data["questions"][0]["citation_ok"] is True


def test_unanswerable_answered_with_a_claim_counts_against_and_cites_nothing_for_precision():
    results = evaluate(
        [EvalQuestion("u", "giá vàng?", (), (), False, ("unanswerable",))],
        retriever=FakeRetriever({"giá vàng?": ["a"]}),
        answerer=FakeAnswerer({"giá vàng?": Answer("Giá vàng là 80 triệu [1].", True, [source(1, "a", "80 triệu")])}),
    )
    summary = summarize(results.results)
    assert summary.not_found_when_unanswerable == 0.0
    assert math.isnan(summary.citation_precision) and math.isnan(summary.correct)


# ---------------------------------------------------------------------------- the shipped question sets


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_bundled_set_has_the_promised_coverage():
    questions = [parse_question(r) for r in _lines(ROOT / "eval" / "bundled" / "questions.jsonl")]
    tags = Counter(tag for q in questions for tag in q.tags)
    assert len(questions) >= 48
    assert len({q.id for q in questions}) == len(questions)
    assert tags["no-diacritics"] >= 10 and tags["english"] >= 8 and tags["conflicting"] >= 4
    unanswerable = [q for q in questions if not q.answerable]
    assert len(unanswerable) >= 8 and all("unanswerable" in q.tags for q in unanswerable)
    conflicting = [q for q in questions if "conflicting" in q.tags]
    assert all(len(q.passage_ids) >= 2 and len(q.answers) >= 2 for q in conflicting)


def test_bundled_gold_answers_occur_in_their_articles():
    articles = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "index" / "corpus").glob("*.txt")}
    for record in _lines(ROOT / "eval" / "bundled" / "questions.jsonl"):
        question = parse_question(record)
        assert set(question.passage_ids) <= set(articles), question.id
        for gold in question.answers:
            assert any(contains_answer(articles[a], gold) for a in question.passage_ids), (question.id, gold)
        if "conflicting" in question.tags:
            # Each differing value comes from its own article.
            holders = [{a for a in question.passage_ids if contains_answer(articles[a], g)} for g in question.answers]
            assert len(set().union(*holders)) >= 2, question.id


def test_xquad_subset_is_shipped_with_attribution_and_consistent():
    folder = ROOT / "eval" / "xquad_vi"
    assert "CC BY-SA 4.0" in (folder / "SOURCE.md").read_text(encoding="utf-8")
    corpus = {r["id"]: r["text"] for r in _lines(folder / "corpus.jsonl")}
    questions = [parse_question(r) for r in _lines(folder / "questions.jsonl")]
    assert len(corpus) == 150 and len(questions) == 300
    assert all(any(gold in corpus[q.passage_ids[0]] for gold in q.answers) for q in questions)


# ---------------------------------------------------------------------------- the `hoidap eval` body: inputs and outputs


def test_load_questions_names_the_file_and_line_of_a_bad_question(tmp_path):
    from bot.evaluation import load_questions
    from index.errors import UnreadableFileError

    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "question": "Ai?", "answers": ["X"], "passage_id": "p"}\n\n{"id": "b"\n', encoding="utf-8")
    with pytest.raises(UnreadableFileError, match=r"q\.jsonl, line 3"):
        load_questions(path)
    path.write_text('{"id": "a", "question": "Ai?", "answers": ["X"], "passage_id": "p"}\n' * 2, encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="used twice: a"):
        load_questions(path)


def test_eval_index_dir_is_keyed_by_corpus_content_and_model(tmp_path):
    from bot.evaluation import eval_index_dir
    from bot.settings import Settings

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "title": "t", "text": "a"}\n', encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data")
    first = eval_index_dir(settings, corpus)
    assert first.parent == tmp_path / "data" / "eval-indexes"
    assert eval_index_dir(settings, corpus) == first
    assert eval_index_dir(Settings(data_dir=tmp_path / "data", embedding_model="other"), corpus) != first
    corpus.write_text('{"id": "1", "title": "t", "text": "b"}\n', encoding="utf-8")
    assert eval_index_dir(settings, corpus) != first


def test_write_report_writes_json_markdown_and_png(tmp_path):
    from bot.evaluation import failures, render_markdown, write_report

    questions = [
        EvalQuestion("q1", "tổng số đảng viên 2023?", ("74.127",), (A_2023,), True, ("number",)),
        EvalQuestion("q2", "giá vàng?", (), (), False, ("unanswerable",)),
    ]
    report = evaluate(
        questions,
        retriever=FakeRetriever({"tổng số đảng viên 2023?": [A_2018, A_2023], "giá vàng?": [A_2018]}),
        answerer=FakeAnswerer({
            "tổng số đảng viên 2023?": Answer("Không tìm thấy.", False, []),
            "giá vàng?": Answer("Giá vàng là 80 triệu [1].", True, [source(1, A_2018, "80 triệu")]),
        }),
    )
    report.meta = {"questions_file": "eval/bundled/questions.jsonl", "answerer": "fake"}
    assert [r.id for r in failures(report)] == ["q1", "q2"]
    json_path, md_path, png_path = write_report(report, tmp_path / "out" / "r")
    assert json_path.name == "r.json"
    assert json.loads(json_path.read_text(encoding="utf-8"))["overall"]["recall_at_1"] == 0.0
    markdown = render_markdown(report)
    assert md_path.read_text(encoding="utf-8") == markdown
    assert "| all | 2 | 0.000 | 1.000 |" in markdown and "`q2` giá vàng?" in markdown
    assert png_path.read_bytes()[:4] == b"\x89PNG"
