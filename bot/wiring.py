"""Builds the running pieces from one Settings object: embedder, store, lexical index, retriever, answerer.

Each piece is told what it needs: the lexical index is opened once and given to both the retriever
and the gate; answerers are built by name from one table (`ANSWERERS`). A one-shot command loads only
what its question needs: the LLM runtimes and LangChain are imported by the builders that use them.
"""

from __future__ import annotations

import logging
import os
import threading
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import NEW_INDEX_PRECISION, Settings
from index.embedding import Embedder, Precision, load_embedder
from index.errors import HoidapError, IndexMissingError
from index.indexer import (
    ChunkSettings,
    Confirm,
    EmbeddedTarget,
    Progress,
    SyncSummary,
    SyncTarget,
    remove_from_index,
    sync_documents,
    sync_index,
)
from index.journal import JOURNAL
from index.sources import ReadLimits, Source
from index.store import MANIFEST, IndexStore, Manifest
from index.stores import Store
from index.stores.postgres import HnswSettings
from retrieval.answering.crosslingual import INDEX_MODEL_WEIGHT, MeaningReader
from retrieval.answering.extractive import ExtractiveAnswerer
from retrieval.answering.judgement import CorpusGate
from retrieval.search.hybrid import FilteredRetriever, HybridRetriever
from retrieval.search.lexical import (
    QUESTION_PRIOR_WEIGHT,
    LexicalIndex,
    open_lexical_index,
    saved_lexical_problems,
)
from retrieval.search.restore import DiacriticRestorer
from retrieval.types import Answerer, Retriever, SearchFilters

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from index.web.fetching import FetchPolicy
    from index.web.registry import WebRegistry
    from index.web.syncing import WebSource
    from retrieval.answering.generative import GenerativeAnswerer, PromptShape

log = logging.getLogger(__name__)

def offline_environment() -> None:
    """Nothing below may reach the Hugging Face Hub: weights come from local folders only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_embedder(settings: Settings, index_dir: Path | None = None, *, new_index: bool = False) -> Embedder:
    """The embedding model in the precision of `embedding_precision(settings, index_dir)`, or, for a caller that
    builds indexes of its own (`new_index`, the benchmarks), the precision a new index gets."""
    offline_environment()
    precision = (settings.embedding_precision or _new_index_precision(settings)) if new_index \
        else embedding_precision(settings, index_dir)
    if precision == "int8" and settings.embedding_backend == "torch":
        raise HoidapError(
            "int8 embedding runs through ONNX Runtime, but HOIDAP_EMBEDDING_BACKEND is torch. Unset it (onnx is "
            "the default), or embed in fp32: HOIDAP_EMBEDDING_PRECISION=fp32 and `hoidap index` (an int8 index "
            "is then embedded again).",
            vi="Nhúng int8 chạy bằng ONNX Runtime, nhưng HOIDAP_EMBEDDING_BACKEND là torch. Hãy bỏ thiết lập đó "
               "(mặc định là onnx), hoặc nhúng fp32: HOIDAP_EMBEDDING_PRECISION=fp32 rồi `hoidap index` (chỉ mục "
               "int8 sẽ được nhúng lại).")
    return load_embedder(settings.embedding_model, settings.models_dir, precision=precision,
                         batch_size=settings.embedding_batch_size, backend=settings.embedding_backend)


def _new_index_precision(settings: Settings) -> Precision:
    """int8 where it can run (the ONNX backend), else fp32."""
    return NEW_INDEX_PRECISION if settings.embedding_backend == "onnx" else "fp32"


def embedding_precision(settings: Settings, index_dir: Path | None = None) -> Precision:
    """The configured precision; unset, the configured store's (so an upgrade neither re-embeds an index nor
    refuses its questions), or a new index's (`_new_index_precision`) when there is no index yet."""
    if settings.embedding_precision is not None:
        return settings.embedding_precision
    if database_url(settings) is None:
        path = (index_dir or settings.index_dir).resolve() / MANIFEST
        if not path.is_file():
            return _new_index_precision(settings)
        try:
            return typing.cast(Precision, Manifest.read(path).embedding_precision)
        except HoidapError:  # opening the store reports the damage
            return _new_index_precision(settings)
    try:
        store = open_any_store(settings)
    except HoidapError:  # no index yet, or a fault the store's own open reports
        return _new_index_precision(settings)
    try:
        return typing.cast(Precision, store.manifest.embedding_precision)
    finally:
        store.close()


