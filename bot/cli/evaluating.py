"""`hoidap eval`: measure on a question set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bot.cli.app import app, load_settings, run


@app.command("eval")
def eval_command(
    questions: Annotated[Path, typer.Option("--questions", help="Question set (JSON lines).")],
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Corpus (JSON lines) indexed into its own index.")] = None,
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the setting).")] = None,
    index_dir: Annotated[Optional[Path], typer.Option("--index-dir", help="Index to use or build (default: the current one, or one per corpus).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON report path; .md and .png are written next to it.")] = None,
) -> None:
    """Measure retrieval, answers, citations and latency on a question set; write JSON, Markdown and a plot."""

    def action() -> None:
        from bot.evaluation import run_eval

        # Indexing a corpus writes under the data dir unless --index-dir says where.
        settings = load_settings(writes_data=corpus is not None and index_dir is None)
        run_eval(settings, questions, corpus, answerer, index_dir, out)

    run(action)
