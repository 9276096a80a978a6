"""The local LLM answerer against the extractive one, with the model's replies recorded once and replayed.

    .venv/bin/python bench/answer_replay.py record QUESTIONS --index-dir DIR --replies R.jsonl [--out O.jsonl]
    .venv/bin/python bench/answer_replay.py replay QUESTIONS --index-dir DIR --replies R.jsonl [--out O.jsonl]

Both answerers run over the same retrieval (the retriever's results kept per question), built by the
wiring `hoidap eval --answerer local` uses (`COMPACT_PROMPT`, the gate, the extractive fallback), and
the script prints correct / token F1 / citation precision / "not found" for both, and how many answers
each got right that the other did not. The index must exist: build it first with
`hoidap eval --questions QUESTIONS --corpus CORPUS --index-dir DIR --answerer extractive`.

`record` asks the local model (greedy decoding: the same prompt gives the same reply) for every prompt
not yet in the replies file and appends its reply there, 4-10 s each on 2 cores; `replay` answers from
the file alone, in seconds, and fails on a prompt it has no reply for, so a rule of the checks after the
model (`retrieval/answering/claims.py`, `citations.py`) is measured on hundreds of questions without
running the model again. A change to what the model reads changes the prompts: record again.

The replies file holds the prompts (article text): keep it with the set it came from, out of the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.cli.app import load_settings  # noqa: E402
from bot.evaluation import load_questions  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.wiring import build_components, build_generative  # noqa: E402
from retrieval.answering.generative import COMPACT_PROMPT  # noqa: E402
from retrieval.evaluation import K_MAX, QuestionResult, score_question, summarize  # noqa: E402
from retrieval.types import Passage, Retriever  # noqa: E402


def prompt_key(messages: list[BaseMessage]) -> str:
    """The identity of a prompt: its messages' roles and texts."""
    return hashlib.sha256(json.dumps([[m.type, m.content] for m in messages], ensure_ascii=False).encode()).hexdigest()


class ReplayedChatModel(BaseChatModel):
    """A chat model answering from recorded replies; with `record`, the local model answers the rest."""

    replies_path: str
    record: bool = False
    settings: Any = None
    calls: int = 0
    recorded: int = 0
    _replies: dict[str, dict] = PrivateAttr(default_factory=dict)
    _model: BaseChatModel | None = PrivateAttr(default=None)

    def model_post_init(self, _context: Any) -> None:
        path = Path(self.replies_path)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._replies[row["key"]] = row

    @property
    def _llm_type(self) -> str:
        return "replayed"

    def reply(self, messages: list[BaseMessage]) -> str:
        key = prompt_key(messages)
        self.calls += 1
        if key not in self._replies:
            if not self.record:
                raise SystemExit(f"no recorded reply for prompt {key[:12]} (run `record` first): "
                                 f"{messages[-1].content[-160:]!r}")
            self._replies[key] = self._ask(key, messages)
        return self._replies[key]["reply"]

    def _ask(self, key: str, messages: list[BaseMessage]) -> dict:
        if self._model is None:
            from retrieval.answering.llm.provisioning import resolve_llm_path
            from retrieval.answering.llm.runtimes import load_local_chat_model

            s: Settings = self.settings
            self._model = load_local_chat_model(resolve_llm_path(s.models_dir, s.llm_model), threads=s.llm_threads,
                                                context=s.llm_context, max_tokens=s.llm_max_tokens)
        started = time.perf_counter()
        text = "".join(c.content for c in self._model.stream(messages) if isinstance(c.content, str))
        row = {"key": key, "reply": text, "seconds": round(time.perf_counter() - started, 2)}
        with open(self.replies_path, "a", encoding="utf-8") as replies:
            replies.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.recorded += 1
        return row

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply(messages)))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content=self.reply(messages)))


class KeptRetriever:
    """The inner retriever's results, kept per (question, k): both answerers read the same passages."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.kept: dict[tuple[str, int], list[Passage]] = {}

    def retrieve(self, question: str, k: int) -> list[Passage]:
        if (question, k) not in self.kept:
            self.kept[(question, k)] = self.inner.retrieve(question, k)
        return list(self.kept[(question, k)])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _line(name: str, results: list[QuestionResult]) -> str:
    s = summarize(results, K_MAX)
    return (f"{name:11s} correct {s.correct:.3f}  F1 {s.token_f1:.3f}  cit.P {s.citation_precision:.3f}  "
            f"not found {s.not_found_when_unanswerable:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["record", "replay"])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--replies", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="one JSON line per question: both answers and their scores")
    args = parser.parse_args()

    settings = load_settings()
    gold = load_questions(args.questions)
    components = build_components(settings, answerer="extractive", index_dir=args.index_dir, wrap_retriever=KeptRetriever)
    retriever, extractive = components.retriever, components.answerer
    chat = ReplayedChatModel(replies_path=str(args.replies), record=args.mode == "record", settings=settings)
    local = build_generative(settings, retriever, extractive.gate, chat, COMPACT_PROMPT)

    rows, quoted, generated = [], [], []
    started = time.perf_counter()
    for n, question in enumerate(gold, 1):
        articles = [p.article_id for p in retriever.retrieve(question.question, K_MAX)]
        answers = {"extractive": extractive.answer(question.question), "local": local.answer(question.question)}
        quoted.append(score_question(question, articles, answers["extractive"], 0, 0))
        generated.append(score_question(question, articles, answers["local"], 0, 0))
        rows.append({"id": question.id, "question": question.question, "answerable": question.answerable,
                     "gold": list(question.answers)}
                    | {f"{name}_{field}": value for name, answer, result in
                       (("extractive", answers["extractive"], quoted[-1]), ("local", answers["local"], generated[-1]))
                       for field, value in (("text", answer.text), ("found", answer.found),
                                            ("correct", result.correct), ("f1", result.f1))})
        if args.mode == "record":
            print(f"{n}/{len(gold)} {time.perf_counter() - started:.0f} s, {chat.recorded} replies recorded", flush=True)

    print(f"{args.questions}: {len(gold)} questions, {chat.calls} model calls, {chat.recorded} recorded now")
    print(_line("extractive", quoted))
    print(_line("local", generated))
    better = sum(1 for row in rows if row["local_correct"] and not row["extractive_correct"])
    worse = sum(1 for row in rows if row["extractive_correct"] and not row["local_correct"])
    print(f"local right, extractive wrong: {better}; extractive right, local wrong: {worse}")
    if args.out:
        args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