# One English reader per process and folder: ~1.2 GB, loaded at the first English question, kept across reloads.
_ENGLISH_EMBEDDERS: dict[Path, Embedder] = {}
_ENGLISH_LOCK = threading.Lock()


def english_reader(settings: Settings, embedder: Embedder | None) -> MeaningReader | None:
    """The reader of English questions (`retrieval.answering.crosslingual`): HOIDAP_ENGLISH_MODEL, or the
    index's own model when that is `none` or the default is not provisioned (with a warning)."""
    from index.english_model import ENGLISH_MODEL, resolve_english_model
    from index.errors import ModelFilesMissingError

    try:
        folder = resolve_english_model(settings.english_model, settings.models_dir)
        if folder is not None:
            with _ENGLISH_LOCK:
                if folder not in _ENGLISH_EMBEDDERS:  # checks the files against their marker (damage)
                    # bf16: the same choices as fp32 at about three times the speed on these CPUs (MODELS.md).
                    _ENGLISH_EMBEDDERS[folder] = Embedder(folder, name=settings.english_model, precision="bf16",
                                                          backend="torch", cache_dir=settings.models_dir)
                return MeaningReader(_ENGLISH_EMBEDDERS[folder])
    except ModelFilesMissingError as missing:  # also damaged: Vietnamese answers must not depend on it
        if settings.english_model != ENGLISH_MODEL:
            raise  # a folder the user named: say so rather than read English otherwise
        log.warning("%s English questions are read with %s meanwhile.", missing, settings.embedding_model)
    return MeaningReader(embedder, weight=INDEX_MODEL_WEIGHT) if embedder is not None else None


def chunk_settings(settings: Settings) -> ChunkSettings:
    return ChunkSettings(settings.chunk_size, settings.chunk_overlap, settings.index_type)


def read_limits(settings: Settings) -> ReadLimits:
    return ReadLimits(max_article_bytes=int(settings.max_article_mb * 2**20))


def sync(settings: Settings, paths: list[Path] | None = None, *, rebuild: bool = False, prune: bool = False,
         index_dir: Path | None = None, progress: Progress | None = None, confirm: Confirm | None = None,
         embedder: Embedder | None = None) -> SyncSummary:
    """Add or update `paths` in the configured store (none: re-sync the remembered sources; the first time, the
    corpus), embedded or PostgreSQL alike."""
    missing = [str(path) for path in paths or () if not (path.exists() or path.is_symlink())]
    if missing:
        listed = ", ".join(missing)
        raise HoidapError(f"No such file or folder: {listed}. Nothing was changed.",
                          vi=f"Không có tệp hay thư mục: {listed}. Chưa thay đổi gì.")
    embedder = embedder or build_embedder(settings, index_dir)
    target = index_target(settings, index_dir)
    summary = sync_index(paths or None, target, embedder, chunk_settings(settings), default=settings.corpus,
                         rebuild=rebuild, prune=prune, progress=progress, confirm=confirm, limits=read_limits(settings),
                         journal=settings.data_dir / JOURNAL)
    _after_sync(settings, index_dir)
    return summary


def index_target(settings: Settings, index_dir: Path | None = None) -> SyncTarget:
    """Where syncs write: PostgreSQL when HOIDAP_DATABASE_URL is set (never the read replica), else the data dir."""
    url = database_url(settings)
    if url is None:
        return EmbeddedTarget(index_dir or settings.index_dir)
    from index.stores.postgres_sync import PostgresTarget

    return PostgresTarget(url, vector_type=settings.database_vector_type, hnsw=hnsw_settings(settings),
                          derive_restorer=restorer_json)


def _after_sync(settings: Settings, index_dir: Path | None = None) -> None:
    """The embedded store's BM25 index is built now rather than at the first question (PostgreSQL's is in SQL)."""
    if database_url(settings) is None:
        store = IndexStore.open(index_dir or settings.index_dir)
        open_lexical_index(store)
        store.close()


def remove(settings: Settings, targets: list[str]) -> tuple[list[str], list[Source]]:
    """Remove articles (by id or file) and sources (by path) from the index; returns what went."""
    removed = remove_from_index(targets, index_target(settings))
    _after_sync(settings)
    return removed


