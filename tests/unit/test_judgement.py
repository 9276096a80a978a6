"""The fitted answer judgement: the shipped JSON model loads, a malformed one is refused clearly, and the
decision follows the probability at the operating point (with the two hard rules)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from retrieval.answering.judgement import (
    DENSE_FEATURES,
    FEATURES,
    MODEL_FORMAT,
    CorpusGate,
    JudgementModel,
    JudgementModelError,
    answerability_features,
)
from retrieval.types import Passage

MEMBERS_2023 = "Tổng số đảng viên toàn Đảng bộ tỉnh đến nay là 74.127 đồng chí."


def _passage(text: str, *, article: str = "a", date: str | None = "2023-09-29", dense: float | None = 0.85) -> Passage:
    return Passage(article, "Hội nghị sơ kết", date, None, text, 0, len(text), 1.0, dense_score=dense)


def _model(**changes) -> dict:
    data = {"format": MODEL_FORMAT, "features": ["window_best", "dense"], "mean": [0.5, 0.8], "scale": [0.2, 0.05],
            "weights": [2.0, 1.0], "bias": 0.0, "threshold": 0.5, "fitted_on": "test", "operating_point": "test"}
    return {**data, **changes}


class StubEmbedder:
    """Every text the same unit vector: sentence similarities are 1."""

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    embed_sentences = embed_queries


def test_the_shipped_model_loads_and_names_its_data() -> None:
    model = JudgementModel.load()
    assert set(model.features) <= set(FEATURES)
    assert "ViNewsQA" in model.fitted_on
    assert 0 < model.threshold < 1 and model.operating_point


def test_a_model_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(_model()), encoding="utf-8")
    model = JudgementModel.load(path)
    assert JudgementModel.from_json(model.to_json()) == model


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ("{not json", "Expecting"),
        (json.dumps([1, 2]), "not a format"),
        (json.dumps(_model(format=99)), "not a format"),
        (json.dumps({k: v for k, v in _model().items() if k != "weights"}), "missing or malformed"),
        (json.dumps(_model(weights=[1.0])), "do not match"),
        (json.dumps(_model(features=["window_best", "shoe_size"])), "unknown features"),
        (json.dumps(_model(scale=[0.0, 1.0])), "non-positive scale"),
        (json.dumps(_model(threshold=1.5)), "strictly between 0 and 1"),
        (json.dumps(_model(weights=["x", 1.0])), "missing or malformed"),
    ],
)
def test_a_malformed_model_is_refused_with_a_clear_error(tmp_path: Path, broken: str, why: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(JudgementModelError) as raised:
        JudgementModel.load(path)
    assert why in str(raised.value) and str(path) in str(raised.value)
    assert "bench/judgement.py --write" in str(raised.value)
    assert raised.value.vi and "mô hình" in raised.value.vi


def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JudgementModelError):
        JudgementModel.load(tmp_path / "absent.json")


def test_english_questions_may_have_their_own_operating_point() -> None:
    model = JudgementModel.from_json(_model(english_threshold=0.25))
    assert model.threshold_for("en") == 0.25 and model.threshold_for("vi") == model.threshold_for("vi_plain") == 0.5
    assert JudgementModel.from_json(_model()).threshold_for("en") == 0.5
    with pytest.raises(JudgementModelError, match="strictly between"):
        JudgementModel.from_json(_model(english_threshold=0.0))


def test_the_probability_is_the_logistic_of_the_standardised_features() -> None:
    model = JudgementModel.from_json(_model())
    assert model.probability({"window_best": 0.5, "dense": 0.8}) == pytest.approx(0.5)
    assert model.probability({"window_best": 0.9, "dense": 0.8}) == pytest.approx(1 / (1 + math.exp(-4.0)))
    assert model.probability({"window_best": 0.1, "dense": 0.8}) < 0.5


def test_the_gate_answers_at_the_operating_point_and_keeps_the_hard_rules() -> None:
    gate = CorpusGate(None, model=JudgementModel.from_json(_model()))
    question = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    judged = gate.judge(question, [_passage(MEMBERS_2023)])
    assert judged.supported == (judged.probability >= gate.model.threshold)
    assert judged.features["window_best"] > 0.8 and judged.supported
    # A stricter operating point refuses the same passages.
    assert not CorpusGate(None, model=gate.model, threshold=0.999999).judge(question, [_passage(MEMBERS_2023)]).supported
    # Hard rules: no passages; the reader's present asked of dated articles; the question's names found nowhere.
    assert not gate("Tổng số đảng viên là bao nhiêu?", [])
    assert not gate("Tổng số đảng viên toàn Đảng bộ tỉnh hiện nay là bao nhiêu?", [_passage(MEMBERS_2023)])
    assert not gate("Tổng số đảng viên của tỉnh Bình Dương là bao nhiêu?", [_passage(MEMBERS_2023)])


def test_a_model_reading_sentence_similarity_needs_the_embedder() -> None:
    dense = sorted(DENSE_FEATURES)[0]
    model = JudgementModel.from_json(_model(features=[dense, "dense"]))
    with pytest.raises(ValueError, match="embedder"):
        CorpusGate(None, model=model)
    assert CorpusGate(None, StubEmbedder(), model=model).judge("Có bao nhiêu đảng viên?", [_passage(MEMBERS_2023)]).features[dense] == pytest.approx(1.0)


def test_features_measure_the_rarer_words_of_the_question() -> None:
    question = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    here, _ = answerability_features(question, [_passage(MEMBERS_2023)], idf=lambda t: 1.0)
    elsewhere, _ = answerability_features(question, [_passage("Hội nghị tổng kết công tác năm.")], idf=lambda t: 1.0)
    assert here["window_best"] > elsewhere["window_best"]
    assert here["longest_run"] > elsewhere["longest_run"]
    assert here["rare_best"] >= elsewhere["rare_best"]
    assert set(FEATURES) <= set(here)
    unseen, _ = answerability_features("Giá xổ số kiến thiết?", [_passage(MEMBERS_2023)], idf=lambda t: 0.0)
    assert unseen["unseen_share"] == 1.0


class CountingStubEmbedder(StubEmbedder):
    """StubEmbedder that counts the sentences it is asked to embed."""

    def __init__(self) -> None:
        self.sentences = 0

    def embed_sentences(self, texts: list[str]) -> np.ndarray:
        self.sentences += len(texts)
        return self.embed_queries(texts)


def test_the_gate_embeds_no_sentence_when_a_hard_rule_already_refuses() -> None:
    embedder = CountingStubEmbedder()
    gate = CorpusGate(None, embedder)  # the shipped model reads sentence similarities
    assert DENSE_FEATURES & set(gate.model.features)
    elsewhere = "Tổng số đảng viên của tỉnh Bình Dương là bao nhiêu?"  # its province is in no passage
    assert gate.judge(elsewhere, [_passage(MEMBERS_2023)]).measured.refuted
    embedder.sentences = 0
    assert not gate(elsewhere, [_passage(MEMBERS_2023)]) and not gate(elsewhere, [])
    assert embedder.sentences == 0
    # Otherwise the call is the judgement, sentence similarities included.
    asked = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    judged = gate.judge(asked, [_passage(MEMBERS_2023)])
    assert not judged.measured.refuted and embedder.sentences == 1
    assert gate(asked, [_passage(MEMBERS_2023)]) == judged.supported and embedder.sentences == 2
