"""Diacritic restoration for questions typed without accents, learnt from the indexed corpus alone.

A question typed as `thu do cua nuoc phap la gi` matches the accented text only through an
accent-folded field, where `phap` stands for pháp, phạp and phập alike and `ban` for bàn, bán, bạn,
bản... Restoring the accents first lets such a question take the accented path (BM25 as written, word
segmentation, dense search) as well as the folded one.

The model is a bigram language model over accented, lower-cased syllables, counted from the texts
of the index (nothing else: no dictionary, no outside vocabulary), so it knows the names and terms
of the corpus being asked about:

- `forms`: every accented syllable seen, with its count; grouping them by their folded spelling gives
  the candidates of a typed syllable (`phap` -> pháp 812, phạp 2, ...).
- `bigrams`: counts of adjacent pairs within a sentence, with `<s>` and `</s>` marking sentence ends
  and `<num>` standing for any number (so `nam 2019` is restored as `năm 2019`).

`restore` picks, by Viterbi search, the candidate sequence with the highest probability under the
bigram model, interpolated with the unigram one (Witten-Bell: a context seen often with few different
followers trusts its bigrams more). Syllables that already carry diacritics are kept as typed (a
question may be partly accented); syllables the corpus never saw are kept too (names, foreign words).
Letter case is copied from the question character by character.

Questions are not news prose: their question words (`nào`, `bao nhiêu`, `ở đâu`) are rare in
articles, where the same folded spellings are often content words (`não` "brain" in health news,
`nhiều`, `đầu`, `báo`). `QUESTION_PHRASES`, a short hand-written list of Vietnamese question phrasings
(grammar, not vocabulary of any article), can be counted in with `build(..., question_weight=w)`, as if
each phrase occurred `w` times as a sentence of its own; 0 leaves the model purely the corpus's.

Storage is plain JSON (`to_json`/`from_json`), never pickle.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from index.text import SENTENCE_TOKEN_RE, fold_diacritics, has_diacritics, normalize, normalize_tone_marks

__all__ = ["DiacriticRestorer"]

_FORMAT = 1
# Generic question phrasings of Vietnamese (closed-class words), for `build(question_weight=...)`.
QUESTION_PHRASES: tuple[str, ...] = (
    "bao nhiêu", "là bao nhiêu", "có bao nhiêu", "bao giờ", "bao lâu", "mấy", "có mấy", "là gì", "gì",
    "cái gì", "điều gì", "nào", "khi nào", "lúc nào", "nơi nào", "như thế nào", "thế nào", "ra sao",
    "ai", "là ai", "của ai", "ở đâu", "đâu", "tại đâu", "từ đâu", "vì sao", "tại sao", "do đâu",
    "có phải", "hay không", "không", "chưa", "những gì", "bằng cách nào", "nhằm mục đích gì",
)
BOS, EOS, NUM = "<s>", "</s>", "<num>"
_VOWELS = frozenset("aeiouy")  # of folded syllables


@dataclass(frozen=True)
class _Token:
    """A token of the question: its span in the text and its lower-cased, tone-normalised form."""

    start: int
    end: int
    form: str
    kind: str  # "word", "num" or "stop"


def _tokens(text: str) -> list[_Token]:
    """Tokens of an NFC text, with `form` in the spelling the model counts."""
    tokens = []
    for match in SENTENCE_TOKEN_RE.finditer(text):
        kind = match.lastgroup or "stop"
        form = normalize_tone_marks(match.group().lower()) if kind == "word" else match.group()
        tokens.append(_Token(match.start(), match.end(), form, kind))
    return tokens


def _sentences(text: str) -> Iterable[list[str]]:
    """Runs of model symbols (syllables and `<num>`) between sentence breaks."""
    run: list[str] = []
    for token in _tokens(normalize(text)):
        if token.kind == "stop":
            if run:
                yield run
            run = []
        else:
            run.append(NUM if token.kind == "num" else token.form)
    if run:
        yield run


def _with_case(typed: str, restored: str) -> str:
    """`restored` with the letter case of `typed`, character by character (same length)."""
    return "".join(r.upper() if t.isupper() else r for t, r in zip(typed, restored))


class DiacriticRestorer:
    """Restores the accents of Vietnamese typed without them, from a bigram model of a corpus."""

    def __init__(self, forms: dict[str, int], bigrams: dict[tuple[str, str], int]) -> None:
        """Use `build` or `from_json`; `forms` counts accented syllables, `bigrams` adjacent pairs."""
        self.forms = dict(forms)
        self.bigrams = dict(bigrams)
        self._total = sum(self.forms.values())
        self._candidates: dict[str, list[str]] = {}
        for form, count in sorted(self.forms.items(), key=lambda item: (-item[1], item[0])):
            folded = fold_diacritics(form)
            # A form whose folding changes its length (a decomposed leftover) could not keep the case.
            if len(folded) == len(form) and form not in (BOS, EOS, NUM):
                self._candidates.setdefault(folded, []).append(form)
        self._context_total: Counter[str] = Counter()
        self._context_types: Counter[str] = Counter()
        for (previous, _), count in self.bigrams.items():
            self._context_total[previous] += count
            self._context_types[previous] += 1

    @classmethod
    def build(cls, texts: Iterable[str], *, min_bigram_count: int = 1, question_weight: int = 0
              ) -> DiacriticRestorer:
        """Count syllables and adjacent pairs of `texts` (the indexed articles, titles included).

        `min_bigram_count` drops rarer pairs, to keep the model small for a large archive;
        `question_weight` counts each of `QUESTION_PHRASES` that many times (0: the corpus alone).
        """
        forms: Counter[str] = Counter()
        bigrams: Counter[tuple[str, str]] = Counter()

        def count(text: str, times: int = 1) -> None:
            for run in _sentences(text):
                symbols = [BOS, *run, EOS]
                for symbol in run:
                    forms[symbol] += times
                for pair in pairwise(symbols):
                    bigrams[pair] += times

        for text in texts:
            count(text)
        if question_weight > 0:
            for phrase in QUESTION_PHRASES:
                count(phrase, question_weight)
        forms.pop(NUM, None)
        if min_bigram_count > 1:
            bigrams = Counter({pair: c for pair, c in bigrams.items() if c >= min_bigram_count})
        return cls(dict(forms), dict(bigrams))

    def candidates(self, syllable: str) -> list[str]:
        """Accented forms the corpus has for a syllable typed without accents, most frequent first."""
        return list(self._candidates.get(fold_diacritics(syllable.lower()), ()))

    def has_pair(self, first: str, second: str) -> bool:
        """Whether the corpus has the two syllables side by side in a sentence, in any accented forms
        (`thu`, `do` asks for thủ đô, thư đó, thu đồ...) and either spelling of a final i/y (`tỉ lệ` is
        `tỷ lệ`, `đăng kí` is `đăng ký`): a few dictionary lookups, no table of its own."""
        return any((a, b) in self.bigrams for a in self._spellings(first) for b in self._spellings(second))

    def _spellings(self, syllable: str) -> list[str]:
        folded = fold_diacritics(syllable.lower())
        forms = self.candidates(folded)
        # A consonant onset then a lone i or y: Vietnamese writes both (kí/ký, lí/lý, mĩ/mỹ, tỉ/tỷ).
        if len(folded) > 1 and folded[-1] in "iy" and not any(c in _VOWELS for c in folded[:-1]):
            forms += self.candidates(folded[:-1] + ("y" if folded[-1] == "i" else "i"))
        return forms

    def _log_unigram(self, form: str) -> float:
        # Add-one smoothing, so that a form kept as typed (never seen) still has a probability.
        return math.log((self.forms.get(form, 0) + 1) / (self._total + len(self.forms) + 1))

    def _log_transition(self, previous: str, form: str) -> float:
        """log P(form | previous), Witten-Bell interpolation of the bigram and unigram estimates."""
        unigram = math.exp(self._log_unigram(form))
        seen = self._context_total.get(previous, 0)
        if not seen:
            return math.log(unigram)
        types = self._context_types[previous]
        weight = seen / (seen + types)
        return math.log(weight * self.bigrams.get((previous, form), 0) / seen + (1 - weight) * unigram)

    def _best_path(self, lattice: list[list[str]]) -> list[str]:
        """The most probable sequence through `lattice` (candidates per position), by Viterbi search."""
        best: dict[str, tuple[float, list[str]]] = {BOS: (0.0, [])}
        for options in lattice:
            step: dict[str, tuple[float, list[str]]] = {}
            for form in options:
                score, path = max(
                    ((s + self._log_transition(previous, form), p) for previous, (s, p) in best.items()),
                    key=lambda item: item[0],
                )
                step[form] = (score, [*path, form])
            best = step
        _, path = max(((s + self._log_transition(last, EOS), p) for last, (s, p) in best.items()), key=lambda i: i[0])
        return path

    def restore(self, question: str) -> str:
        """`question` with accents restored on every syllable typed without them.

        Syllables that carry any diacritic, numbers, punctuation and spacing are left exactly as
        typed; so are syllables the corpus never saw. The text is returned in NFC.
        """
        text = normalize(question)
        tokens = _tokens(text)
        pieces: list[str] = []
        cursor = 0
        run: list[_Token] = []

        def flush() -> None:
            nonlocal cursor
            if not run:
                return
            lattice = []
            for token in run:
                if token.kind == "num":
                    lattice.append([NUM])
                elif has_diacritics(token.form) or not self._candidates.get(token.form):
                    lattice.append([token.form])
                else:
                    lattice.append(self._candidates[token.form])
            for token, form in zip(run, self._best_path(lattice)):
                typed = text[token.start : token.end]
                pieces.append(text[cursor : token.start])
                changed = token.kind == "word" and form != token.form and len(form) == len(typed)
                pieces.append(_with_case(typed, form) if changed else typed)
                cursor = token.end
            run.clear()

        for token in tokens:
            if token.kind == "stop":
                flush()
            else:
                run.append(token)
        flush()
        pieces.append(text[cursor:])
        return "".join(pieces)

    def to_json(self) -> str:
        """The model as a JSON document: the syllable list with counts, and bigrams as index triples."""
        symbols = sorted(set(self.forms) | {s for pair in self.bigrams for s in pair})
        index = {s: i for i, s in enumerate(symbols)}
        flat: list[int] = []
        for (previous, form), count in sorted(self.bigrams.items()):
            flat.extend((index[previous], index[form], count))
        payload = {
            "format": _FORMAT,
            "symbols": symbols,
            "counts": [self.forms.get(s, 0) for s in symbols],
            "bigrams": flat,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, document: str) -> DiacriticRestorer:
        """Read a model written by `to_json`; raises `ValueError` for another format or a damaged one."""
        payload = json.loads(document)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"diacritic model format {payload.get('format') if isinstance(payload, dict) else None!r}"
                             f" is not {_FORMAT}")
        symbols, counts, flat = payload["symbols"], payload["counts"], payload["bigrams"]
        if len(symbols) != len(counts) or len(flat) % 3:
            raise ValueError("diacritic model is damaged: its arrays do not match")
        forms = {s: int(c) for s, c in zip(symbols, counts) if c}
        bigrams = {(symbols[flat[i]], symbols[flat[i + 1]]): int(flat[i + 2]) for i in range(0, len(flat), 3)}
        return cls(forms, bigrams)