def fetch_policy(settings: Settings) -> FetchPolicy:
    from index.web.fetching import FetchPolicy

    return FetchPolicy(timeout=settings.fetch_timeout, max_bytes=settings.fetch_max_bytes,
                       host_delay=settings.fetch_host_delay, retries=settings.fetch_retries,
                       allow_private=settings.fetch_allow_private)


def web_registry(settings: Settings) -> WebRegistry:
    """The followed feeds and fetched pages: in the database when HOIDAP_DATABASE_URL is set, else the data dir."""
    from index.web.registry import open_registry

    return open_registry(settings.data_dir, database_url(settings))


@contextmanager
def web_source(settings: Settings, progress=None) -> Iterator[WebSource]:
    """Pages and feeds into the configured index, with the polite fetcher and the feed registry."""
    # Imported here: trafilatura and lxml cost every other command (ask, chat) time they never use.
    from index.web.fetching import Fetcher
    from index.web.syncing import WebSource

    embedder: Embedder | None = None

    def index_documents(documents, skipped) -> SyncSummary:
        nonlocal embedder
        if not documents:  # nothing new: no model to load
            return _unchanged_summary(settings, skipped)
        embedder = embedder or build_embedder(settings)
        summary = sync_documents(documents, index_target(settings), embedder, chunk_settings(settings),
                                 skipped=skipped, progress=progress, journal=settings.data_dir / JOURNAL)
        _after_sync(settings)
        return summary

    registry = web_registry(settings)
    try:
        with Fetcher(fetch_policy(settings), robots_cache=registry) as fetcher:
            yield WebSource(fetcher, registry, index_documents)
    finally:
        registry.close()


def _unchanged_summary(settings: Settings, skipped) -> SyncSummary:
    summary = SyncSummary(skipped=list(skipped))
    try:
        store = open_any_store(settings)
    except IndexMissingError:
        return summary
    summary.n_articles, summary.n_chunks = len(store.articles()), store.chunk_count()
    store.close()
    return summary


# ---------------------------------------------------------------------------- stores

def database_url(settings: Settings) -> str | None:
    """The PostgreSQL store's URL, or None for the embedded store."""
    return settings.database_url.get_secret_value() if settings.database_url else None


def read_url(settings: Settings) -> str | None:
    """Where questions read the PostgreSQL store: the read replica when one is set, else the primary."""
    if settings.database_read_url and database_url(settings):
        return settings.database_read_url.get_secret_value()
    return database_url(settings)


def store_location(settings: Settings, index_dir: Path | None = None) -> str:
    """Where the configured store is, for people (never the database password)."""
    url = database_url(settings)
    if url is None:
        return str(index_dir or settings.index_dir)
    from index.stores.postgres import describe_url

    return f"PostgreSQL at {describe_url(url)}"


def store_check(settings: Settings, current: Callable[[], Store]):
    """The bot's health check of its index: the index link still names an index (embedded; the link, not the
    generation loaded, since the bot reloads from it), or the database answering (PostgreSQL)."""
    import asyncio

    from bot.ops import index_check

    if database_url(settings) is None:
        return index_check(settings.index_dir)

    async def check() -> str | None:
        try:
            await asyncio.to_thread(current().ping)
        except HoidapError as error:
            return str(error)
        return None

    return check


def hnsw_settings(settings: Settings) -> HnswSettings:
    return HnswSettings(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)


def restorer_json(texts) -> str:
    """The diacritic model of a corpus, for a store that keeps it (the embedded one saves it with BM25)."""
    return DiacriticRestorer.build(texts, question_weight=QUESTION_PRIOR_WEIGHT).to_json()


def open_any_store(settings: Settings, index_dir: Path | None = None) -> Store:
    """The configured store, for listing and checking (no model check)."""
    url = database_url(settings)
    if url is not None:
        from index.stores.postgres import PostgresStore

        return PostgresStore.open(url, hnsw=hnsw_settings(settings))
    return IndexStore.open(index_dir or settings.index_dir)


@dataclass
class Components:
    """Everything a front-end needs, built once per process and shared by all conversations."""

    settings: Settings
    embedder: Embedder
    store: Store
    lexical: LexicalIndex | None  # the embedded store's BM25 index; the PostgreSQL store searches in SQL
    retriever: Retriever
    answerer: Answerer
    answerer_name: str


