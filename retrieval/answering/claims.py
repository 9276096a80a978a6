"""Whether a generated answer states the value the extractive answerer would quote: the claim check.

The citation checks (`retrieval.answering.citations.is_grounded`) only see that a figure of the answer
is in the passage it cites, not that it answers the question: asked for the province's party members
in 2023, Qwen2.5-1.5B answered "817" (party organisations) or "1.513" (new admissions), citing the
passage that states all three. So an answer to a question asking how many or when is also compared
with the extractive answer over the same passages (the answer the generative answerer falls back to):

- every value of the asked kind the model states (counts, or times, other than the question's own
  numbers, with a qualifier that changes the claim: `hơn 350` is not `350`; `sentences.stated_values`)
  must be one that a sentence the extractive answer quotes gives as the answer
  (`sentences.answer_values`: the count of the asked unit, or the one in the clause that holds most of
  the question's words); otherwise the extractive answer is used;
- an answer stating no such value makes no claim to compare and is kept ("khi nào" often asks a
  condition: "Khi bạn có thể ngủ và thức dậy đúng giờ");
- when the extractive answerer found nothing, the answer is "not found".

Other questions (who, what, why) are not compared. A model quoting another sentence that answers as
well is overruled too: on the tuning set no answer was lost that way (the extractive quote, being the
answer it would fall back to, was as correct), so no rule scores the model's own sentence.

Measured with the model's replies replayed (greedy decoding, the same prompts) on the 74 questions of
the tuning set's `unanswerable/` that ask how many or when (44 answerable), correct / token F1:
extractive .682 / .133; local before .636 / .357; with this check .705 / .319, unanswerable "not found"
.533 -> .567. Variants: requiring one shared value instead of all .636; values without their
qualifier .636; replacing answers that state no value .659. On the bundled set (43 of 76 checked)
local .742 -> .788 (extractive .894: the rest are who/which questions). eval/README.md has the runs.
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
    `extractive` answer give as the answer to `question` (or none at all); always False when the
    extractive answerer found nothing."""
    if not extractive.found:
        return False
    stated = stated_values(question, strip_citations(answer))
    answers = frozenset().union(*(answer_values(question, source.text) for source in extractive.sources))
    return not stated or stated <= answers
