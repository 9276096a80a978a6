"""Builds the running pieces from one Settings object: embedder, store, retriever, answerer."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from bot.settings import Settings
from index.embedding import Embedder, load_embedder
from index.errors import HoidapError, ModelFilesDamagedError, ModelFilesMissingError
from index.indexer import ChunkSettings, SyncSummary, sync_index
from index.store import IndexStore
from retrieval.types import Answerer, Retriever, SearchFilters

log = logging.getLogger(__name__)

LEXICAL = "lexical"  # the saved BM25 index, a folder inside the store generation
# What numpy, json and bm25s raise on a cut-off or overwritten file (EOFError: an empty .npy).
_LEXICAL_DAMAGE = (OSError, ValueError, EOFError, KeyError)


def offline_environment() -> None:
    """Nothing below may reach the Hugging Face Hub: weights come from local folders only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_embedder(settings: Settings) -> Embedder:
    offline_environment()
    return load_embedder(settings.embedding_model, settings.models_dir,
                         precision=settings.embedding_precision, batch_size=settings.embedding_batch_size,
                         backend=settings.embedding_backend)


def chunk_settings(settings: Settings) -> ChunkSettings:
    return ChunkSettings(settings.chunk_size, settings.chunk_overlap, settings.index_type)


def sync(settings: Settings, paths: list[Path] | None = None, *, rebuild: bool = False,
         index_dir: Path | None = None, progress=None) -> SyncSummary:
    """Index `paths` (default: the configured corpus) into the configured index directory."""
    embedder = build_embedder(settings)
    index_dir = index_dir or settings.index_dir
    summary = sync_index(paths or settings.corpus, index_dir, embedder, chunk_settings(settings),
                         rebuild=rebuild, progress=progress)
    store = IndexStore.open(index_dir)
    lexical_index(store)  # pay for BM25 now rather than at the first question
    store.close()
    return summary


@dataclass
class Components:
    """Everything a front-end needs, built once per process and shared by all conversations."""

    settings: Settings
    embedder: Embedder
    store: IndexStore
    retriever: Retriever
    answerer: Answerer
    answerer_name: str


def open_store(settings: Settings, embedder: Embedder, index_dir: Path | None = None) -> IndexStore:
    return IndexStore.open(index_dir or settings.index_dir, model=embedder.identity)


def lexical_index(store: IndexStore):
    """The BM25 index of a store generation: loaded from its folder, or built once and saved there.

    A generation never changes once written, so a lexical index saved inside it stays consistent with it.
    A saved index that is damaged is only a cache: it is rebuilt from the store and replaced.
    """
    from retrieval.search.lexical import LexicalIndex

    folder = store.directory / LEXICAL
    try:
        lexical = LexicalIndex.load(folder)
        problem = _lexical_mismatch(lexical, store.manifest.n_chunks)
        if problem is None:
            return lexical
        log.warning("rebuilding the lexical index in %s: %s", folder, problem)
    except FileNotFoundError:
        log.info("building the lexical index of %s", store.directory)
    except _LEXICAL_DAMAGE as reason:
        log.warning("rebuilding the unreadable lexical index in %s (%s)", folder, reason)
    lexical = LexicalIndex.from_store(store)
    partial = store.directory / f"{LEXICAL}.{os.getpid()}.partial"
    stale = store.directory / f"{LEXICAL}.{os.getpid()}.stale"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        lexical.save(partial)
        if folder.exists():  # a damaged save: os.replace cannot overwrite a folder, so move it aside first
            os.replace(folder, stale)
        os.replace(partial, folder)  # readers see the old folder, no folder, or the complete new one
    except OSError as error:  # a read-only index still answers; it just rebuilds BM25 at each start
        log.warning("could not save the lexical index in %s: %s", folder, error)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
    return lexical


def _lexical_mismatch(lexical, n_chunks: int) -> str | None:
    """Why a loaded lexical index does not belong to a store of `n_chunks` chunks, or None when it does."""
    import numpy as np

    if len(lexical) != n_chunks or not np.array_equal(lexical.chunk_ids, np.arange(n_chunks)):
        return f"it indexes {len(lexical)} passages, the store holds {n_chunks}"
    if len(lexical.article_ids) != n_chunks:
        return f"it names the article of {len(lexical.article_ids)} passages, the store holds {n_chunks}"
    return None


def check_index(index_dir: Path) -> tuple[str, list[str]]:
    """Describe the index and list every problem in it (store and saved BM25 index) without changing anything."""
    store = IndexStore.open(index_dir)
    try:
        manifest = store.manifest
        described = (f"{manifest.n_articles} articles, {manifest.n_chunks} chunks, {manifest.embedding_model} "
                     f"(dim {manifest.dim}) in {store.directory}")
        return described, [*store.verify(), *_saved_lexical_problems(store)]
    finally:
        store.close()