def check_index(index_dir: Path) -> tuple[str, list[str]]:
    """Describe the index and list every problem in it (store and saved BM25 index) without changing anything."""
    store = IndexStore.open(index_dir)
    try:
        return store.describe(), [*store.verify(), *saved_lexical_problems(store)]
    finally:
        store.close()


def check_store(settings: Settings) -> tuple[str, list[str]]:
    """`check_index` of the configured store, embedded or PostgreSQL."""
    if database_url(settings) is None:
        return check_index(settings.index_dir)
    store = open_any_store(settings)
    try:
        return store.describe(), store.verify()
    finally:
        store.close()


def build_retriever(store: IndexStore, embedder: Embedder, lexical: LexicalIndex,
                    filters: SearchFilters | None = None) -> Retriever:
    retriever = HybridRetriever(store, embedder, lexical)
    return FilteredRetriever(retriever, filters) if filters else retriever


# ---------------------------------------------------------------------------- answerers

AnswererBuilder = Callable[[Settings, Retriever, CorpusGate], Answerer]


@dataclass(frozen=True)
class AnswererKind:
    """An answerer a user can choose by name, and how it is built from the settings."""

    name: str
    summary: str
    build: AnswererBuilder


def _extractive(settings: Settings, retriever: Retriever, gate: CorpusGate) -> ExtractiveAnswerer:
    return ExtractiveAnswerer(retriever, top_k=settings.top_k, gate=gate, history_turns=settings.history_turns,
                              reader=english_reader(settings, gate.embedder))


def build_generative(settings: Settings, retriever: Retriever, gate: CorpusGate, chat_model: BaseChatModel,
                     shape: PromptShape) -> GenerativeAnswerer:
    """A generative answerer over `chat_model`, with the gate and (when configured) the extractive fallback."""
    # Imported here: LangChain comes with it, and only an LLM answerer needs it.
    from retrieval.answering.excerpts import rank_by_evidence
    from retrieval.answering.generative import GenerativeAnswerer

    fallback = _extractive(settings, retriever, gate).answer_from if settings.extractive_fallback else None
    reader = english_reader(settings, gate.embedder)
    ranker = reader.rank if reader is not None else rank_by_evidence
    return GenerativeAnswerer(retriever, chat_model, top_k=settings.top_k, gate=gate, shape=shape,
                              history_turns=settings.history_turns, fallback=fallback, ranker=ranker)


def _local(settings: Settings, retriever: Retriever, gate: CorpusGate) -> Answerer:
    from retrieval.answering.generative import COMPACT_PROMPT
    from retrieval.answering.llm.provisioning import resolve_llm_path
    from retrieval.answering.llm.runtimes import load_local_chat_model

    chat_model = load_local_chat_model(resolve_llm_path(settings.models_dir, settings.llm_model),
                                       threads=settings.llm_threads, context=settings.llm_context,
                                       max_tokens=settings.llm_max_tokens)
    return build_generative(settings, retriever, gate, chat_model, COMPACT_PROMPT)


def _openai(settings: Settings, retriever: Retriever, gate: CorpusGate) -> Answerer:
    from retrieval.answering.generative import FULL_PROMPT
    from retrieval.answering.llm.runtimes import openai_chat_model

    if not settings.openai_base_url and not settings.openai_api_key:
        raise HoidapError("The openai answerer needs HOIDAP_OPENAI_BASE_URL and/or HOIDAP_OPENAI_API_KEY.",
                          vi="Bộ trả lời openai cần HOIDAP_OPENAI_BASE_URL và/hoặc HOIDAP_OPENAI_API_KEY.")
    chat_model = openai_chat_model(base_url=settings.openai_base_url, model=settings.openai_model,
                                   api_key=settings.openai_api_key, max_tokens=settings.llm_max_tokens)
    return build_generative(settings, retriever, gate, chat_model, FULL_PROMPT)


ANSWERERS: dict[str, AnswererKind] = {
    kind.name: kind
    for kind in (
        AnswererKind("extractive", "quotes the sentences that answer; offline, instant, deterministic", _extractive),
        AnswererKind("local", "a GGUF model on the CPU through llama.cpp, streamed", _local),
        AnswererKind("openai", "any OpenAI-compatible endpoint through LangChain", _openai),
    )
}


