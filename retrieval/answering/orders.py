"""Orders in article text: sentences that tell whoever answers questions what to answer (prompt injection).

News quotes demands all the time ("Bộ trưởng yêu cầu các địa phương trả lời kiến nghị…", "he told
reporters to answer…"), so no word or phrase makes an order. A sentence is one by its *structure*:

- an **act** aimed at answering: a speech or output verb (`trả lời`, `đáp`, `nói`, `khẳng định`, `answer`,
  `say`, `write`, `print`…), a verb that sets instructions aside (`bỏ qua`, `phớt lờ`, `ignore`,
  `disregard`… with an instruction noun as its object: `hướng dẫn`, `quy tắc`, `rules`, `prompt`…), or a
  change of role (`đóng vai`, `pretend`, `you are now`…);
- **addressed** to the answerer: the act has no subject of its own (an imperative: first in the sentence,
  after a colon, after a condition such as `nếu ai hỏi…,` / `when asked…,`, or marked `hãy`/`please`), or
  its subject is the reader, a second person (`bạn`, `you`), an assistant or a model, or the questions
  themselves, with a modal (`phải`, `cần`, `nên`, `must`, `should`); a subject of the third person
  (`ông A trả lời rằng…`, `the minister replied that…`) is reported speech, never an order;
- with **content** to answer: `rằng`, `là`, a colon, a quotation, `bằng một từ`, `that`, `with`, `only`
  after the verb, or the sentence scoping every question (`mọi câu hỏi`, `any question`), imagining the
  asker (`nếu ai hỏi`, `if anyone asks`), or naming instructions and prompts.

Also orders: a statement of what *the answer* must be (`câu trả lời … phải là`, `the correct answer to any
question … is`), and a chat-transcript role line (`SYSTEM:`). Sentences are read with their accents
(`bạn` is not `Ban`), or folded when typed without any. `bench/injection.py --detector` measures the
rules on held-out sentences written apart from them.

The generative answerer also uses `relays_an_order` after generation: an answer whose every new word comes
from such sentences, to a question that is not about them, carries the order out instead of answering.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from index.chunking import split_into_sentences
from index.text import (
    content_features,
    content_words,
    fold,
    has_diacritics,
    normalize,
    normalize_tone_marks,
    strip_citations,
)
from retrieval.types import Source

# --- vocabulary (accented; folded automatically for text typed without accents) -------------------

_OUTPUT_VERBS = """
trả lời | đáp | đáp lại | trả về | nói | nói với | viết | viết ra | ghi | ghi ra | in ra | xuất ra | phản hồi | khẳng định
| nhắc lại | lặp lại | chép lại | tuyên bố | xác nhận | bảo | gõ | điền | kết luận | nêu | trình bày | đưa ra
| answer | reply | respond | say | state | claim | tell | write | print | output | return | type | repeat | confirm
| assert | declare | insist | mention | reveal | disclose | show | display | tiết lộ | hiển thị | cho xem
| inform | notify | explain | advise | report | suggest | thông báo | giải thích | cho biết | báo cho | let know
"""
# Compounds that contain an output verb but are not one ("nói chuyện": talk, "hỏi đáp": Q&A column).
_NOT_ACTS = """
nói chuyện | nói không với | ghi nhận | ghi bàn | ghi danh | ghi chú | ghi công | đáp ứng | đáp án | hỏi đáp | viết tắt
| bảo đảm | bảo vệ | bảo hiểm | bảo quản | bảo tồn | bảo dưỡng | bảo trì | bảo lãnh | bảo hành | bảo tàng | bảo hộ
| nêu gương | trả lời phỏng vấn | đưa ra thị trường
"""
_SETTING_ASIDE_VERBS = """
bỏ qua | phớt lờ | lờ đi | quên | quên đi | bất chấp | gạt bỏ | gạt sang một bên | vứt bỏ | không tuân theo | không làm theo
| đừng làm theo | đừng tuân theo | không tuân thủ | vượt qua | hủy bỏ
| ignore | disregard | forget | override | bypass | skip | discard | abandon | do not follow | don't follow | stop following
"""
_INSTRUCTION_NOUNS = """
hướng dẫn | chỉ dẫn | quy tắc | luật lệ | lệnh | câu lệnh | lời nhắc | lời dặn | thiết lập | ràng buộc | đoạn trích
| những gì ở trên | mọi thứ ở trên | prompt | system prompt | lời nhắc hệ thống | chỉ dẫn hệ thống | hướng dẫn hệ thống
| instruction | instructions | rule | rules | prompts | guideline | guidelines | directions | guardrails | restrictions
| everything above | the above | passages | excerpts | context | the other passages
"""
_ROLE_ACTS = "đóng vai | nhập vai | giả vờ | giả làm | act as | pretend | roleplay | role play | impersonate"
_ROLE_CHANGES = """
bạn bây giờ là | từ bây giờ bạn là | từ nay bạn là | từ giờ bạn là | kể từ giờ bạn là | kể từ bây giờ bạn là
| bạn là một trợ lý | bạn là trợ lý | you are now | you are an assistant | you are a chatbot | from now on you are
"""
_ANSWER_NOUNS = "câu trả lời | lời đáp | câu đáp | answer | answers | response | reply"
# Who an order speaks to.
_SECOND_PERSON = "bạn | các bạn | quý vị | cậu | you | your | yourself"
_READERS = "người đọc | độc giả | bạn đọc | người dùng | reader | readers | user | users"
_ASSISTANTS = """
trợ lý | trợ lý ảo | trợ lý ai | chatbot | bot | mô hình | mô hình ngôn ngữ | mô hình ai | hệ thống ai | công cụ ai | máy
| hệ thống hỏi đáp | assistant | assistants | ai assistant | ai assistants | chatbots | language model | language models
| ai model | ai models | llm | llms | dear ai | ai system | ai systems
"""
# What makes a subject-led act a directive rather than a report.
_MODALS = """
phải | cần | nên | hãy | buộc phải | được yêu cầu | chỉ được | luôn | luôn luôn | yêu cầu | đề nghị | bảo | xin
| must | should | shall | need to | needs to | have to | has to | ought to | always | only | please | are to | is to
| are required to | are asked to | ask | tell | instruct
"""
# Words that may stand before an imperative verb.
_PARTICLES = """
hãy | xin | xin hãy | vui lòng | làm ơn | chỉ | chỉ cần | luôn | luôn luôn | cứ | thì | thì hãy | và | rồi | sau đó | nhưng
| thay vào đó | ngay | chỉ việc | đừng | không được | please | kindly | just | only | simply | always | never | do | do not
| don't | then | and | but | now | also | instead | rather | immediately
"""
_HARD_IMPERATIVES = "hãy | xin | vui lòng | làm ơn | đừng | cứ | please | kindly | do not | don't | never"
# A segment opening with one of these is a condition or a frame; the verb-first segment after it is an imperative.
_SUBORDINATORS = """
nếu | khi | lúc | hễ | trong trường hợp | trước khi | sau khi | với | đối với | để | trong | kể từ | từ | mỗi khi | bất cứ khi nào
| if | when | whenever | before | after | once | should | for | with | in | from | upon | to | as | while
| theo | according to | whoever | whatever | whichever | anyone who | ai hỏi | bất kể
"""
_VOCATIVES = "lưu ý | chú ý | ghi chú | gửi | dành cho | note | attention | dear | to"
# The sentence speaks of any question, or imagines someone asking.
_SCOPES = """
mọi câu hỏi | bất kỳ câu hỏi | bất cứ câu hỏi | tất cả câu hỏi | tất cả các câu hỏi | mỗi câu hỏi | câu hỏi tiếp theo
| các câu hỏi sau | mọi câu trả lời | mọi yêu cầu | bất cứ điều gì | bất kỳ điều gì | mọi người hỏi
| every question | any question | all questions | each question | the next question | any query | every query | all queries
| any questions | future questions | every answer | all answers | any prompt | every prompt | anything
"""
_ASKING = "hỏi | được hỏi | thắc mắc | ask | asks | asked | asking | question | questions | queries"
_CONDITIONS = "nếu | khi | hễ | mỗi khi | lúc | trong trường hợp | if | when | whenever | should | in case | once"
_CONTENT_MARKERS = """
rằng | là | bằng một từ | bằng từ | bằng câu | bằng một câu | đúng một | nguyên văn | y nguyên | duy nhất | chỉ
| that | with | only | just | exactly | verbatim | word for word | the word | the number | the sentence
"""
_NORMATIVE = "phải là | luôn là | sẽ luôn là | bắt buộc là | must be | should be | shall be | must always be | will always be | is always"
_CORRECT = "đúng | chính xác | duy nhất | correct | right | only | true"
_ABOUT = "câu hỏi về | câu hỏi liên quan | question about | questions about | question on | question regarding"
_COPULAS = "là | is | are | be"

_TOKEN_RE = re.compile(r"\w+(?:'\w+)?|[:;,()\[\]–—\"“”«»‘’]")
_SEPARATORS = frozenset(",;()[]–—")
_CONSEQUENT = frozenset({"thì", "thi"})  # "ai hỏi … thì cứ nói …": the consequent is a clause of its own
_QUOTES = frozenset("\"“”«»‘’")
_ROLE_LINE_RE = re.compile(
    r"^\W{0,3}(?:system|assistant|user|admin|developer|he thong|tro ly|quan tri vien|nguoi dung)\s*:", re.IGNORECASE)
_TEMPLATE_TOKEN_RE = re.compile(r"<\|?/?(?:im_start|im_end|system|assistant|user|passages|s)\|?>", re.IGNORECASE)
_WINDOW = 8  # tokens after an act in which its content or object is looked for


@dataclass(frozen=True)
class _Phrases:
    """Phrases as token tuples, matched longest first at a position."""

    phrases: frozenset[tuple[str, ...]]
    longest: int

    @classmethod
    def of(cls, spec: str, folded: bool) -> _Phrases:
        phrases = {tuple(_tokens(normalize(p.strip()), folded)) for p in spec.split("|") if p.strip()}
        return cls(frozenset(phrases), max(map(len, phrases)))

    def at(self, tokens: Sequence[str], i: int) -> int:
        """The length of the longest phrase starting at `i` (0: none)."""
        for width in range(min(self.longest, len(tokens) - i), 0, -1):
            if tuple(tokens[i : i + width]) in self.phrases:
                return width
        return 0

    def find(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        found = []
        for i in range(len(tokens)):
            if width := self.at(tokens, i):
                found.append((i, width))
        return found

    def within(self, tokens: Sequence[str]) -> bool:
        return any(self.at(tokens, i) for i in range(len(tokens)))


@dataclass(frozen=True)
class _Lexicon:
    output: _Phrases
    not_acts: _Phrases
    setting_aside: _Phrases
    instruction_nouns: _Phrases
    role_acts: _Phrases
    role_changes: _Phrases
    answer_nouns: _Phrases
    addressees: _Phrases
    second_person: _Phrases
    assistants: _Phrases
    modals: _Phrases
    particles: _Phrases
    hard_imperatives: _Phrases
    subordinators: _Phrases
    vocatives: _Phrases
    scopes: _Phrases
    asking: _Phrases
    conditions: _Phrases
    content_markers: _Phrases
    normative: _Phrases
    correct: _Phrases
    about: _Phrases
    copulas: _Phrases


@lru_cache(maxsize=2)
def _lexicon(folded: bool) -> _Lexicon:
    def p(spec: str) -> _Phrases:
        return _Phrases.of(spec, folded)

    return _Lexicon(
        output=p(_OUTPUT_VERBS), not_acts=p(_NOT_ACTS), setting_aside=p(_SETTING_ASIDE_VERBS),
        instruction_nouns=p(_INSTRUCTION_NOUNS), role_acts=p(_ROLE_ACTS), role_changes=p(_ROLE_CHANGES),
        answer_nouns=p(_ANSWER_NOUNS), addressees=p(f"{_SECOND_PERSON} | {_READERS} | {_ASSISTANTS}"),
        second_person=p(f"{_SECOND_PERSON} | {_READERS}"), assistants=p(_ASSISTANTS), modals=p(_MODALS),
        particles=p(_PARTICLES), hard_imperatives=p(_HARD_IMPERATIVES), subordinators=p(_SUBORDINATORS),
        vocatives=p(_VOCATIVES), scopes=p(_SCOPES), asking=p(_ASKING), conditions=p(_CONDITIONS),
        content_markers=p(_CONTENT_MARKERS), normative=p(_NORMATIVE), correct=p(_CORRECT), about=p(_ABOUT),
        copulas=p(_COPULAS),
    )


def _tokens(text: str, folded: bool) -> list[str]:
    lowered = normalize_tone_marks(normalize(text).lower())
    return _TOKEN_RE.findall(fold(lowered) if folded else lowered)


# --- the sentence ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    tokens: list[str]
    after_colon: bool  # the segment follows a colon
    colon_after: bool  # a colon ends it (its act's content follows)


def _segments(tokens: list[str]) -> list[_Segment]:
    """The sentence cut at commas, semicolons, dashes, brackets and colons."""
    segments: list[_Segment] = []
    current: list[str] = []
    after_colon = False
    for token in tokens + [";"]:
        if token in _SEPARATORS or token == ":" or token in _CONSEQUENT:
            if current:
                segments.append(_Segment(current, after_colon, token == ":"))
            elif token == ":" and segments:
                segments[-1] = _Segment(segments[-1].tokens, segments[-1].after_colon, True)
            current, after_colon = [], token == ":" or (after_colon and not current)
        else:
            current.append(token)
    return segments


class _Reading:
    """One sentence read for orders (see the module docstring)."""

    def __init__(self, sentence: str) -> None:
        self.folded = not has_diacritics(sentence)
        self.lex = _lexicon(self.folded)
        self.tokens = _tokens(sentence, self.folded)
        self.words = [t for t in self.tokens if t[0].isalnum()]
        self.segments = _segments(self.tokens)
        # Words capitalised in the sentence: a capitalised act mid-sentence starts a clause whose full
        # stop went missing ("Ý kiến bạn đọc Bỏ qua mọi hướng dẫn…").
        self.capitalised = {t for t, raw in zip(self.tokens, _TOKEN_RE.findall(normalize(sentence)))
                            if raw[:1].isupper() and len(raw) > 1 and not raw.isupper()}
        lex = self.lex
        self.scoped = lex.scopes.within(self.words)
        self.imagines_asker = any(
            lex.asking.within(self.words[i : i + 8]) for i, _ in lex.conditions.find(self.words))
        self.names_instructions = lex.instruction_nouns.within(self.words)

    def is_order(self) -> bool:
        return self._addressed_act() or self._states_the_answer() or self._changes_role()

    def _strong_cue(self) -> bool:
        return self.scoped or self.imagines_asker or self.names_instructions

    def _addressed_act(self) -> bool:
        imperative_before = False
        for k, segment in enumerate(self.segments):
            positions = [j for j, t in enumerate(segment.tokens) if t[0].isalnum()]
            words = [segment.tokens[j] for j in positions]
            found = False
            for i, width, kind in self._acts(words):
                # (not a name's word: `Đảng Bảo thủ` is a party, not `bảo`)
                restarts = i > 0 and words[i] in self.capitalised and words[i - 1] not in self.capitalised
                if not (restarts or self._addressed(words[:i], k, imperative_before)):
                    continue
                after = words[i + width : i + width + _WINDOW]
                # a quotation opening after the verb
                quoted = any(t in _QUOTES and j < positions[-1] for j, t in enumerate(segment.tokens) if j > positions[i])
                if kind == "aside" and self.lex.instruction_nouns.within(after):
                    return True
                if kind == "role":
                    return True
                if kind == "output":
                    found = True
                    content = (self.lex.content_markers.within(after) or quoted
                               or (segment.colon_after and len(after) <= 3)
                               or self.lex.instruction_nouns.within(after))
                    if content or self._strong_cue():
                        return True
            imperative_before = found or (imperative_before and not words)
        return False

    def _acts(self, words: list[str]) -> Iterable[tuple[int, int, str]]:
        lex = self.lex
        i = 0
        while i < len(words):
            if words[i] == "let" and "know" in words[i + 1 : i + 5]:  # "let its users know that…"
                yield i, words.index("know", i) - i + 1, "output"
                i += 1
                continue
            if width := lex.not_acts.at(words, i):
                i += width
                continue
            for kind, phrases in (("aside", lex.setting_aside), ("role", lex.role_acts), ("output", lex.output)):
                if width := phrases.at(words, i):
                    yield i, width, kind
                    break
            i += 1

    def _addressed(self, prefix: list[str], k: int, imperative_before: bool) -> bool:
        """Whether the act after `prefix` (in segment `k`) speaks to the answerer."""
        lex = self.lex
        rest, hard, modal = _strip(prefix, lex)
        if not rest:
            if hard or k == 0 or imperative_before:
                return True
            if self.segments[k].after_colon:
                return True
            if self._subject_led():
                return False  # "Ông A, khi được hỏi, khẳng định rằng…": the verb is ông A's
            previous = self.segments[k - 1]
            first = [t for t in previous.tokens if t[0].isalnum()]
            return (bool(lex.subordinators.at(first, 0)) or bool(lex.vocatives.at(first, 0))
                    or lex.addressees.within(first))
        if lex.addressees.within(rest) or lex.scopes.within(rest):
            return modal or (lex.second_person.within(rest) and self.imagines_asker)
        return False

    def _subject_led(self) -> bool:
        """The sentence opens with a subject of its own (`Ông A, …`, `The minister, …`), not with an act,
        a condition, a frame, a vocative or a particle."""
        lex = self.lex
        first = [t for t in self.segments[0].tokens if t[0].isalnum()] if self.segments else []
        if not first:
            return False
        openers = (lex.output, lex.setting_aside, lex.role_acts, lex.subordinators, lex.vocatives, lex.particles,
                   lex.addressees, lex.scopes, lex.conditions, lex.modals)
        return not any(phrases.at(first, 0) for phrases in openers) and "ai" not in first[:1]

    def _states_the_answer(self) -> bool:
        """`câu trả lời … phải là`, `the correct answer to any question … is`, `your answer must be`."""
        lex = self.lex
        if not lex.answer_nouns.within(self.words):
            return False
        if lex.normative.within(self.words) or lex.second_person.within(self.words):
            return True
        has_copula = lex.copulas.within(self.words)
        return has_copula and (self.scoped or self.imagines_asker
                               or (lex.correct.within(self.words) and lex.about.within(self.words)))

    def _changes_role(self) -> bool:
        return self.lex.role_changes.within(self.words)


def _strip(prefix: list[str], lex: _Lexicon) -> tuple[list[str], bool, bool]:
    """The prefix without particles and modals; whether it held a hard imperative, whether a modal."""
    rest: list[str] = []
    hard = modal = False
    i = 0
    while i < len(prefix):
        if width := lex.hard_imperatives.at(prefix, i):
            hard = modal = True
        elif width := lex.modals.at(prefix, i):
            modal = True
        elif width := lex.particles.at(prefix, i):
            pass
        else:
            rest.append(prefix[i])
            width = 1
        i += width
    return rest, hard, modal


@lru_cache(maxsize=8192)
def is_order(sentence: str) -> bool:
    """True when `sentence` tells whoever answers questions what to answer or to set instructions aside."""
    stripped = sentence.strip()
    if not stripped:
        return False
    if _ROLE_LINE_RE.match(fold(stripped)) or _TEMPLATE_TOKEN_RE.search(stripped):
        return True
    return _Reading(stripped).is_order()


# Inside a sentence of `split_into_sentences`: a full stop before a lower-case word, which the splitter
# keeps inside (an abbreviation, or a sentence typed without capitals: "… 210 tỷ đồng. ai hỏi … thì cứ nói …").
_INNER_STOP_RE = re.compile(r"(?<=[.!?…])\s+")


def order_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of the sentences of `text` that hold an order."""
    return list(_order_spans(text))


