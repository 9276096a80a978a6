"""BM25 over postings in PostgreSQL (`index.stores.postings`) against the embedded `LexicalIndex` on the same
chunks: the bundled articles and the XQuAD-vi paragraphs, written with the store's own functions into a real
PostgreSQL 18 (`tests/postgres.py`), with vectors that do not matter here. The pruning must never change a
result, so it is also run with a first read so small that every query goes through several rounds."""

from __future__ import annotations

import uuid
from dataclasses import replace
from itertools import product

import numpy as np
import pytest

from bot.settings import BUNDLED_CORPUS
from index.chunking import split_into_chunks, split_into_sentences
from index.cleaning import clean_article
from index.loading import load_documents
from index.stores import postings
from index.stores.postgres import (
    SCHEMA_VERSION,
    STAGED_ARTICLES,
    STAGED_CHUNKS,
    ArticleLimits,
    HnswSettings,
    PostgresStore,
    SchemaVersionError,
    article_row,
    bulk_load_chunks,
    connect,
    copy_chunks,
    create_bulk_indexes,
    create_schema,
    create_staging,
    delete_articles,
    insert_articles,
    lexical_fields,
    move_staged,
    store_statistics,
    write_manifest,
)
from index.stores.postings import FIELDS, create_term_staging, write_postings
from index.store import Manifest
from retrieval.search.lexical import LexicalIndex, query_tokens
from tests.e2e.test_index import XQUAD_CORPUS

DIM = 8
QUESTIONS = [
    "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?",
    "Tong so dang vien nam 2023",
    "đảng viên mới kết nạp Tiền Giang 74.127",
    "Ai phát biểu tại hội nghị?",
    "Tên của thầy tâm linh trong Ấn Độ giáo là gì?",
    "của và các là có được trong cho những với",  # only the most common syllables
    "năm tỉnh người",
    "Quảng Ngãi cầu",
]


def articles():
    documents, _ = load_documents([BUNDLED_CORPUS, XQUAD_CORPUS])
    return [clean_article(document) for document in documents]


