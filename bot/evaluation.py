"""The body of `hoidap eval`: load a question set (and its corpus), run it, print and write the reports.

With `--corpus`, the corpus is indexed into an index of its own (never mixed with the bundled one):
`--index-dir`, or by default `<data_dir>/eval-indexes/<digest>` where the digest covers the corpus bytes
and the embedding model, so a second run reuses the index and another model never meets its vectors.
Without `--corpus`, the current index (or `--index-dir`) is evaluated as it is.

Outputs, next to each other: `REPORT.json` (every figure, overall, per group and per question),
`REPORT.md` (a summary to paste into an issue) and `REPORT.png` (Recall@k for k = 1..20).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bot.cli.app import tr
from bot.settings import NEW_INDEX_PRECISION, Settings
from index.errors import HoidapError, UnreadableFileError
from retrieval.evaluation import (
    K_MAX,
    RECALL_KS,
    EvalQuestion,
    QuestionFormatError,
    QuestionResult,
    Report,
    Summary,
    evaluate,
    parse_question,
)

if TYPE_CHECKING:
    from index.embedding import Embedder

REPORTS_DIR = Path("reports")


# ---------------------------------------------------------------------------- inputs


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read a question file (JSON lines); a bad line stops the run with its file and line number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFileError(f"Cannot read the question file {path}: {error}",
                                  vi=f"Không đọc được tệp câu hỏi {path}: {error}") from error
    questions: list[EvalQuestion] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            questions.append(parse_question(json.loads(line)))
        except QuestionFormatError as error:
            raise UnreadableFileError(f"{path}, line {number}: {error}",
                                      vi=f"{path}, dòng {number}: {error.in_language('vi')}") from error
        except ValueError as error:  # json.JSONDecodeError
            raise UnreadableFileError(f"{path}, line {number}: {error}",
                                      vi=f"{path}, dòng {number}: không phải JSON hợp lệ ({error})") from error
    if not questions:
        raise UnreadableFileError(f"The question file {path} holds no question.",
                                  vi=f"Tệp câu hỏi {path} không có câu hỏi nào.")
    duplicates = {q.id for q in questions if sum(1 for other in questions if other.id == q.id) > 1}
    if duplicates:
        listed = ", ".join(sorted(duplicates))
        raise UnreadableFileError(f"{path}: question ids used twice: {listed}", vi=f"{path}: mã câu hỏi bị dùng hai lần: {listed}")
    return questions


def eval_index_dir(settings: Settings, corpus: Path) -> Path:
    """The default index directory of an evaluation corpus: keyed by its content and the embedding model and precision.

    `corpus` is a JSON-lines file, or a folder of articles (every file, by relative path and bytes).
    """
    digest = hashlib.sha256()
    digest.update(settings.embedding_model.encode("utf-8") + b"\0")
    precision = settings.embedding_precision or NEW_INDEX_PRECISION
    if precision != "fp32":  # the keys of fp32 indexes stay what they were before precisions
        digest.update(precision.encode("utf-8") + b"\0")
    files = sorted(p for p in corpus.rglob("*") if p.is_file()) if corpus.is_dir() else [corpus]
    try:
        for path in files:
            digest.update(str(path.relative_to(corpus) if corpus.is_dir() else "").encode("utf-8") + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    except OSError as error:
        raise UnreadableFileError(f"Cannot read the corpus {corpus}: {error}",
                                  vi=f"Không đọc được kho bài {corpus}: {error}") from error
    return settings.data_dir / "eval-indexes" / digest.hexdigest()[:16]


def default_report_path(questions: Path, answerer: str) -> Path:
    """`reports/eval-<set>-<answerer>.json`, the set named by its folder (or file stem for loose files)."""
    name = questions.parent.name if questions.stem == "questions" and questions.parent.name else questions.stem
    return REPORTS_DIR / f"eval-{name}-{answerer}.json"


# ---------------------------------------------------------------------------- the run


def run_eval(settings: Settings, questions: Path, corpus: Path | None = None, answerer_name: str | None = None,
             index_dir: Path | None = None, out: Path | None = None, *, console: Console | None = None) -> Report:
    """Evaluate one question set: index the corpus if given, answer every question, write the reports."""
    from bot.wiring import build_components, build_embedder, choose_answerer

    # Piped output with no COLUMNS keeps the wide table whole; a terminal (or COLUMNS) gets a layout that fits.
    console = console or (Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=200))
    status = Console(stderr=True)
    gold = load_questions(questions)
    if corpus is not None:
        if not corpus.exists():
            raise UnreadableFileError(f"The corpus {corpus} does not exist.", vi=f"Kho bài {corpus} không tồn tại.")
        index_dir = index_dir or eval_index_dir(settings, corpus)
    index_dir = index_dir or settings.index_dir
    name = answerer_name or choose_answerer(settings)

    embedder = build_embedder(settings, index_dir)
    if corpus is not None:
        _index_corpus(settings, embedder, corpus, index_dir, status)
    components = build_components(settings, answerer=name, index_dir=index_dir, embedder=embedder)
    store, retriever, answerer = components.store, components.retriever, components.answerer
    _warn_missing_articles(status, gold, {a.article_id for a in store.articles()})

    started = time.perf_counter()
    with _ProgressBar(status, "questions") as advance:
        done = iter(range(1, len(gold) + 1))
        report = evaluate(gold, retriever=retriever, answerer=answerer, k_max=K_MAX,
                          on_result=lambda _: advance(next(done), len(gold)))
    report.meta = {
        "questions_file": str(questions),
        "corpus_file": str(corpus) if corpus else None,
        "index_dir": str(index_dir),
        "store": store.describe(),
        "answerer": name,
        "embedding_model": settings.embedding_model,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "index_type": store.manifest.index_type,
        "top_k": settings.top_k,
        "articles": store.manifest.n_articles,
        "chunks": store.manifest.n_chunks,
        "seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = out or default_report_path(questions, name)
    paths = write_report(report, out)
    print_report(console, report)
    console.print(tr("báo cáo: ", "reports: ") + ", ".join(str(p) for p in paths), highlight=False, soft_wrap=True)
    return report


def _index_corpus(settings: Settings, embedder: Embedder, corpus: Path, index_dir: Path, status: Console) -> None:
    """Sync the evaluation index with the corpus: embeds only what changed since the last run."""
    from bot.wiring import store_location, sync

    with _ProgressBar(status, "indexing") as advance:  # into the database when HOIDAP_DATABASE_URL is set
        # An evaluation index mirrors its corpus: whatever left the corpus leaves the index, however much.
        summary = sync(settings, [corpus], index_dir=index_dir, embedder=embedder, confirm=lambda _: True,
                       progress=lambda stage, done, total: advance(done, total) if stage == "embedding" else None)
    for skipped in summary.skipped:
        status.print(tr(f"bỏ qua {skipped.path}: {skipped.in_language('vi')}", f"skipped {skipped.path}: {skipped.reason}"),
                     highlight=False, markup=False)
    if summary.chunks_embedded:
        where = store_location(settings, index_dir)
        status.print(tr(f"đã lập chỉ mục {summary.n_articles} bài ({summary.chunks_embedded} đoạn) vào {where} "
                        f"trong {summary.seconds:.1f} giây",
                        f"indexed {summary.n_articles} articles ({summary.chunks_embedded} chunks) into {where} "
                        f"in {summary.seconds:.1f}s"), highlight=False)


def _warn_missing_articles(console: Console, questions: list[EvalQuestion], indexed: set[str]) -> None:
    """Gold articles absent from the index make retrieval misses that are the data's fault, not the retriever's."""
    missing = sorted({a for q in questions for a in q.passage_ids} - indexed)
    if missing:
        shown = ", ".join(missing[:5])
        more = len(missing) - 5
        console.print(tr(f"[yellow]cảnh báo:[/] {len(missing)} bài chuẩn không có trong chỉ mục: {shown}"
                         + (f" và {more} bài nữa" if more > 0 else ""),
                         f"[yellow]warning:[/] {len(missing)} gold articles are not in the index: {shown}"
                         + (f" and {more} more" if more > 0 else "")), highlight=False)


class _ProgressBar:
    """A transient progress bar on stderr (silent when stderr is not a terminal), as a `(done, total)` callback."""

    def __init__(self, console: Console, label: str):
        self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=console, transient=True, disable=not console.is_terminal)

    def __enter__(self) -> Callable[[int, int], None]:
        self._bar.__enter__()
        task = self._bar.add_task("run", total=None)
        return lambda done, total: self._bar.update(task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)


# ---------------------------------------------------------------------------- outputs


COLUMNS: list[tuple[str, Callable[[Summary], float | int]]] = [
    ("questions", lambda s: s.questions),
    *[(f"R@{k}", (lambda k: lambda s: s.recall_at(k))(k)) for k in RECALL_KS],
    ("MRR@10", lambda s: s.mrr_at_10),
    ("correct", lambda s: s.correct),
    ("F1", lambda s: s.token_f1),
    ("cit.P", lambda s: s.citation_precision),
    ("cit.R", lambda s: s.citation_recall),
    ("unans. not found", lambda s: s.not_found_when_unanswerable),
    ("p50 ms", lambda s: s.latency_p50_ms),
    ("p95 ms", lambda s: s.latency_p95_ms),
]


def _cell(header: str, value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "–"
    return f"{value:.0f}" if header.endswith("ms") else f"{value:.3f}"


def _rows(report: Report) -> list[tuple[str, list[str]]]:
    summaries = [("all", report.overall), *report.groups.items()]
    return [(name, [_cell(header, get(summary)) for header, get in COLUMNS]) for name, summary in summaries]


def failures(report: Report) -> list[QuestionResult]:
    """Questions answered wrongly: a wrong or missing answer, or a claim where "not found" was due."""
    return [r for r in report.results if (r.answerable and not r.correct) or (not r.answerable and r.found)]


def print_report(console: Console, report: Report, *, max_failures: int = 20) -> None:
    """The summary table (overall and per group) in a layout that fits the console, then the first failures."""
    for table in _report_tables(console, report):
        console.print(table)
    failed = failures(report)
    for result in failed[:max_failures]:
        console.print(f"  ✗ {result.id} ({_verdict(result)}): {result.question} → {_clip(result.answer)}",
                      highlight=False, markup=False)
    if len(failed) > max_failures:
        more = len(failed) - max_failures
        console.print(tr(f"  … và {more} câu hỏi sai nữa (liệt kê trong báo cáo Markdown)",
                         f"  … and {more} more failed questions (listed in the Markdown report)"))


def _verdict(result: QuestionResult) -> str:
    if not result.answerable:
        return tr("đã trả lời, lẽ ra phải là không tìm thấy", "answered, expected not found")
    return tr("không tìm thấy", "not found") if not result.found else tr("sai", "wrong")


def _report_tables(console: Console, report: Report) -> list[Table]:
    """One table with a row per set when it fits the width; else figures as rows and sets as columns,
    split into as many tables as it takes to fit (never a figure cut to "1.…")."""
    title = f"hoidap eval — {report.meta.get('answerer', '')}"
    rows = _rows(report)
    wide = Table(tr("tập", "set"), *(header for header, _ in COLUMNS), title=title)
    for name, cells in rows:
        wide.add_row(name, *cells)
    if _width(console, wide) <= console.width:
        return [wide]
    tables: list[Table] = []
    start = 0
    while start < len(rows):
        count = 1
        while start + count < len(rows) and _width(console, _tall(rows[start:start + count + 1], None)) <= console.width:
            count += 1
        tables.append(_tall(rows[start:start + count], title if not tables else None))
        start += count
    return tables


def _tall(rows: list[tuple[str, list[str]]], title: str | None) -> Table:
    """Figures as rows, the given sets as columns."""
    table = Table(tr("chỉ số", "figure"), *(name for name, _ in rows), title=title)
    for column, (header, _) in enumerate(COLUMNS):
        table.add_row(header, *(cells[column] for _, cells in rows))
    return table


def _width(console: Console, table: Table) -> int:
    """The width `table` needs to show every cell on one line."""
    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def _clip(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: Report) -> str:
    """A Markdown summary: what was run, the figures table, and the failed questions."""
    meta = report.meta
    headers = ["set", *(header for header, _ in COLUMNS)]
    lines = [
        f"# hoidap eval: {meta.get('questions_file', '')}",
        "",
        f"Answerer `{meta.get('answerer')}`, embedding `{meta.get('embedding_model')}`, "
        f"{meta.get('articles')} articles / {meta.get('chunks')} chunks ({meta.get('index_type')}), "
        f"top_k {meta.get('top_k')}; {meta.get('created')}.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join([name, *cells]) + " |" for name, cells in _rows(report)),
        "",
        "Recall is article-level over answerable questions; correct = normalised containment of a gold answer;"
        " citation precision/recall as defined in `retrieval/evaluation.py`.",
    ]
    failed = failures(report)
    lines += ["", f"## Failed questions ({len(failed)})", ""]
    lines += [f"- `{r.id}` {r.question} → {_clip(r.answer)} (gold: {', '.join(r.gold_answers) or 'not found'})"
              for r in failed] or ["None."]
    return "\n".join(lines) + "\n"


def plot_recall(report: Report, path: Path) -> None:
    """Recall@k for k = 1..K_MAX, overall and per group with answerable questions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: never open a window, never need one
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=110)
    axes = figure.subplots()
    ks = list(range(1, K_MAX + 1))
    for name, summary in [("all", report.overall), *report.groups.items()]:
        if summary.answerable:
            axes.plot(ks, summary.recall_curve, marker="o" if name == "all" else None, markersize=3,
                      linewidth=2.2 if name == "all" else 1.2, label=f"{name} ({summary.answerable})")
    axes.set(xlabel="k (passages retrieved)", ylabel="article-level Recall@k", xlim=(1, K_MAX), ylim=(0, 1.02),
             xticks=[1, 5, 10, 15, 20], title=f"Recall@k — {Path(str(report.meta.get('questions_file', ''))).parent.name}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def write_report(report: Report, out: Path) -> tuple[Path, Path, Path]:
    """Write REPORT.json, REPORT.md and REPORT.png; returns the three paths."""
    out = out if out.suffix == ".json" else out.with_name(out.name + ".json")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        markdown, png = out.with_suffix(".md"), out.with_suffix(".png")
        markdown.write_text(render_markdown(report), encoding="utf-8")
        plot_recall(report, png)
    except OSError as error:
        raise HoidapError(f"Cannot write the evaluation report to {out.parent}: {error}") from error
    return out, markdown, png