def _saved_lexical_problems(store: IndexStore) -> list[str]:
    from retrieval.search.lexical import LexicalIndex

    folder = store.directory / LEXICAL
    if not folder.exists():
        return []  # built at the first question
    hint = "it is rebuilt at the next start, or run `hoidap index --rebuild`"
    try:
        lexical = LexicalIndex.load(folder)
    except _LEXICAL_DAMAGE as reason:
        return [f"the saved BM25 index {folder} is unreadable ({reason}); {hint}"]
    problem = _lexical_mismatch(lexical, store.manifest.n_chunks)
    if problem is None and lexical.article_ids.tolist() != [chunk.article_id for chunk in store.iter_chunks()]:
        problem = "its passages belong to other articles"
    if problem is not None:
        return [f"the saved BM25 index {folder} does not match the store: {problem}; {hint}"]
    return []


def build_retriever(store: IndexStore, embedder: Embedder, filters: SearchFilters | None = None) -> Retriever:
    from retrieval.search.hybrid import FilteredRetriever, HybridRetriever

    retriever = HybridRetriever(store, embedder, lexical_index(store))
    return FilteredRetriever(retriever, filters) if filters else retriever


def choose_answerer(settings: Settings) -> str:
    """The configured answerer; `auto` takes the best one that runs here (remote LLM, local LLM, extractive)."""
    if settings.answerer != "auto":
        return settings.answerer
    if settings.openai_base_url or settings.openai_api_key:
        return "openai"
    from index.models import resolve_llm_path

    try:
        resolve_llm_path(settings.models_dir, settings.llm_model)
    except ModelFilesDamagedError as error:  # present but broken: worth saying, unlike never fetched
        log.warning("answering without the local LLM: %s", error)
        return "extractive"
    except ModelFilesMissingError:
        return "extractive"
    from retrieval.answering.llm.runtimes import local_runtime_available

    return "local" if local_runtime_available() else "extractive"


def build_answerer(settings: Settings, retriever: Retriever, name: str | None = None) -> Answerer:
    from retrieval.answering.extractive import ExtractiveAnswerer
    from retrieval.answering.grounding import CorpusGate

    name = name or choose_answerer(settings)
    gate = CorpusGate(_corpus_idf(retriever))
    extractive = ExtractiveAnswerer(retriever, top_k=settings.top_k, gate=gate, history_turns=settings.history_turns)
    if name == "extractive":
        return extractive
    from retrieval.answering.generative import GenerativeAnswerer
    from retrieval.answering.llm.runtimes import load_local_chat_model, openai_chat_model

    if name == "local":
        from index.models import resolve_llm_path

        chat_model = load_local_chat_model(resolve_llm_path(settings.models_dir, settings.llm_model),
                                           threads=settings.llm_threads, context=settings.llm_context,
                                           max_tokens=settings.llm_max_tokens)
    elif name == "openai":
        if not settings.openai_base_url and not settings.openai_api_key:
            raise HoidapError("The openai answerer needs HOIDAP_OPENAI_BASE_URL and/or HOIDAP_OPENAI_API_KEY.")
        chat_model = openai_chat_model(base_url=settings.openai_base_url, model=settings.openai_model,
                                       api_key=settings.openai_api_key, max_tokens=settings.llm_max_tokens)
    else:
        raise HoidapError(f"Unknown answerer {name!r}: choose extractive, local or openai.")
    return GenerativeAnswerer(retriever, chat_model, top_k=settings.top_k, gate=gate, compact=name == "local",
                              history_turns=settings.history_turns,
                              fallback=extractive.answer_from if settings.extractive_fallback else None)


def warm_up_in_background(answerer: Answerer) -> None:
    """For long-running front-ends: load the LLM and cache the fixed prompt while the user types."""
    warm_up = getattr(answerer, "warm_up", None)
    if warm_up is None:
        return

    def run() -> None:
        try:
            warm_up()
        except HoidapError as error:  # the first question will report it properly
            log.warning("LLM warm-up failed: %s", error)

    threading.Thread(target=run, name="llm-warm-up", daemon=True).start()


def _corpus_idf(retriever: Retriever):
    """The indexed corpus's IDF (accent-folded) for the grounding gate, or None for a retriever without BM25."""
    hybrid = getattr(retriever, "inner", retriever)  # a FilteredRetriever wraps the HybridRetriever
    lexical = getattr(hybrid, "lexical", None)
    return None if lexical is None else lexical.idf


def build_components(settings: Settings, *, answerer: str | None = None, index_dir: Path | None = None,
                     filters: SearchFilters | None = None) -> Components:
    """Load model, index, retriever and answerer for a front-end."""
    embedder = build_embedder(settings)
    store = open_store(settings, embedder, index_dir)
    retriever = build_retriever(store, embedder, filters)
    name = answerer or choose_answerer(settings)
    return Components(settings, embedder, store, retriever, build_answerer(settings, retriever, name), name)