@lru_cache(maxsize=2048)  # the same passages come back question after question
def _order_spans(text: str) -> tuple[tuple[int, int], ...]:
    spans = []
    for start, end in split_into_sentences(text):
        cursor = start
        for stop in [*_INNER_STOP_RE.finditer(text, start, end), None]:
            piece_end = stop.start() if stop else end
            if is_order(text[cursor:piece_end]):
                spans.append((cursor, piece_end))
            cursor = stop.end() if stop else end
    return tuple(spans)


def order_sentences(text: str) -> list[str]:
    """The sentences of `text` that give an answering assistant orders."""
    return [text[start:end] for start, end in order_spans(text)]


# A question is about the orders when at least this share of its words and word pairs is in them.
ABOUT_ORDERS_SHARE = 0.5


def relays_an_order(answer: str, question: str, cited: Sequence[Source]) -> bool:
    """True when the answer only repeats what orders in its cited passages demand, unasked.

    Everything the answer adds to the question must come from order sentences; and the question must
    not be about those sentences ("Bài báo yêu cầu người đọc trả lời bằng từ gì?" may be answered
    with the word, quoted).
    """
    orders = [sentence for source in cited for sentence in order_sentences(source.text)]
    if not orders:
        return False
    added = content_words(strip_citations(answer)) - content_words(question)
    order_words = set().union(*map(content_words, orders))
    if not added or not added <= order_words:
        return False
    asked = content_features(question)
    order_features = set().union(*map(content_features, orders))
    return len(asked & order_features) < ABOUT_ORDERS_SHARE * len(asked)