def write_corpus(url: str, corpus, *, rounds_of: int | None = None) -> None:
    """The articles and their chunks into an empty database: as a sync writes them (all staged, then
    `write_postings`), or with `rounds_of` as `hoidap migrate` does (`bulk_load_chunks`, rounds of that many
    chunks, the postings and HNSW indexes built after)."""
    connection = connect(url)
    rng = np.random.default_rng(0)
    with connection.transaction():
        create_schema(connection, DIM, "vector", HnswSettings(), indexes=rounds_of is None)
        write_manifest(connection, Manifest(schema_version=SCHEMA_VERSION, embedding_model="test", embedding_weights_sha256="0",
                                            dim=DIM, chunk_size=160, chunk_overlap=1, index_type="vector-hnsw",
                                            n_articles=0, n_chunks=0, pipeline_version="test"))
        chunks = {a.article_id: split_into_chunks(a, size_words=160, overlap_sentences=1) for a in corpus}
        insert_articles(connection, [article_row(a, "hash", len(chunks[a.article_id])) for a in corpus])
        heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in corpus}
        every = [c for a in corpus for c in chunks[a.article_id]]
        vectors = rng.normal(size=(len(every), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        if rounds_of is None:
            create_term_staging(connection)
            copy_chunks(connection, every, heads, vectors, "vector")
            write_postings(connection, None)
        else:
            at = {(c.article_id, c.ordinal): i for i, c in enumerate(every)}
            bulk_load_chunks(connection, every, heads, lambda batch: vectors[[at[c.article_id, c.ordinal] for c in batch]],
                             "vector", round_chunks=rounds_of)
            create_bulk_indexes(connection, "vector", HnswSettings())
        store_statistics(connection, None)
    connection.close()


def postings_by_term(url: str) -> dict:
    """Every field's postings, dictionary and chunk term lists, with terms by their text (ids depend on the
    order terms came in), and the chunks' ids and vectors."""
    connection = connect(url)
    try:
        tables = {}
        for f in FIELDS:
            tables[f] = (
                sorted(connection.execute(f"SELECT t.term, p.block, p.block_max_tf, p.offsets, p.tfs FROM hoidap_postings_{f} p "
                                          f"JOIN hoidap_terms_{f} t USING (term_id)").fetchall()),
                sorted(connection.execute(f"SELECT term, df, max_tf FROM hoidap_terms_{f}").fetchall()),
                sorted(connection.execute(f"SELECT g.chunk_id, array_agg(t.term ORDER BY t.term) FROM hoidap_chunk_terms_{f} g, "
                                          f"unnest(g.term_ids) AS u(term_id) JOIN hoidap_terms_{f} t USING (term_id) "
                                          "GROUP BY 1").fetchall()))
        tables["chunks"] = connection.execute("SELECT chunk_id, article_id, ordinal, embedding::text, plain_len, "
                                              "folded_len, pairs_len FROM hoidap_chunks ORDER BY chunk_id").fetchall()
        return tables
    finally:
        connection.close()


@pytest.fixture(scope="module")
def corpus():
    return articles()


@pytest.fixture(scope="module")
def database(postgres_cluster, corpus) -> str:
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus)
    return url


def assert_same_as_embedded(store: PostgresStore, depths=(1, 5, 50), limits: ArticleLimits | None = None) -> None:
    lexical = LexicalIndex.from_store(store)
    allowed = None
    if limits is not None:
        kept = {a.article_id for a in store.articles() if (a.source or "").casefold() in limits.sources}
        allowed = lexical.article_mask(kept)
    for question in QUESTIONS:
        for field in FIELDS:
            tokens = query_tokens(question, field)
            for depth in depths:
                ours = store.lexical_search(tokens, field, depth, limits)
                theirs = lexical.search(question, depth, field=field, allowed=allowed)
                assert_same_ranking(ours, theirs, (question, field, depth))
        assert store.idf(query_tokens(question, "folded")[0]) == pytest.approx(
            lexical.idf(query_tokens(question, "folded")[0]), rel=1e-9)


def assert_same_ranking(ours: list[tuple[int, float]], theirs: list[tuple[int, float]], what) -> None:
    """The same chunks in the same order with the same scores; among chunks tied with the last one kept,
    `bm25s` keeps any (`np.argpartition`), the store the lowest ids."""
    assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], rel=1e-5), what
    last = theirs[-1][1] if theirs else 0.0
    above = [i for i, (_, s) in enumerate(theirs) if s > last * (1 + 1e-6)]
    assert [ours[i][0] for i in above] == [theirs[i][0] for i in above], what


def test_sql_bm25_ranks_as_the_embedded_bm25(database) -> None:
    store = PostgresStore.open(database)
    try:
        assert store.verify() == []
        assert_same_as_embedded(store)
    finally:
        store.close()


def test_a_bulk_load_in_rounds_writes_what_one_sync_writes(postgres_cluster, database, corpus) -> None:
    """`hoidap migrate`'s rounds (here of one block each, so the chunks go in several rounds)
    give the same postings, dictionary and term lists as staging every chunk at once; BM25 ranks as the
    embedded index, and a later sync's chunk ids follow the loaded ones."""
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus, rounds_of=postings.BLOCK)
    loaded, synced = postings_by_term(url), postings_by_term(database)
    assert len(loaded["chunks"]) > postings.BLOCK and loaded["chunks"][-1][0] == len(loaded["chunks"])
    assert len({block for _, block, *_ in loaded["plain"][0]}) > 1
    assert loaded == synced
    store = PostgresStore.open(url)
    try:
        assert store.verify() == []
        assert_same_as_embedded(store, depths=(5, 50))
        [(next_id,)] = store._rows("SELECT nextval(pg_get_serial_sequence('hoidap_chunks', 'chunk_id'))")
        assert next_id == len(loaded["chunks"]) + 1
    finally:
        store.close()


