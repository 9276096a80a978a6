"""The real CLI over a real index of the bundled articles: `hoidap ask --json` and `hoidap chat`."""

from __future__ import annotations

import json

import pexpect
import pytest

from index.store import IndexStore
from tests.conftest import HOIDAP, cli_env, run_cli

pytestmark = pytest.mark.e2e

ARTICLE_2023 = "004_8775d9b0c7bf92f4"
ARTICLE_2018 = "001_f6c7d3c508b4bd76"
ARTICLE_2016 = "003_e35ce0b84459139b"
QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"


def ask(settings, question: str) -> dict:
    result = run_cli(["ask", "--json", question], settings)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object, nothing else on stdout
    return json.loads(lines[0])


def check_sources(settings, reply: dict) -> None:
    """Every cited passage is the exact span of its cleaned article, numbered 1..n."""
    store = IndexStore.open(settings.index_dir)
    assert [s["n"] for s in reply["sources"]] == list(range(1, len(reply["sources"]) + 1))
    for source in reply["sources"]:
        assert set(source) == {"n", "article_id", "title", "date", "source", "text", "start", "end", "score", "url"}
        article = store.article(source["article_id"])
        assert source["url"] == article.url  # None for files, the page's canonical URL for web articles
        assert article.text[source["start"]:source["end"]] == source["text"]
        assert source["title"] == article.title and source["date"] == article.date
    store.close()


@pytest.mark.parametrize("question", [
    QUESTION,
    "Tong so dang vien toan Dang bo tinh nam 2023 la bao nhieu?",
])
def test_party_members_2023_answered_with_citation(built_index_settings, question: str) -> None:
    reply = ask(built_index_settings, question)
    assert reply["found"] is True
    assert "74.127" in reply["answer"]
    assert "[1]" in reply["answer"] or "[2]" in reply["answer"]
    cited = [s for s in reply["sources"] if "74.127" in s["text"]]
    assert cited and cited[0]["article_id"] == ARTICLE_2023 and cited[0]["date"] == "2023-09-29"
    check_sources(built_index_settings, reply)


def test_an_english_question_is_answered_in_english_from_the_right_article(built_index_settings) -> None:
    """English is read by the English reader's similarity of the question to each sentence (no glossary of
    the articles' vocabulary): the sentence with the members' figure, not the organisations' one beside it.
    Written "party members": a capitalised English word is taken for a name, and "Party members ... Party
    Committee" would have most of its names missing from every passage."""
    reply = ask(built_index_settings, "What was the total number of party members in the provincial Party Committee in 2023?")
    assert reply["found"] is True
    assert reply["answer"].startswith("According to «")
    assert reply["sources"][0]["article_id"] == ARTICLE_2023
    assert "74.127" in reply["answer"] and any("74.127" in s["text"] for s in reply["sources"])
    check_sources(built_index_settings, reply)


def test_gold_price_is_not_found(built_index_settings) -> None:
    reply = ask(built_index_settings, "Giá vàng hôm nay là bao nhiêu?")
    assert reply["found"] is False
    assert "74.127" not in reply["answer"]
    check_sources(built_index_settings, reply)


