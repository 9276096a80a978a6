"""Articles on disk to a searchable store: loading, cleaning, chunking, embedding, FAISS + SQLite."""
