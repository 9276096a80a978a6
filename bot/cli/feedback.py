"""`hoidap feedback` (the answers readers voted on, and their export as an eval question set) and
`hoidap stats` (the bot's metrics for a data directory)."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli.app import app, load_settings, run, tr
from index.errors import HoidapError

if TYPE_CHECKING:
    from bot.telegram.state import BotState, VotedAnswer

feedback_app = typer.Typer(help="Answers readers voted on in Telegram (👍 / 👎), and corrections.",
                           invoke_without_command=True)
app.add_typer(feedback_app, name="feedback")

out = Console()

Vote = Literal["down", "up", "all"]
TO_CORRECT = "to-correct"
"""The tag on every exported question: its answers are the reader's correction or the bot's own answer,
to be checked (and its passage ids too) by the operator before the set is used as a regression test."""

_SINCE = typer.Option("--since", help="From this date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM), local time.")
_UNTIL = typer.Option("--until", help="Until this date (included) or time (excluded), local time.")
_VOTE = typer.Option("--vote", help="down (default), up, or all.")


def parse_moment(text: str | None, *, end: bool = False) -> float | None:
    """`YYYY-MM-DD` (the whole day: its start, or with `end` the next day's start) or an ISO time, as epoch."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = datetime.combine(datetime.fromisoformat(text).date(), time())
            return (day + timedelta(days=1) if end else day).timestamp()
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise HoidapError(f"Not a date: {text!r} (write YYYY-MM-DD or YYYY-MM-DDTHH:MM).",
                          vi=f"Không phải ngày hợp lệ: {text!r} (viết YYYY-MM-DD hoặc YYYY-MM-DDTHH:MM).") from None


def _open_state() -> BotState:
    """The bot's state where the bot keeps it: the PostgreSQL database when HOIDAP_DATABASE_URL is set (the
    figures of every replica), else the data dir."""
    from bot.telegram.state import existing_state

    settings = load_settings()
    state = existing_state(settings)
    if state is None and settings.database_url is not None:
        from index.stores.postgres import describe_url

        where = describe_url(settings.database_url.get_secret_value())
        raise HoidapError(f"No bot state in the database at {where}: the Telegram bot has not run with it.",
                          vi=f"Cơ sở dữ liệu tại {where} chưa có dữ liệu của bot: bot Telegram chưa chạy với nó.")
    if state is None:
        raise HoidapError(f"No bot state in {settings.data_dir}: the Telegram bot has not run with this data dir.",
                          vi=f"Không có dữ liệu của bot trong {settings.data_dir}: bot Telegram chưa chạy với "
                             "thư mục dữ liệu này.")
    return state


def voted(vote: Vote, since: str | None, until: str | None) -> list[VotedAnswer]:
    state = _open_state()
    try:
        return state.voted_answers(since=parse_moment(since), until=parse_moment(until, end=True),
                                   vote={"down": -1, "up": 1, "all": None}[vote])
    finally:
        state.close()


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


@feedback_app.callback()
def feedback_list(
    context: typer.Context,
    since: Annotated[str | None, _SINCE] = None,
    until: Annotated[str | None, _UNTIL] = None,
    vote: Annotated[Vote, _VOTE] = "down",
) -> None:
    """List voted answers: question, answer, cited sources, when, votes and corrections."""
    if context.invoked_subcommand is not None:
        return

    def action() -> None:
        answers = voted(vote, since, until)
        if not answers:
            out.print(tr("Không có câu trả lời nào được bình chọn trong khoảng này.",
                         "No voted answers in this period."))
            return
        for item in answers:
            out.rule(f"#{item.answer_id} · {_when(item.asked_at)} · 👍 {item.up} 👎 {item.down}")
            out.print(f"[bold]{tr('Câu hỏi', 'Question')}:[/] {escape(item.question)}", highlight=False)
            out.print(f"[bold]{tr('Trả lời', 'Answer')}:[/] {escape(item.answer.text)}", highlight=False)
            for source in item.answer.sources:
                out.print(f"  [{source.n}] {source.title} · {source.date or '-'} · {source.article_id}",
                          highlight=False, markup=False)
            for correction in item.corrections:
                out.print(f"[bold]{tr('Sửa lại', 'Correction')}:[/] {escape(correction)}", highlight=False)
        out.print(tr(f"{len(answers)} câu trả lời.", f"{len(answers)} answers."))

    run(action)


def eval_record(item: VotedAnswer) -> dict:
    """One voted answer as a `hoidap eval` question line, marked for the operator to correct.

    The gold answer is the reader's correction when there is one, else the bot's own answer; the gold
    articles are the ones the answer cited. A "not found" answer cites nothing, so it is exported as
    unanswerable (what the bot believed), tagged so the operator adds the right article and answer.
    """
    articles = list(dict.fromkeys(source.article_id for source in item.answer.sources if item.answer.found))
    tags = ["feedback", TO_CORRECT, "voted-down" if item.down else "voted-up"]
    record: dict = {"id": f"feedback-{item.answer_id}", "question": item.question}
    if articles:
        from index.text import strip_citations

        gold = item.corrections[-1] if item.corrections else strip_citations(item.answer.text).strip()
        record.update(answers=[gold], passage_ids=articles, answerable=True)
    else:
        record.update(answers=[], passage_ids=[], answerable=False)
        tags.append("needs-passage")
    record["tags"] = tags
    record["feedback"] = {
        "bot_answer": item.answer.text, "found": item.answer.found, "corrections": item.corrections,
        "votes_up": item.up, "votes_down": item.down, "asked_at": _when(item.asked_at),
        "sources": [{"n": s.n, "article_id": s.article_id, "title": s.title, "date": s.date} for s in item.answer.sources],
    }
    return record


@feedback_app.command("export")
def feedback_export(
    out_path: Annotated[Path, typer.Option("--out", help="Question set to write (JSON lines, the `hoidap eval` format).")],
    since: Annotated[str | None, _SINCE] = None,
    until: Annotated[str | None, _UNTIL] = None,
    vote: Annotated[Vote, _VOTE] = "down",
) -> None:
    """Write voted answers as a `hoidap eval` question set, each tagged to-correct for the operator."""

    def action() -> None:
        answers = voted(vote, since, until)
        if not answers:
            raise HoidapError("No voted answers to export in this period.",
                              vi="Không có câu trả lời được bình chọn nào để xuất trong khoảng này.")
        records = [eval_record(item) for item in answers]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        without = sum(1 for r in records if not r["answerable"])
        out.print(tr(f"Đã ghi {len(records)} câu hỏi vào {out_path}. Hãy sửa 'answers' (và 'passage_ids') rồi "
                     f"bỏ thẻ {TO_CORRECT} trước khi dùng làm bài kiểm tra.",
                     f"Wrote {len(records)} questions to {out_path}. Correct 'answers' (and 'passage_ids') and "
                     f"remove the {TO_CORRECT} tag before using them as regression tests."), highlight=False)
        if without:
            out.print(tr(f"{without} câu trả lời 'không tìm thấy' không trích bài nào: thêm bài báo đúng cho chúng.",
                         f"{without} 'not found' answers cite no article: add the right one to them."))

    run(action)


# ---------------------------------------------------------------------------- stats


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


@app.command("stats")
def stats_command(
    since: Annotated[str | None, _SINCE] = None,
    until: Annotated[str | None, _UNTIL] = None,
    prometheus: Annotated[bool, typer.Option("--prometheus", help="Print the Prometheus text format, as /metrics.")] = False,
) -> None:
    """The Telegram bot's figures (this data dir, or with HOIDAP_DATABASE_URL all replicas): questions, answers, latencies, errors, votes."""

    def action() -> None:
        from bot.ops import QuestionRecord, metrics_from_records

        state = _open_state()
        try:
            start, end = parse_moment(since), parse_moment(until, end=True)
            records = [QuestionRecord(*row) for row in state.question_log(since=start, until=end)]
            votes = state.vote_values(since=start, until=end)
        finally:
            state.close()
        if prometheus:
            out.file.write(metrics_from_records(records, votes).render().decode())
            return
        table = Table(title=tr("Thống kê bot Telegram", "Telegram bot statistics"))
        table.add_column(tr("Chỉ số", "Figure"))
        table.add_column(tr("Giá trị", "Value"), justify="right")
        answered = [r for r in records if r.outcome in ("found", "not_found")]
        rows = [
            (tr("câu hỏi (trò chuyện)", "questions (chat)"), sum(1 for r in records if r.via == "chat")),
            (tr("câu hỏi (inline)", "questions (inline)"), sum(1 for r in records if r.via == "inline")),
            (tr("trả lời có nguồn", "answers found"), sum(1 for r in records if r.outcome == "found")),
            (tr("không tìm thấy", "answers not found"), sum(1 for r in records if r.outcome == "not_found")),
            (tr("lỗi", "errors"), sum(1 for r in records if r.outcome == "error")),
            (tr("chưa xong (bot dừng giữa chừng)", "unfinished (bot stopped)"),
             sum(1 for r in records if r.outcome == "pending")),
        ]
        for label, value in rows:
            table.add_row(label, str(value))
        for label, values in ((tr("thời gian trả lời", "answer time"), [r.answer_seconds for r in answered]),
                              (tr("thời gian tìm kiếm", "retrieval time"),
                               [r.retrieval_seconds for r in records if r.retrieval_seconds is not None])):
            clean = [v for v in values if v is not None]
            table.add_row(f"{label} p50 / p95",
                          f"{_seconds(_percentile(clean, 0.5))} / {_seconds(_percentile(clean, 0.95))}")
        kinds: dict[str, int] = {}
        for record in records:
            if record.outcome == "error":
                kinds[record.error_kind or "unknown"] = kinds.get(record.error_kind or "unknown", 0) + 1
        for kind, count in sorted(kinds.items()):
            table.add_row(f"  {tr('lỗi', 'errors')}: {kind}", str(count))
        table.add_row("👍 / 👎", f"{sum(1 for v in votes if v > 0)} / {sum(1 for v in votes if v < 0)}")
        out.print(table)

    run(action)