def choose_answerer(settings: Settings) -> str:
    """The configured answerer; `auto` is a configured OpenAI-compatible endpoint, else the extractive answerer.

    The local LLM is used only when asked for by name: with the claim check (`retrieval.answering.claims`)
    it is right at least as often as the extractive answerer on the tuning set (130 held-out questions:
    correct .560 vs .500, token F1 .281 vs .247) and on the bundled set (.955 both), but at 4-10 s an
    answer on 2 cores against 0.1 s, and with a 1.1 GB model to assemble (eval/README.md).
    """
    if settings.answerer != "auto":
        return settings.answerer
    if settings.openai_base_url or settings.openai_api_key:
        return "openai"
    return "extractive"


def build_answerer(settings: Settings, retriever: Retriever, gate: CorpusGate, name: str | None = None) -> Answerer:
    """The answerer called `name` (default: `choose_answerer`), over `retriever`, refusing through `gate`."""
    name = (name or choose_answerer(settings)).strip().lower()  # any case, as in the setting
    kind = ANSWERERS.get(name)
    if kind is None:
        raise HoidapError(f"Unknown answerer {name!r}: choose {', '.join(ANSWERERS)}.",
                          vi=f"Không có bộ trả lời {name!r}: hãy chọn {', '.join(ANSWERERS)}.")
    return kind.build(settings, retriever, gate)


def warm_up_in_background(answerer: Answerer) -> None:
    """For long-running front-ends: load the LLM and cache the fixed prompt while the user types."""

    def run() -> None:
        try:
            answerer.warm_up()
        except HoidapError as error:  # the first question will report it properly
            log.warning("LLM warm-up failed: %s", error)

    threading.Thread(target=run, name="llm-warm-up", daemon=True).start()


def build_components(settings: Settings, *, answerer: str | None = None, index_dir: Path | None = None,
                     filters: SearchFilters | None = None, embedder: Embedder | None = None,
                     wrap_retriever: Callable[[Retriever], Retriever] | None = None) -> Components:
    """Load model, index, retriever and answerer for a front-end (reusing `embedder` when one is loaded).

    `wrap_retriever` puts a layer around the retriever the answerer uses (the bot's timing, for metrics).
    """
    embedder = embedder or build_embedder(settings, index_dir)
    url = read_url(settings)
    if url is not None:
        from index.stores.postgres import PostgresStore
        from retrieval.search.sql import SqlHybridRetriever

        store = PostgresStore.open(url, model=embedder.identity, hnsw=hnsw_settings(settings))
        lexical, idf = None, store.idf
        sql = SqlHybridRetriever(store, embedder)
        retriever: Retriever = sql
        restorer = sql.restorer
        if filters:
            retriever = FilteredRetriever(retriever, filters)
    else:
        store = IndexStore.open(index_dir or settings.index_dir, model=embedder.identity)
        lexical = open_lexical_index(store)
        retriever, idf = build_retriever(store, embedder, lexical, filters), lexical.idf
        restorer = lexical.restorer
    if wrap_retriever is not None:
        retriever = wrap_retriever(retriever)
    name = (answerer or choose_answerer(settings)).strip().lower()
    gate = CorpusGate(idf, embedder, known_pair=restorer.has_pair if restorer is not None else None)
    built = build_answerer(settings, retriever, gate, name)
    return Components(settings, embedder, store, lexical, retriever, built, name)


class ReloadingAnswerer(Answerer):
    """The Answerer over the current index generation, for a long-running bot that indexes as it runs.

    `reload()` builds the components again over the index as it is now (reusing the loaded embedding
    model) and swaps them in; questions already being answered finish on the old ones.
    """

    def __init__(self, build: Callable[[Embedder | None], Components]) -> None:
        self._build = build
        self._components = build(None)
        self._lock = threading.Lock()

    @property
    def components(self) -> Components:
        return self._components

    def reload(self) -> None:
        with self._lock:
            self._components = self._build(self._components.embedder)

    def answer(self, question, history=None):
        return self._components.answerer.answer(question, history)

    def stream(self, question, history=None):
        return self._components.answerer.stream(question, history)

    def warm_up(self) -> None:
        self._components.answerer.warm_up()
