"""Whether a generated answer says what the extractive answer over the same passages quotes: the claim check.

The citation checks (`retrieval.answering.citations.is_grounded`) only see that the figures and names of
an answer are in the passages it cites, not that they answer the question: asked for the province's
party members in 2023, Qwen2.5-1.5B answered "817" (party organisations) or "1.513" (new admissions),
citing the passage that states all three; asked who chaired the discussion, it named another person of
the same passage. So a grounded answer is also compared with the extractive answer over the same
passages (the answer the generative answerer falls back to), and that answer replaces it when
`claim_holds` fails:

- how many, when: every value of the asked kind the model states (counts or times other than the
  question's own numbers, with a qualifier that changes the claim: `hơn 350` is not `350`;
  `sentences.stated_values`) must be one that a sentence of the quote gives as the answer
  (`sentences.answer_values`); an answer stating no such value makes no claim to compare ("khi nào"
  often asks a condition). For an English question the quote must single out one value;
- every question: what the answer adds to the question is read from one sentence of the passages it
  cites (`read_from_one_sentence`): small models join words of several sentences into a statement
  none of them makes, or add their own;
- who, which: the person the answer names is one the quote names, and an answer naming nobody where
  the quote names someone is overruled; for `X nào` the words the answer puts after X follow X in the
  quote (`names_extractive_answer`);
- when the extractive answerer found nothing, an answer to how many or when is "not found"; others
  keep the one-sentence check alone.

A model quoting another sentence that answers as well is overruled too; on the tuning set that cost
no answer (the quote, being the answer it falls back to, was as correct).

Measured with the model's replies replayed (greedy decoding, the same prompts; eval/README.md, "The
claim check for every question"), correct / token F1, extractive vs local: 80 questions of the tuning
set's `unanswerable/` (60 answerable) .533 / .228 vs .517 / .349 before, .567 / .342 after; its 74 how
many / when questions .682 vs .705 before, .727 after; bundled .955 vs .833 before, .939 after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from index.chunking import split_into_sentences
from index.text import (
    content_tokens,
    content_words,
    disarm_citations,
    fold_diacritics,
    has_diacritics,
    strip_citations,
    words,
)
from retrieval.answering.answer_types import Words, person_spans
from retrieval.answering.sentences import Question, answer_values, stated_values
from retrieval.types import Answer, Source


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


# ---------------------------------------------------------------------------- every kind of question

# A claim is read from one sentence: of the words a generated answer adds to its question, at least this
# share stands in one sentence of the passages it cites. Small models gather words from several sentences
# into a statement none of them makes, or add their own (`vì ông đã điều trị tốt bệnh của mình`, a garbled
# `glucosea`). Chosen on replayed replies (eval/README.md, "The claim check for every question").
CLAIM_WORDS_SHARE = 0.9


@dataclass(frozen=True)
class Evidence:
    """The sentence of a cited passage a generated answer was read from, and that passage's number."""

    n: int
    sentence: str


def claim_sentence(answer: str, question: str, cited: Sequence[Source]) -> Evidence | None:
    """The sentence of the `cited` passages holding most of the content words `answer` adds to
    `question`, if it holds at least `CLAIM_WORDS_SHARE` of them (the first such, in citation order)."""
    claim = _claim_words(answer) - set(words(question))
    best: tuple[int, Evidence] | None = None
    for source in cited:
        for start, end in split_into_sentences(source.text):
            sentence = source.text[start:end]
            held = len(claim & set(words(sentence)))
            if held >= CLAIM_WORDS_SHARE * len(claim) and (best is None or held > best[0]):
                best = (held, Evidence(source.n, sentence))
    return best[1] if best is not None else None


def with_evidence(answer: str, evidence: Evidence) -> str:
    """The lines `answer` is followed by: the sentence it was read from, quoted and cited, so that the
    reader sees the whole statement (small models shorten it: `rất dễ cháy` for `rất dễ cháy, gây bỏng
    nhiệt`) and can check it; nothing when the answer already says every word of it."""
    if content_words(evidence.sentence) <= content_words(strip_citations(answer)):
        return ""
    return f"\n«{disarm_citations(evidence.sentence)}» [{evidence.n}]"


def names_extractive_answer(answer: str, question: Question, extractive: Answer) -> bool:
    """For who and which questions, whether `answer` names what the sentences quoted by the `extractive`
    answer offer, as `states_extractive_value` does for counts and times (True for other questions, or
    when the extractive answerer found nothing: `claim_sentence` is then the check).

    - who: every person the answer names is one the quote names (`Nguyễn Minh Tiến` is not
      `Nguyễn Văn Tuệ`), and an answer naming nobody where the quote names someone gives a title or a
      body instead of the person asked for;
    - which (`đảng bộ nào`, not a time: `ngày nào` has the value check): the words the answer puts
      after the asked noun follow that noun somewhere in the quote.
    """
    if not extractive.found:
        return True
    quote = " ".join(source.text for source in extractive.sources)
    if question.asks_who:
        said = _persons(answer, question.words)
        offered = _persons(quote, question.words)
        if offered and not said:
            return False
        if not all(any(set(name) <= set(other) or set(other) <= set(name) for other in offered) for name in said):
            return False
    if question.which and not is_checked(question):
        # What follows the noun in the question itself (`Đảng bộ Khối các cơ quan tỉnh`) is an echo, not a claim.
        said_after = _after(words(strip_citations(answer)), question.which) - _after(words(question.text), question.which)
        if said_after and not said_after & _after(words(quote), question.which):
            return False
    return True


def singles_out_value(question: Question, extractive: Answer) -> bool:
    """Whether the extractive quote gives one value as the answer to a question asking how many or when.
    For an English question the quote's Vietnamese clauses share no words with it, so every value of the
    asked kind ties (`answer_values`) and a model's pick among them cannot be confirmed."""
    answers = frozenset().union(*(answer_values(question, source.text) for source in extractive.sources))
    return len(answers) <= 1


def _claim_words(answer: str) -> set[str]:
    """The content words of an answer, folded; function words told apart by their accents when it has
    them (`có`, `được` are function words, `cỏ`, `cô` are not)."""
    body = strip_citations(answer)
    return {fold_diacritics(token) for token in content_tokens(body, fold=not has_diacritics(body))}


def _persons(text: str, question_words: frozenset[str]) -> list[tuple[str, ...]]:
    found = Words.of(strip_citations(text))
    return [tuple(found.folded[start:end]) for start, end in person_spans(found, set(question_words))]


def _after(tokens: list[str], noun: tuple[str, ...], width: int = 2) -> set[tuple[str, ...]]:
    """The `width` words following each occurrence of `noun` in `tokens`."""
    size = len(noun)
    return {tuple(tokens[i + size : i + size + width]) for i in range(len(tokens) - size)
            if tuple(tokens[i : i + size]) == noun}


def claim_holds(answer: str, question: Question, extractive: Answer) -> bool:
    """Whether a grounded generated `answer` (read from one sentence: `claim_sentence`) says what the
    `extractive` answer over the same passages quotes: its value for how many and when, the person or
    the named thing for who and which."""
    if is_checked(question):
        if not states_extractive_value(answer, question, extractive):
            return False
        if question.kind == "en" and not singles_out_value(question, extractive):
            return False
    return names_extractive_answer(answer, question, extractive)