def stage_and_move(url: str, corpus, round_chunks: int, caplog) -> int:
    """The articles staged and moved in as a sync writes them (`create_staging` in the session, `move_staged`
    in the write's transaction) in rounds of up to `round_chunks` chunks; returns how many rounds went."""
    connection = connect(url)
    connection.autocommit = True
    with connection.transaction():
        create_schema(connection, DIM, "vector", HnswSettings())
        write_manifest(connection, Manifest(schema_version=SCHEMA_VERSION, embedding_model="test",
                                            embedding_weights_sha256="0", dim=DIM, chunk_size=160, chunk_overlap=1,
                                            index_type="vector-hnsw", n_articles=0, n_chunks=0, pipeline_version="test"))
    create_staging(connection, DIM, "vector")
    rng = np.random.default_rng(0)
    for article in corpus:
        chunks = split_into_chunks(article, size_words=160, overlap_sentences=1)
        vectors = rng.normal(size=(len(chunks), DIM)).astype(np.float32)
        heads = {article.article_id: "\n".join(filter(None, (article.title, article.source)))}
        copy_chunks(connection, chunks, heads, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), "vector",
                    table=STAGED_CHUNKS)
        insert_articles(connection, [article_row(article, "hash", len(chunks))], table=STAGED_ARTICLES)
    caplog.clear()
    with caplog.at_level("INFO", logger="index.stores.postgres"), connection.transaction():
        move_staged(connection, [a.article_id for a in corpus], round_chunks=round_chunks)
        store_statistics(connection, None)
    connection.close()
    return sum("sync: round" in message for message in caplog.messages) or 1


def test_a_sync_written_in_rounds_writes_what_one_round_writes(postgres_cluster, corpus, caplog) -> None:
    """A sync's write in rounds of articles (here ~40 chunks, so blocks straddle rounds) gives the same chunk
    ids, postings, dictionary and term lists as one round; BM25 ranks as the embedded index."""
    whole, rounds = (postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}") for _ in range(2))
    assert stage_and_move(whole, corpus, 10**9, caplog) == 1
    assert stage_and_move(rounds, corpus, 40, caplog) > 4
    assert postings_by_term(rounds) == postings_by_term(whole)
    store = PostgresStore.open(rounds)
    try:
        assert store.verify() == []
        assert_same_as_embedded(store, depths=(5, 50))
    finally:
        store.close()


def test_a_bulk_round_must_be_whole_blocks(database) -> None:
    connection = connect(database)
    try:
        with pytest.raises(ValueError, match="not whole blocks"):
            bulk_load_chunks(connection, [], {}, lambda batch: np.zeros((0, DIM)), "vector", round_chunks=100)
        with pytest.raises(ValueError, match="do not start a block"):
            write_postings(connection, None, new_blocks=range(5, 133))
    finally:
        connection.close()


def test_pruning_never_changes_the_results(database, monkeypatch) -> None:
    """A first read of one term: each query reads more terms round by round until the bound proves the rest."""
    monkeypatch.setattr(postings, "FIRST_READ_POSTINGS", 1)
    rounds = []
    store = PostgresStore.open(database)
    counted = store._rows

    def counting(sql, params=()):
        if "WITH partial" in sql:
            rounds.append(len(params["ids"]))
        return counted(sql, params)

    store._rows = counting
    try:
        assert_same_as_embedded(store)
        assert max(rounds) > 1 and min(rounds) == 1  # some queries stopped early, some read more
    finally:
        store.close()