def test_disagreeing_articles_are_both_named(built_index_settings) -> None:
    reply = ask(built_index_settings, "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert reply["found"] is True
    assert "3.463" in reply["answer"] and "3.500" in reply["answer"]
    cited = {s["article_id"] for s in reply["sources"]}
    assert {ARTICLE_2018, ARTICLE_2016} <= cited
    assert "2018" in reply["answer"] and "2016" in reply["answer"]
    check_sources(built_index_settings, reply)


def test_plain_text_ask_shows_answer_and_sources(built_index_settings) -> None:
    result = run_cli(["ask", QUESTION], built_index_settings)
    assert result.returncode == 0, result.stderr
    assert "74.127" in result.stdout and "[1]" in result.stdout
    assert "\x1b[" not in result.stdout  # piped: no colour codes


def test_chat_in_a_terminal(built_index_settings) -> None:
    # A real terminal answers cursor-position requests; pexpect does not, so tell prompt_toolkit not to ask.
    env = cli_env(built_index_settings, TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(HOIDAP[0], HOIDAP[1:] + ["chat"], env=env, encoding="utf-8", timeout=180,
                          cwd=str(built_index_settings.data_dir.parent), dimensions=(50, 200))
    try:
        child.expect("hỏi>")
        child.sendline("/help")
        child.expect("/sources")
        child.expect("hỏi>")
        child.sendline(QUESTION)
        child.expect("74.127")
        child.expect("hỏi>")
        child.sendline("/sources")
        child.expect("nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí")
        child.expect("hỏi>")
        child.sendline("/reset")
        child.expect("Đã xoá hội thoại.")
        child.expect("hỏi>")
        child.sendeof()
        child.expect("Tạm biệt!")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_chat_piped_is_plain_and_understands_follow_ups(built_index_settings) -> None:
    script = "\n".join([QUESTION, "còn năm 2018 thì sao?", "/sources", "/reset", "/nope", ""])
    result = run_cli(["chat"], built_index_settings, input=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out
    assert "74.127" in out
    follow_up = out.split("74.127", 1)[1]
    assert "3.463" in follow_up  # the 2018 article's figure, from the rewritten question
    assert "Không có lệnh /nope" in out and "Tạm biệt!" in out


def test_empty_question_is_refused_cleanly(built_index_settings) -> None:
    result = run_cli(["ask", "   "], built_index_settings)
    assert result.returncode == 1 and "Câu hỏi trống." in result.stderr and "Traceback" not in result.stderr



def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_ask_batch_answers_every_line_in_order_as_json_lines(built_index_settings) -> None:
    questions = [QUESTION, "Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?", "Gia vang hom nay la bao nhieu?"]
    result = run_cli(["ask", "--json", "-"], built_index_settings, input="\n".join(questions) + "\n")
    assert result.returncode == 0, result.stderr
    replies = json_lines(result.stdout)  # nothing but one JSON object per line on stdout
    assert [(r["line"], r["question"]) for r in replies] == [(1, questions[0]), (2, questions[1]), (3, questions[2])]
    assert replies[0]["found"] and "74.127" in replies[0]["answer"]
    assert replies[1]["found"] and "Trần Thế Ngọc" in replies[1]["answer"]
    assert replies[2]["found"] is False and "74.127" not in replies[2]["answer"]
    for reply in replies:
        check_sources(built_index_settings, reply)


def test_ask_batch_reports_a_bad_line_and_goes_on(built_index_settings) -> None:
    lines = [QUESTION, "   ", "x" * 10_001, "Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?"]
    result = run_cli(["ask", "--json", "-"], built_index_settings, input="\n".join(lines) + "\n")
    assert result.returncode == 1  # some lines failed, and the batch still answered the others
    replies = json_lines(result.stdout)
    assert [r["line"] for r in replies] == [1, 2, 3, 4]
    assert replies[1] == {"line": 2, "error": "Câu hỏi trống."}
    assert set(replies[2]) == {"line", "error"} and "10,000" in replies[2]["error"]
    assert "74.127" in replies[0]["answer"] and "Trần Thế Ngọc" in replies[3]["answer"]
    assert "Traceback" not in result.stderr


def test_ask_batch_without_json_prints_each_answer_in_turn(built_index_settings) -> None:
    script = f"{QUESTION}\n\nAi dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?\n"
    result = run_cli(["ask", "-"], built_index_settings, input=script)
    assert result.returncode == 1
    first, second = result.stdout.split("> Ai dẫn đầu đoàn công tác")
    assert first.startswith(f"> {QUESTION}") and "74.127" in first and "Nguồn:" in first
    assert "Trần Thế Ngọc" in second and "74.127" not in second
    assert "dòng 2: Câu hỏi trống." in result.stderr and "\x1b[" not in result.stdout


# ---------------------------------------------------------------------------- filters that exclude everything


@pytest.mark.parametrize(("args", "vi", "en"), [
    (["--since", "2024-01-01", "--until", "2020-01-01"],
     "--since 2024-01-01 sau --until 2020-01-01: không bài nào có thể nằm trong khoảng đó.",
     "--since 2024-01-01 is after --until 2020-01-01: no article can be in that range."),
    (["--source", "Báo X"],
     "Không có bài nào của Báo X trong chỉ mục (các nguồn có: Báo Quảng Ngãi, THTG).",
     "No indexed article is from Báo X (outlets in the index: Báo Quảng Ngãi, THTG)."),
    (["--since", "2030-01-01"],
     "Không có bài nào từ 2030-01-01 trở đi (các bài có ngày từ 2014-10-29 đến 2023-09-29).",
     "No indexed article dated 2030-01-01 or later (their dates run from 2014-10-29 to 2023-09-29)."),
    (["--source", "báo quảng ngãi", "--since", "2020-01-01", "--until", "2024-12-31"],
     "Không có bài nào của báo quảng ngãi từ 2020-01-01 đến 2024-12-31 (các bài có ngày từ 2016-06-11 đến 2016-06-11).",
     "No article from báo quảng ngãi between 2020-01-01 and 2024-12-31 (their dates run from 2016-06-11 to 2016-06-11)."),
], ids=["since-after-until", "unknown-source", "no-article-in-range", "source-outside-range"])
def test_a_filter_that_excludes_everything_says_why(built_index_settings, args: list[str], vi: str, en: str) -> None:
    for command in (["ask", *args, QUESTION], ["chat", *args]):
        result = run_cli(command, built_index_settings, input=QUESTION + "\n")
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == f"lỗi: {vi}" and result.stdout == ""
    english = run_cli(["ask", *args, QUESTION], built_index_settings, HOIDAP_LANGUAGE="en")
    assert english.stderr.strip() == f"error: {en}"


def test_a_filter_that_admits_some_articles_answers_from_them(built_index_settings) -> None:
    result = run_cli(["ask", "--json", "--source", "báo quảng ngãi", "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?"],
                     built_index_settings)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["sources"] and {s["source"] for s in reply["sources"]} == {"Báo Quảng Ngãi"}


# ---------------------------------------------------------------------------- terminal output


def test_piped_ask_output_is_one_line_per_paragraph(built_index_settings) -> None:
    answer = ask(built_index_settings, QUESTION)["answer"]
    assert len(answer) > 80
    result = run_cli(["ask", QUESTION], built_index_settings, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert answer in lines  # not hard-wrapped at 80 columns
    assert lines[lines.index(answer) + 1] == "Nguồn:"


@pytest.mark.parametrize(("question", "heading", "not_heading"), [
    ("What was the total number of Party members in the provincial Party Committee in 2023?", "Sources:", "Nguồn"),
    ("What is the price of gold today?", "Nearest sources (they do not hold the answer):", "Nguồn"),
    ("Giá vàng hôm nay là bao nhiêu?", "Nguồn gần nhất (không chứa câu trả lời):", "Sources"),
])
def test_source_headings_are_in_the_answers_language(built_index_settings, question: str, heading: str,
                                                     not_heading: str) -> None:
    result = run_cli(["ask", question], built_index_settings)
    assert result.returncode == 0, result.stderr
    assert heading in result.stdout.splitlines() and not_heading not in result.stdout
