"""Whether a generated answer states the value the extractive answerer would quote: the claim check.

The citation checks (`retrieval.answering.citations.is_grounded`) only see that a figure of the answer
is in the passage it cites, not that it answers the question: asked for the province's party members
in 2023, Qwen2.5-1.5B answered "817" (party organisations) or "1.513" (new admissions), citing the
passage that states all three. So a question asking how many or when is also checked against the
extractive answer over the same passages (the answer the generative answerer falls back to):

- every value of the asked kind the model states (counts, or times, other than the question's own
  numbers: `sentences.stated_values`) must be one that a sentence the extractive answer quotes gives
  as the answer (`sentences.answer_values`: the count of the asked unit, or the one in the clause that
  holds most of the question's words), and the model must state at least one;
- otherwise the extractive answer is used, or "not found" when the extractive answerer found none.

Other questions (who, what, why) are not checked here. The rule is strict: a model quoting another
sentence that answers as well is overruled too, but then the extractive quote is the answer it would
have fallen back to, so the check can only make the generative path as correct as that quote.
Measured on the tuning set (eval/README.md, "The default answerer, chosen on the same set").
"""

from __future__ import annotations

from index.text import strip_citations
from retrieval.answering.sentences import Question, answer_values, stated_values
from retrieval.types import Answer


def is_checked(question: Question) -> bool:
    """Whether the question asks a value whose claim the check compares (a quantity or a time)."""
    return question.asks_quantity or question.asks_time


def states_extractive_value(answer: str, question: Question, extractive: Answer) -> bool:
    """True when `answer` (with its citations) states only values that the sentences quoted by the
    `extractive` answer give as the answer to `question`, and at least one; always False when the
    extractive answerer found nothing."""
    if not extractive.found:
        return False
    stated = stated_values(question, strip_citations(answer))
    answers = frozenset().union(*(answer_values(question, source.text) for source in extractive.sources))
    return bool(stated) and stated <= answers
