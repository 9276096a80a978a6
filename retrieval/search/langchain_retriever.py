"""Any hoidap `Retriever` exposed as a LangChain `BaseRetriever`, for chains built with LangChain.

Passages become `Document`s whose `page_content` is the passage text and whose metadata says where it
comes from (article id, title, date, source, character span in the cleaned article) and its score.
The async path is LangChain's default: the synchronous search runs in an executor thread, so it never
blocks an event loop.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from retrieval.types import Passage, Retriever, SearchFilters


def passage_to_document(passage: Passage) -> Document:
    """A LangChain document for one passage."""
    return Document(
        page_content=passage.text,
        metadata={
            "article_id": passage.article_id,
            "title": passage.title,
            "date": passage.date,
            "source": passage.source,
            "start": passage.start,
            "end": passage.end,
            "score": passage.score,
        },
    )


class LangChainRetriever(BaseRetriever):
    """Wraps a hoidap retriever: `LangChainRetriever(retriever=hybrid, k=5).invoke("câu hỏi")`."""

    retriever: Any  # a retrieval.types.Retriever (a Protocol, which pydantic cannot validate)
    k: int = 5
    filters: SearchFilters | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        wrapped: Retriever = self.retriever
        return [passage_to_document(p) for p in wrapped.retrieve(query, self.k, self.filters)]