def test_probes_until_the_depth_is_found_then_one_last_query_that_proves_the_rest(database, monkeypatch) -> None:
    """Probes read more terms until `depth` chunks hold one; then one query scores fully, and its depth-th
    score is above all the left-out terms' bounds together (so no other chunk could enter). With a first read
    of one term, some queries probe more than once."""
    monkeypatch.setattr(postings, "FIRST_READ_POSTINGS", 1)
    store = PostgresStore.open(database)
    counted, calls = store._rows, []

    def counting(sql, params=()):
        found = counted(sql, params)
        if "WITH partial" in sql:
            calls.append(("last" if "kept" in sql else "probe", found, params))
        return found

    store._rows = counting
    try:
        probed_again = 0
        for question, field, depth in product(QUESTIONS, FIELDS, (1, 5, 50)):
            calls.clear()
            store.lexical_search(query_tokens(question, field), field, depth)
            kinds = [kind for kind, _, _ in calls]
            assert kinds == ["probe"] * (len(kinds) - 1) + ["last"], (question, field, depth, kinds)
            assert all(len(found) < depth for _, found, _ in calls[:-2])  # only the last probe found the depth
            _, found, params = calls[-1]
            if params["rest_ids"]:
                assert len(found) == depth and found[-1][1] > params["remainder"], (question, field, depth)
            probed_again += len(kinds) > 2
        assert probed_again > 0
    finally:
        store.close()


def test_filters_are_applied_before_the_top(database) -> None:
    store = PostgresStore.open(database)
    try:
        outlets = sorted({(a.source or "").casefold() for a in store.articles() if a.source})
        assert outlets
        assert_same_as_embedded(store, depths=(5,), limits=ArticleLimits(sources=(outlets[0],)))
    finally:
        store.close()


def test_deleted_articles_take_their_postings(postgres_cluster, corpus) -> None:
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus)
    gone = [a.article_id for a in corpus[::3]]
    connection = connect(url)
    with connection.transaction():
        delete_articles(connection, gone)
        store_statistics(connection, None)
    connection.close()
    store = PostgresStore.open(url)
    try:
        assert store.verify() == [] and not set(gone) & {a.article_id for a in store.articles()}
        assert_same_as_embedded(store, depths=(5, 50))
    finally:
        store.close()


def test_a_block_emptied_by_deletes_takes_its_lengths_along(postgres_cluster, corpus) -> None:
    """Deleting every article after the first empties whole blocks: their rows of lengths go, the first
    block's stays."""
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus)
    connection = connect(url)
    with connection.transaction():
        before = [b for (b,) in connection.execute("SELECT block FROM hoidap_block_lengths ORDER BY 1")]
        delete_articles(connection, [a.article_id for a in corpus[1:]])
        store_statistics(connection, None)
        after = [b for (b,) in connection.execute("SELECT block FROM hoidap_block_lengths ORDER BY 1")]
    connection.close()
    assert len(before) > 1 and after == [0]
    store = PostgresStore.open(url)
    try:
        assert store.verify() == []
        assert_same_as_embedded(store, depths=(5,))
    finally:
        store.close()


