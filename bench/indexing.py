"""Indexing throughput, side by side in one run: hoidap's pipeline vs the plain LangChain baseline.

Both embed the same chunks with the same model folder. Ours: `sync_index` (ONNX Runtime encoder in
HOIDAP_EMBEDDING_PRECISION, int8 by default; FAISS + SQLite written atomically) and then the lexical
index `hoidap index` builds with it (BM25 fields over syllables, folded syllables and syllable pairs,
and the diacritic model), timed apart too. Baseline: `FAISS.from_documents` with `HuggingFaceEmbeddings`
(PyTorch sentence-transformers, fp32) and `save_local`. Models are loaded before the clocks start.
Then a re-index of the unchanged corpus is timed against the full build.

    .venv/bin/python bench/indexing.py [--corpus PATH ...] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bot.settings import BUNDLED_CORPUS, Settings
from bot.wiring import build_embedder, chunk_settings
from index.chunking import split_into_chunks
from index.cleaning import clean_article
from index.indexer import passage_text, sync_index
from index.loading import load_documents
from index.store import IndexStore
from retrieval.search.lexical import open_lexical_index

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, nargs="*", default=[BUNDLED_CORPUS, REPO / "eval" / "xquad_vi" / "corpus.jsonl"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    settings = Settings()
    embedder = build_embedder(settings, new_index=True)
    embedder.prepare()
    documents, _ = load_documents(args.corpus)
    texts = []
    for doc in documents:
        article = clean_article(doc)
        texts += [passage_text(article.title, c.text) for c in split_into_chunks(
            article, size_words=settings.chunk_size, overlap_sentences=settings.chunk_overlap)]
    print(f"corpus: {len(documents)} articles, {len(texts)} chunks; model {embedder.identity.name}, "
          f"{embedder.identity.precision} ({embedder.backend}), batch {settings.embedding_batch_size}")

    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings

    baseline_model = HuggingFaceEmbeddings(model_name=str(embedder.folder), model_kwargs={"device": "cpu"},
                                           encode_kwargs={"normalize_embeddings": True})
    baseline_model.embed_documents(texts[:2])  # warm
    sample = texts[:32]
    torch_vectors = baseline_model._client.encode_document(sample, normalize_embeddings=True)
    cosine = (embedder.embed_passages(sample) * torch_vectors).sum(axis=1)
    print(f"vectors against PyTorch sentence-transformers fp32 (the baseline's): min cosine {cosine.min():.5f}, "
          f"mean {cosine.mean():.5f} over {len(sample)} chunks")
    ours, baseline, resync, lexical = [], [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            began = time.perf_counter()
            summary = sync_index(args.corpus, Path(tmp) / "index", embedder, chunk_settings(settings))
            lexical_began = time.perf_counter()
            built = IndexStore.open(Path(tmp) / "index")
            open_lexical_index(built)
            built.close()
            lexical.append(time.perf_counter() - lexical_began)
            ours.append(summary.chunks_embedded / (time.perf_counter() - began))
            began = time.perf_counter()
            again = sync_index(args.corpus, Path(tmp) / "index", embedder, chunk_settings(settings))
            resync.append(time.perf_counter() - began)
            assert again.chunks_embedded == 0
            full_seconds = summary.chunks_embedded / ours[-1]
            began = time.perf_counter()
            store = FAISS.from_documents([Document(page_content=t) for t in texts], baseline_model)
            store.save_local(str(Path(tmp) / "langchain"))
            baseline.append(len(texts) / (time.perf_counter() - began))
        print(f"  run: ours {ours[-1]:.1f} chunks/s (lexical index {lexical[-1]:.2f}s of it), baseline "
              f"{baseline[-1]:.1f} chunks/s, full build {full_seconds:.2f}s, unchanged re-index {resync[-1] * 1000:.1f} ms")
    o, b = statistics.median(ours), statistics.median(baseline)
    full = len(texts) / o
    print(f"indexing throughput (median of {args.repeats}): ours {o:.1f} chunks/s, LangChain baseline {b:.1f} chunks/s, "
          f"ratio {o / b:.2f}x")
    print(f"unchanged re-index: {statistics.median(resync) * 1000:.1f} ms vs full build {full:.2f}s "
          f"= {full / statistics.median(resync):.0f}x faster")


if __name__ == "__main__":
    main()