@pytest.mark.parametrize("first_read", [1, 10**9])
def test_chunks_of_the_same_words_tie_exactly_and_go_by_chunk_id(postgres_cluster, corpus, monkeypatch,
                                                                  first_read: int) -> None:
    """Chunks holding the same words as many times, in other orders, have the same BM25 score, which SQL must
    reproduce to the last bit (the sum taken term by term in one order for every chunk, not in the order their
    postings come in) so that ties go by chunk id, as in `bm25s`; whether the terms are read over several
    rounds or all in the first."""
    monkeypatch.setattr(postings, "FIRST_READ_POSTINGS", first_read)
    def short_sentences(article) -> list[str]:  # four together fit in one chunk of 160 words
        return [t for t in (article.text[s:e] for s, e in split_into_sentences(article.text)) if len(t.split()) < 30][:4]

    base = next(a for a in corpus if len(short_sentences(a)) == 4)
    sentences = short_sentences(base)
    rng = np.random.default_rng(0)
    shuffled = [replace(base, article_id=f"same_words_{i}", text=" ".join(rng.permutation(sentences)))
                for i in range(8)]
    ids = {a.article_id for a in shuffled}
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, [*corpus, *shuffled])
    connection = connect(url)
    with connection.transaction():  # the blocks holding them stored in a shuffled term order, as syncs may leave them
        for f in FIELDS:
            connection.execute(f"CREATE TEMPORARY TABLE moved_{f} AS SELECT p.* FROM hoidap_postings_{f} p "
                               f"WHERE p.block IN (SELECT chunk_id >> {postings.BLOCK_BITS} FROM hoidap_chunks "
                               "WHERE article_id = ANY(%s))", (sorted(ids),))
            connection.execute(f"DELETE FROM hoidap_postings_{f} p USING moved_{f} m "
                               "WHERE p.term_id = m.term_id AND p.block = m.block")
            connection.execute(f"INSERT INTO hoidap_postings_{f} SELECT * FROM moved_{f} "
                               "ORDER BY block, md5(term_id || ' ' || block)")
    connection.close()
    store = PostgresStore.open(url)
    try:
        chunk_of = {c.chunk_id: c for c in store.chunks()}
        head = "\n".join(filter(None, (base.title, base.source)))
        profile = {cid: lexical_fields(head, c.text) for cid, c in chunk_of.items() if c.article_id in ids}
        # Both plans the server picks between by size: postings read term by term (a nested loop over the
        # index, in the query's term order), or all at once (a hash join, in the order they were written).
        for question, field, nested_loop in product([*sentences, " ".join(sentences[:2])], ("plain", "folded"),
                                                    ("on", "off")):
            store._rows("SELECT set_config('enable_nestloop', %s, false)", (nested_loop,))
            found = store.lexical_search(query_tokens(question, field), field, 100)
            ties = [(cid, score) for cid, score in found if chunk_of[cid].article_id in ids]
            assert len(ties) == len(shuffled) and all(
                sorted(profile[cid][field]) == sorted(profile[ties[0][0]][field]) for cid, _ in ties)  # one chunk each
            assert len({score for _, score in ties}) == 1, (question, field, ties)
            positions = [i for i, (cid, _) in enumerate(found) if chunk_of[cid].article_id in ids]
            assert positions == list(range(positions[0], positions[0] + len(ties)))  # nothing in between
            assert [cid for cid, _ in ties] == sorted(cid for cid, _ in ties), (question, field)
    finally:
        store.close()


def as_layout_2(url: str) -> None:
    """Turn an index back into layout 2, as hoidap wrote it: one postings row per (term, chunk), no term lists."""
    connection = connect(url)
    with connection.transaction():
        for f in FIELDS:
            connection.execute(f"ALTER TABLE hoidap_postings_{f} RENAME TO blocks_{f}")
            connection.execute(f"DROP TABLE hoidap_chunk_terms_{f}")
            connection.execute(f"CREATE TABLE hoidap_postings_{f} (chunk_id BIGINT NOT NULL, term_id INTEGER NOT NULL, "
                               "tf INTEGER NOT NULL)")
            connection.execute(f"INSERT INTO hoidap_postings_{f} SELECT b.block::bigint * {postings.BLOCK} + u.at, "
                               f"b.term_id, u.tf FROM blocks_{f} b, unnest(b.offsets, b.tfs) AS u(at, tf)")
            connection.execute(f"DROP TABLE blocks_{f}")
            connection.execute(f"ALTER TABLE hoidap_postings_{f} ADD PRIMARY KEY (term_id, chunk_id) INCLUDE (tf)")
            connection.execute(f"CREATE INDEX hoidap_postings_{f}_by_chunk ON hoidap_postings_{f} (chunk_id)")
        connection.execute("DROP TABLE hoidap_block_lengths")
        connection.execute("UPDATE hoidap_manifest SET schema_version = 2")
    connection.close()


def test_a_layout_2_index_is_regrouped_into_blocks_in_place(postgres_cluster, corpus) -> None:
    """A reader that may not upgrade is told what to run; the owner's store regroups the rows into blocks, and
    BM25 ranks as before."""
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus)
    as_layout_2(url)
    with pytest.raises(SchemaVersionError, match="has layout 2, this hoidap reads layout 4: run `hoidap index`"):
        PostgresStore.open(url, upgrade=False)
    store = PostgresStore.open(url)
    try:
        assert store.manifest.schema_version == SCHEMA_VERSION == 4
        [(columns,)] = store._rows("SELECT array_agg(column_name::text ORDER BY ordinal_position) "
                                   "FROM information_schema.columns WHERE table_name = 'hoidap_postings_plain'")
        assert columns == ["term_id", "block", "block_max_tf", "offsets", "tfs"]
        assert store.verify() == []
        assert_same_as_embedded(store, depths=(5, 50))
    finally:
        store.close()


def test_a_layout_3_index_gets_its_lengths_by_block_in_place(postgres_cluster, corpus) -> None:
    """Layout 3 had no lengths by block: the owner's store gathers them from the chunks, the same rows a sync
    writes, and BM25 ranks as before."""
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus)
    connection = connect(url)
    with connection.transaction():
        written = connection.execute("SELECT * FROM hoidap_block_lengths ORDER BY block").fetchall()
        connection.execute("DROP TABLE hoidap_block_lengths")
        connection.execute("UPDATE hoidap_manifest SET schema_version = 3")
    connection.close()
    with pytest.raises(SchemaVersionError, match="has layout 3, this hoidap reads layout 4"):
        PostgresStore.open(url, upgrade=False)
    store = PostgresStore.open(url)
    try:
        assert store.manifest.schema_version == SCHEMA_VERSION
        assert store._rows("SELECT * FROM hoidap_block_lengths ORDER BY block") == written
        assert len(written) > 1 and store.verify() == []
        assert_same_as_embedded(store, depths=(5, 50))
    finally:
        store.close()


def test_wrong_lengths_by_block_are_reported(postgres_cluster, corpus) -> None:
    url = postgres_cluster.create_database(f"p_{uuid.uuid4().hex[:10]}")
    write_corpus(url, corpus)
    store = PostgresStore.open(url)
    try:
        store._rows("UPDATE hoidap_block_lengths SET folded[3] = folded[3] + 1 WHERE block = 0 RETURNING block")
        assert store.verify() == ["the lengths by block of chunks [2] differ from the chunks' own"]
    finally:
        store.close()


def test_a_reader_without_the_lengths_table_is_told_what_to_grant(postgres_cluster, database) -> None:
    """A read-only role granted table by table before the upgrade lacks `hoidap_block_lengths`: one message that
    names the grant, and the store answers once it is given."""
    import psycopg

    from index.stores.postgres import DatabaseError

    name = database.rsplit("/", 1)[1]
    with psycopg.connect(postgres_cluster.url(name), autocommit=True) as admin:
        admin.execute("DO $$ BEGIN CREATE ROLE layout3_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO layout3_reader")
        admin.execute("REVOKE SELECT ON hoidap_block_lengths FROM layout3_reader")
    store = PostgresStore.open(f"postgresql://layout3_reader@127.0.0.1:{postgres_cluster.port}/{name}")
    try:
        with pytest.raises(DatabaseError, match="may not read the index .*hoidap_block_lengths.*grant it SELECT"):
            store.lexical_search(query_tokens(QUESTIONS[0], "plain"), "plain", 5)
        with psycopg.connect(postgres_cluster.url(name), autocommit=True) as admin:
            admin.execute("GRANT SELECT ON hoidap_block_lengths TO layout3_reader")
        assert store.lexical_search(query_tokens(QUESTIONS[0], "plain"), "plain", 5)
    finally:
        store.close()
