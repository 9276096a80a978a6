"""BM25 over block postings in PostgreSQL: the three lexical fields of the index as term dictionaries and
postings tables, kept in step with the chunks, scored in SQL with exact pruning.

Tables, for each field `f` of `FIELDS` (`plain`, `folded`, `pairs`):
    hoidap_terms_f        term_id, term, df (how many chunks hold it), max_tf (the largest term frequency it had
                          in any chunk: an upper bound, left as it is when chunks go, so it stays one)
    hoidap_postings_f     one row per term and block of `BLOCK` chunk ids (block = chunk_id >> `BLOCK_BITS`):
                          the chunks' places in the block (`offsets`, chunk_id & (BLOCK - 1), ascending), their
                          term frequencies (`tfs`, in the same order) and the block's largest; primary key
                          (term_id, block). A common syllable's postings take ~2 bytes of each array per chunk
                          instead of a 40-byte row and an index entry per chunk.
    hoidap_chunk_terms_f  chunk_id, the ids of the terms it holds: what deleting a chunk must take out of
                          which blocks, without an index on the postings by chunk
The field lengths are on `hoidap_chunks` (`plain_len`, ...), the averages in the manifest row. Term frequencies
are `smallint`s, clamped at `MAX_TF`: a chunk holds a few hundred tokens, so no real chunk reaches it (and
`postings_problems` would tell one that did, its frequencies no longer adding up to its length).

Writing: a sync stages each chunk's terms and their frequencies per field as arrays (binary COPY into a
temporary table, keyed by article and ordinal, since chunk ids are given when chunks move in), and
`write_postings` turns them into postings in the transaction that moves the chunks: new terms get an id,
the new chunks' postings are grouped into blocks (merged into a block already there), their term lists
stored and the document frequencies go up. `delete_postings` does the reverse before chunks go, taking the
chunks out of the blocks their term lists name (and a block left empty away). Writers take turns on the
manifest row, so term ids are never assigned twice.

Scoring is `bm25s`'s Lucene BM25 (`retrieval.search.lexical`): idf log1p((n - df + .5) / (df + .5)),
k1 1.2, b .75, term score idf * tf / (tf + k1 * (1 - b + b * len / avg)). Common syllables are in most
chunks, so reading every posting of every query term costs as much as the corpus. `search` reads the
postings of the terms that can matter and proves the rest cannot (MaxScore): terms are ordered by their
largest possible score (weight * max_tf / (max_tf + k1 * (1 - b)), a chunk of length 0). Probes score the
chunks holding one of the first terms with those terms alone, more terms each time, until `depth` chunks hold
one; the depth-th such partial score is a floor under the depth-th final score, and a chunk holding none of
the terms read scores at most the sum of the other terms' bounds. The last query reads the first terms whose
left-out bounds stay below that floor and scores their chunks fully: no other chunk can enter the results,
which are always those of scoring every chunk. The blocks read are unnested back into (chunk_id = block *
BLOCK + offset, tf) pairs, each chunk's length read from its block's row of lengths, so the arithmetic is
the same, term by term, as over one row per posting.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from index.text import syllable_pairs, tokenize

LexicalField = Literal["plain", "folded", "pairs"]
FIELDS: tuple[LexicalField, ...] = ("plain", "folded", "pairs")
BM25_K1, BM25_B = 1.2, 0.75  # those of `retrieval.search.lexical.LexicalIndex.build`
STAGED_TERMS = "pg_temp.hoidap_staged_terms"
FRESH_POSTINGS = "pg_temp.hoidap_fresh_postings"  # the staged chunks' (chunk_id, term_id, tf), one field at a time
FRESH_BLOCKS = "pg_temp.hoidap_fresh_blocks"  # the same grouped into blocks
BLOCK_BITS = 7
BLOCK = 1 << BLOCK_BITS  # chunks per block: offsets 0-127
MAX_TF = 32_767  # the largest smallint
# The postings read before the first pruning check: the rarest terms' lists up to this many postings
# (at least one term). At 100k chunks (bench/postgres_scale.py) queries hold 10-30 terms, a rare one in a
# few hundred chunks, a common syllable in 30-90k; 20k keeps the first probe to the rare terms, and it
# then finds the depth for most queries.
FIRST_READ_POSTINGS = 20_000
_GROWTH = 8  # each further read takes up to this many times as many postings
_MARGIN = 1e-9  # float8 sums in SQL against float sums here: a bound must win by more than rounding
Rows = Callable[[str, dict], list[tuple]]  # runs one query with its parameters, returns its rows
# Each block's chunk lengths, one array per field, entry `offset + 1` for chunk `block * BLOCK + offset`:
# scoring a posting needs its chunk's length, and a hash of this table (1 MB at 100k chunks) takes the place
# of one of the chunk table (90 MB: its rows are wide with text and vector).
LENGTHS_TABLE = ("CREATE TABLE hoidap_block_lengths (block INTEGER NOT NULL, "
                 + ", ".join(f"{f} INTEGER[] NOT NULL" for f in FIELDS) + ")")
LENGTHS_KEY = "ALTER TABLE hoidap_block_lengths ADD PRIMARY KEY (block)"


def _in_block(block: str) -> str:
    """A condition on chunk alias `c`: its id is one of block `block`'s (an SQL expression)."""
    return f"c.chunk_id BETWEEN {block}::bigint * {BLOCK} AND {block}::bigint * {BLOCK} + {BLOCK - 1}"


def lexical_fields(head: str, text: str) -> dict[LexicalField, list[str]]:
    """The tokens of each field for a chunk, as `LexicalIndex.from_store` indexes it (title and outlet first)."""
    document = f"{head}\n{text}"
    plain = tokenize(document)
    return {"plain": plain, "folded": tokenize(document, fold=True),
            "pairs": plain + syllable_pairs(document.lower())}


# ---------------------------------------------------------------------------- schema

def table_statements() -> list[str]:
    """The term and postings tables, without the postings' primary keys (`index_statements`, built after a
    bulk load)."""
    statements = []
    for f in FIELDS:
        statements.append(f"""CREATE TABLE hoidap_terms_{f} (
            term_id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, term TEXT NOT NULL UNIQUE,
            df INTEGER NOT NULL DEFAULT 0, max_tf INTEGER NOT NULL DEFAULT 0)""")
        statements.extend(block_table_statements(f))
    statements.append(LENGTHS_TABLE)
    return statements


def block_table_statements(field: LexicalField) -> list[str]:
    """The block postings and chunk term lists of one field."""
    return [f"CREATE TABLE hoidap_postings_{field} (term_id INTEGER NOT NULL, block INTEGER NOT NULL, "
            "block_max_tf SMALLINT NOT NULL, offsets SMALLINT[] NOT NULL, tfs SMALLINT[] NOT NULL)",
            f"CREATE TABLE hoidap_chunk_terms_{field} (chunk_id BIGINT NOT NULL, term_ids INTEGER[] NOT NULL)"]


def index_statements(*, lengths: bool = True) -> list[str]:
    """The keys of the postings and term lists, and with `lengths` that of the lengths by block."""
    return [*(statement for f in FIELDS for statement in (
        f"ALTER TABLE hoidap_postings_{f} ADD PRIMARY KEY (term_id, block)",
        f"ALTER TABLE hoidap_chunk_terms_{f} ADD PRIMARY KEY (chunk_id)")), *([LENGTHS_KEY] if lengths else [])]


def table_names() -> list[str]:
    return [*(name for f in FIELDS for name in (f"hoidap_postings_{f}", f"hoidap_chunk_terms_{f}", f"hoidap_terms_{f}")),
            "hoidap_block_lengths"]


def lengths_from_chunks(connection) -> None:
    """The block lengths table of an index that has none (layouts 2 and 3), from every chunk."""
    connection.execute(LENGTHS_TABLE)
    [(top,)] = connection.execute("SELECT max(chunk_id) FROM hoidap_chunks").fetchall()
    if top is not None:
        _write_lengths(connection, range(0, top + 1), fresh=True)
    connection.execute(LENGTHS_KEY)


def _write_lengths(connection, ids: range, *, fresh: bool) -> None:
    """The rows of the blocks holding chunk ids `ids`, from the chunks there now (an id no chunk has is 0);
    `fresh`: those blocks have no row yet (and the table may have no key), else their rows are replaced."""
    first, last = ids.start >> BLOCK_BITS, (ids.stop - 1) >> BLOCK_BITS
    replace = "" if fresh else (" ON CONFLICT (block) DO UPDATE SET "
                                + ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS))
    connection.execute(
        f"""INSERT INTO hoidap_block_lengths (block, {', '.join(FIELDS)})
            SELECT (g.id >> {BLOCK_BITS})::int, {', '.join(f'array_agg(coalesce(c.{f}_len, 0) ORDER BY g.id)' for f in FIELDS)}
            FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS g(id)
            LEFT JOIN hoidap_chunks c ON c.chunk_id = g.id AND c.chunk_id BETWEEN %(low)s AND %(high)s
            GROUP BY 1{replace}""", {"low": first * BLOCK, "high": last * BLOCK + BLOCK - 1})


def blocks_from_rows(connection, field: LexicalField, rows_table: str) -> None:
    """Fill a field's empty block tables from a table of one row per posting (chunk_id, term_id, tf), as
    layout 2 kept them."""
    connection.execute(f"INSERT INTO hoidap_postings_{field} (term_id, block, block_max_tf, offsets, tfs) "
                       f"{_blocks_sql(rows_table)} ORDER BY 1, 2")
    connection.execute(_chunk_terms_sql(field, rows_table))


def _blocks_sql(rows_table: str) -> str:
    """The rows (term_id, block, block_max_tf, offsets, tfs) of the postings in `rows_table`."""
    return (f"SELECT term_id, (chunk_id >> {BLOCK_BITS})::int, least(max(tf), {MAX_TF})::smallint, "
            f"array_agg((chunk_id & {BLOCK - 1})::smallint ORDER BY chunk_id), "
            f"array_agg(least(tf, {MAX_TF})::smallint ORDER BY chunk_id) FROM {rows_table} GROUP BY 1, 2")


def _chunk_terms_sql(field: LexicalField, rows_table: str) -> str:
    return (f"INSERT INTO hoidap_chunk_terms_{field} (chunk_id, term_ids) "
            f"SELECT chunk_id, array_agg(term_id ORDER BY term_id) FROM {rows_table} GROUP BY chunk_id")

# ---------------------------------------------------------------------------- writing

def create_term_staging(connection) -> None:
    """The temporary tables (of this session only) holding staged chunks' terms until they become postings, and
    the postings they make, one field at a time. They are emptied, not dropped, between uses: a table made in
    the transaction that empties it is truncated in place, so a bulk load in rounds (`postgres.bulk_load_chunks`)
    holds one round's staging on disk, not every round's until it commits."""
    drop_term_staging(connection)
    connection.execute("CREATE TEMPORARY TABLE hoidap_staged_terms (article_id TEXT NOT NULL, "
                       "ordinal INTEGER NOT NULL, field TEXT NOT NULL, terms TEXT[] NOT NULL, tfs INTEGER[] NOT NULL)")
    create_fresh_tables(connection)


def create_fresh_tables(connection) -> None:
    """The temporary tables of the postings being made (`write_postings`), made anew: made in the transaction
    that writes, they are emptied in place (a sync stages its terms before that transaction)."""
    connection.execute(f"DROP TABLE IF EXISTS {FRESH_POSTINGS}, {FRESH_BLOCKS}")
    connection.execute("CREATE TEMPORARY TABLE hoidap_fresh_postings (chunk_id BIGINT NOT NULL, "
                       "term_id INTEGER NOT NULL, tf INTEGER NOT NULL)")
    connection.execute("CREATE TEMPORARY TABLE hoidap_fresh_blocks (term_id INTEGER NOT NULL, block INTEGER NOT NULL, "
                       "block_max_tf SMALLINT NOT NULL, offsets SMALLINT[] NOT NULL, tfs SMALLINT[] NOT NULL)")


def drop_term_staging(connection) -> None:
    connection.execute(f"DROP TABLE IF EXISTS {STAGED_TERMS}, {FRESH_POSTINGS}, {FRESH_BLOCKS}")


def stage_terms(connection, chunks: Iterable[tuple[str, int, dict[LexicalField, list[str]]]]) -> None:
    """Stage the terms of chunks given as (article id, ordinal, tokens per field), by binary COPY."""
    with connection.cursor() as cursor, cursor.copy(
            f"COPY {STAGED_TERMS} (article_id, ordinal, field, terms, tfs) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "int4", "text", "text[]", "int4[]"])
        for article_id, ordinal, fields in chunks:
            for name in FIELDS:
                counts = Counter(fields[name])
                copy.write_row((article_id, ordinal, name, list(counts), list(counts.values())))


def write_postings(connection, article_ids: Sequence[str] | None, *, new_blocks: range | None = None) -> None:
    """The postings of the staged chunks of these articles (None: of every staged chunk), which must be in
    `hoidap_chunks` already; new terms get an id, document frequencies and max_tf follow.

    `new_blocks`, in a bulk load: the staged chunks' ids, whole blocks that no postings hold yet. Their postings
    are then plain inserts (no merge, which would read the postings table, unindexed during a bulk load, once a
    round), and df and max_tf are left to `count_terms`, once after the last round (not one more row version
    of a common term's dictionary row a round)."""
    staged, params = _staged_filter(article_ids)
    chunks = ""
    if new_blocks is not None:
        if new_blocks.step != 1 or (new_blocks.start % BLOCK and new_blocks.start != 1):  # chunk id 0 is never given
            raise ValueError(f"chunk ids {new_blocks} do not start a block of {BLOCK}")
        written = new_blocks
    else:
        [(low, high)] = connection.execute(
            f"SELECT min(c.chunk_id), max(c.chunk_id) FROM {STAGED_TERMS} s JOIN hoidap_chunks c "
            f"ON c.article_id = s.article_id AND c.ordinal = s.ordinal WHERE {staged}", params).fetchall()
        written = range(low, high + 1) if low is not None else range(0)
    if written:
        _write_lengths(connection, written, fresh=new_blocks is not None)
    if new_blocks is not None:
        chunks = "AND c.chunk_id >= %(low)s AND c.chunk_id < %(high)s"
        params = {**params, "low": new_blocks.start, "high": new_blocks.stop}
        connection.execute(f"ANALYZE {STAGED_TERMS}")  # emptied in place, it has no statistics of its own
    for f in FIELDS:
        connection.execute(
            f"INSERT INTO hoidap_terms_{f} (term) SELECT DISTINCT u.term FROM {STAGED_TERMS} s, unnest(s.terms) "
            f"AS u(term) WHERE s.field = '{f}' AND {staged} AND NOT EXISTS "
            f"(SELECT 1 FROM hoidap_terms_{f} t WHERE t.term = u.term)", params)
        connection.execute(f"TRUNCATE {FRESH_POSTINGS}, {FRESH_BLOCKS}")
        connection.execute(
            f"""INSERT INTO {FRESH_POSTINGS}
                SELECT c.chunk_id, t.term_id, u.tf
                FROM {STAGED_TERMS} s JOIN hoidap_chunks c ON c.article_id = s.article_id AND c.ordinal = s.ordinal {chunks}
                CROSS JOIN LATERAL unnest(s.terms, s.tfs) AS u(term, tf)
                JOIN hoidap_terms_{f} t ON t.term = u.term
                WHERE s.field = '{f}' AND {staged}""", params)
        connection.execute(_chunk_terms_sql(f, FRESH_POSTINGS))
        connection.execute(f"INSERT INTO {FRESH_BLOCKS} {_blocks_sql(FRESH_POSTINGS)}")
        if new_blocks is not None:
            connection.execute(f"INSERT INTO hoidap_postings_{f} SELECT * FROM {FRESH_BLOCKS} ORDER BY term_id, block")
            continue
        # Chunk ids only grow, so new chunks mostly open blocks of their own; those of the block last written
        # into are merged with what it holds (the offsets kept in order).
        connection.execute(
            f"""UPDATE hoidap_postings_{f} p SET block_max_tf = greatest(p.block_max_tf, b.block_max_tf),
                    (offsets, tfs) = (SELECT array_agg(u.at ORDER BY u.at), array_agg(u.tf ORDER BY u.at)
                                      FROM (SELECT * FROM unnest(p.offsets, p.tfs)
                                            UNION ALL SELECT * FROM unnest(b.offsets, b.tfs)) AS u(at, tf))
                FROM {FRESH_BLOCKS} b WHERE p.term_id = b.term_id AND p.block = b.block""")
        connection.execute(
            f"INSERT INTO hoidap_postings_{f} (term_id, block, block_max_tf, offsets, tfs) SELECT * FROM {FRESH_BLOCKS} b "
            f"WHERE NOT EXISTS (SELECT 1 FROM hoidap_postings_{f} p WHERE p.term_id = b.term_id AND p.block = b.block) "
            "ORDER BY b.term_id, b.block")
        connection.execute(
            f"""UPDATE hoidap_terms_{f} t SET df = t.df + a.n, max_tf = greatest(t.max_tf, a.top)
                FROM (SELECT term_id, count(*) AS n, max(tf) AS top FROM {FRESH_POSTINGS} GROUP BY term_id) a
                WHERE t.term_id = a.term_id""")
    connection.execute(f"TRUNCATE {FRESH_POSTINGS}, {FRESH_BLOCKS}")


def count_terms(connection) -> None:
    """Every term's df and max_tf from the postings, after a bulk load (`write_postings(new_blocks=...)`)."""
    for f in FIELDS:
        connection.execute(
            f"""UPDATE hoidap_terms_{f} t SET df = a.n, max_tf = a.top
                FROM (SELECT term_id, sum(cardinality(offsets)) AS n, max(block_max_tf) AS top
                      FROM hoidap_postings_{f} GROUP BY term_id) a
                WHERE t.term_id = a.term_id""")


def _staged_filter(article_ids: Sequence[str] | None) -> tuple[str, dict]:
    if article_ids is None:
        return "TRUE", {}
    return "s.article_id = ANY(%(ids)s)", {"ids": list(article_ids)}


def delete_postings(connection, article_ids: Sequence[str]) -> None:
    """Remove the postings of these articles' chunks (before the chunks go), lowering document frequencies:
    each chunk's term list names the blocks it is in; a block holding only such chunks goes, and so does the
    row of lengths of a block left without chunks."""
    connection.execute(
        f"""DELETE FROM hoidap_block_lengths l
            USING (SELECT DISTINCT (chunk_id >> {BLOCK_BITS})::int AS block FROM hoidap_chunks
                   WHERE article_id = ANY(%(ids)s)) g
            WHERE l.block = g.block AND NOT EXISTS (
                SELECT 1 FROM hoidap_chunks c WHERE {_in_block('l.block')} AND c.article_id <> ALL (%(ids)s))""",
        {"ids": list(article_ids)})
    for f in FIELDS:
        connection.execute(
            f"""WITH gone AS (
                    DELETE FROM hoidap_chunk_terms_{f} g USING hoidap_chunks c
                    WHERE c.article_id = ANY(%s) AND g.chunk_id = c.chunk_id RETURNING g.chunk_id, g.term_ids),
                lost AS (
                    SELECT u.term_id, (g.chunk_id >> {BLOCK_BITS})::int AS block,
                           array_agg((g.chunk_id & {BLOCK - 1})::smallint) AS offsets
                    FROM gone g CROSS JOIN LATERAL unnest(g.term_ids) AS u(term_id) GROUP BY 1, 2),
                emptied AS (
                    DELETE FROM hoidap_postings_{f} p USING lost l
                    WHERE p.term_id = l.term_id AND p.block = l.block AND p.offsets <@ l.offsets),
                thinned AS (
                    UPDATE hoidap_postings_{f} p SET (block_max_tf, offsets, tfs) = (
                        SELECT max(u.tf), array_agg(u.at ORDER BY u.at), array_agg(u.tf ORDER BY u.at)
                        FROM unnest(p.offsets, p.tfs) AS u(at, tf) WHERE u.at <> ALL (l.offsets))
                    FROM lost l WHERE p.term_id = l.term_id AND p.block = l.block AND NOT p.offsets <@ l.offsets)
                UPDATE hoidap_terms_{f} t SET df = t.df - g.n
                FROM (SELECT term_id, sum(cardinality(offsets)) AS n FROM lost GROUP BY term_id) g
                WHERE t.term_id = g.term_id""",
            (list(article_ids),))


def postings_problems(rows: Rows) -> list[str]:
    """Where the postings are not in step with the chunks, in words (empty when they are): every block well
    formed, every chunk's term frequencies add up to its field length, no posting outlives its chunk, every df
    counts its postings, every chunk's term list names the terms it has postings of, every chunk's lengths are
    those its block's row says."""
    problems = []
    [(shapeless,)] = rows("SELECT count(*) FROM hoidap_block_lengths WHERE "
                          + " OR ".join(f"cardinality({f}) <> {BLOCK}" for f in FIELDS), {})
    unlike = [row[0] for row in rows(
        f"SELECT c.chunk_id FROM hoidap_chunks c LEFT JOIN hoidap_block_lengths l ON l.block = c.chunk_id >> {BLOCK_BITS} "
        "WHERE " + " OR ".join(f"l.{f}[(c.chunk_id & {BLOCK - 1}) + 1] IS DISTINCT FROM c.{f}_len" for f in FIELDS)
        + " ORDER BY 1 LIMIT 5", {})]
    [(chunkless,)] = rows(
        "SELECT count(*) FROM hoidap_block_lengths l WHERE NOT EXISTS (SELECT 1 FROM hoidap_chunks c WHERE "
        f"{_in_block('l.block')})", {})
    if shapeless:
        problems.append(f"{shapeless} rows of chunk lengths do not hold {BLOCK} each")
    if chunkless:
        problems.append(f"{chunkless} rows of chunk lengths are of blocks without chunks")
    if unlike:
        problems.append(f"the lengths by block of chunks {unlike} differ from the chunks' own")
    for f in FIELDS:
        postings = (f"(SELECT b.term_id, b.block::bigint * {BLOCK} + u.at AS chunk_id, u.tf FROM hoidap_postings_{f} b "
                    "CROSS JOIN LATERAL unnest(b.offsets, b.tfs) AS u(at, tf))")
        listed = (f"(SELECT g.chunk_id, u.term_id FROM hoidap_chunk_terms_{f} g "
                  "CROSS JOIN LATERAL unnest(g.term_ids) AS u(term_id))")
        [(malformed,)] = rows(
            f"SELECT count(*) FROM hoidap_postings_{f} b WHERE cardinality(b.offsets) <> cardinality(b.tfs) "
            "OR cardinality(b.offsets) = 0 OR b.block_max_tf <> (SELECT max(t) FROM unnest(b.tfs) AS t) "
            "OR b.offsets <> (SELECT array_agg(DISTINCT o ORDER BY o) FROM unnest(b.offsets) AS o) "
            f"OR b.offsets[1] < 0 OR b.offsets[cardinality(b.offsets)] >= {BLOCK}", {})
        wrong_length = [row[0] for row in rows(
            f"SELECT c.chunk_id FROM hoidap_chunks c LEFT JOIN (SELECT chunk_id, sum(tf) AS n FROM {postings} p "
            f"GROUP BY chunk_id) p USING (chunk_id) WHERE coalesce(p.n, 0) <> c.{f}_len ORDER BY 1 LIMIT 5", {})]
        [(orphans,)] = rows(f"SELECT count(*) FROM {postings} p WHERE NOT EXISTS "
                            "(SELECT 1 FROM hoidap_chunks c WHERE c.chunk_id = p.chunk_id)", {})
        wrong_df = [row[0] for row in rows(
            f"SELECT t.term FROM hoidap_terms_{f} t LEFT JOIN (SELECT term_id, sum(cardinality(offsets)) AS n "
            f"FROM hoidap_postings_{f} GROUP BY term_id) p USING (term_id) WHERE t.df <> coalesce(p.n, 0) "
            "ORDER BY 1 LIMIT 5", {})]
        wrong_list = [row[0] for row in rows(
            f"SELECT DISTINCT chunk_id FROM ((SELECT chunk_id, term_id FROM {postings} p EXCEPT SELECT * FROM {listed} l) "
            f"UNION ALL (SELECT * FROM {listed} l EXCEPT SELECT chunk_id, term_id FROM {postings} p)) d "
            "ORDER BY 1 LIMIT 5", {})]
        if malformed:
            problems.append(f"{malformed} {f} posting blocks are malformed")
        if wrong_length:
            problems.append(f"the {f} postings of chunks {wrong_length} do not add up to their length")
        if orphans:
            problems.append(f"{orphans} {f} postings belong to no chunk")
        if wrong_df:
            problems.append(f"the {f} document frequencies of {wrong_df} differ from their postings")
        if wrong_list:
            problems.append(f"the {f} term lists of chunks {wrong_list} differ from their postings")
    return problems

# ---------------------------------------------------------------------------- searching

@dataclass(frozen=True)
class QueryTerm:
    """A query term known to the field: its id, weight (query frequency times idf), score bound and df."""

    term_id: int
    weight: float
    bound: float
    df: int


def idf(df: int, n_chunks: int) -> float:
    """Lucene IDF (as `LexicalIndex.idf`); 0 for a term no chunk holds."""
    return 0.0 if df <= 0 else math.log1p((n_chunks - df + 0.5) / (df + 0.5))


def query_terms(known: Iterable[tuple[str, int, int, int]], tokens: Sequence[str], n_chunks: int) -> list[QueryTerm]:
    """The weighted terms of a query from its tokens and the dictionary rows (term, term id, df, max_tf) of
    those the field knows; terms of no weight are left out."""
    counts = Counter(tokens)
    terms = []
    for term, term_id, df, max_tf in known:
        weight = counts[term] * idf(df, n_chunks)
        if weight > 0:
            terms.append(QueryTerm(term_id, weight, weight * max_tf / (max_tf + BM25_K1 * (1 - BM25_B)), df))
    return terms


def search(rows: Rows, field: LexicalField, terms: Sequence[QueryTerm], depth: int, average: float,
           limits: tuple[str, dict] = ("", {})) -> list[tuple[int, float]]:
    """Up to `depth` (chunk_id, BM25 score) pairs with a positive score, best first (ties by chunk id), as
    scoring every chunk would give them. `limits`: a condition on chunk alias `c` and its parameters.

    Probes first: the partial scores (terms read so far) of the chunks holding a term read, more terms read
    until `depth` chunks hold one. The depth-th partial score is a floor under the depth-th final score, so
    the terms whose bounds add up to more than it are read in one last query, which scores the chunks fully and
    proves the rest cannot enter. (Completing the chunks round by round, as before, completed every chunk of a
    round whose other terms' bounds could still lift any of them, to find out it was not the last: at 100k
    chunks often all 15k chunks of the round with 15 other terms. There, 30 questions, interleaved, p50 / p95
    ms, rounds / probes: plain 473 / 788 -> 172 / 208, folded 710 / 989 -> 216 / 271, pairs 417 / 771 -> 165 /
    225, with the lengths by block; bench/sql_bm25_rounds.py.)"""
    if not terms:
        return []
    order = sorted(terms, key=lambda t: (-t.bound, t.df, t.term_id))
    read = _first_read(order)
    while read < len(order):
        top = rows(_probe_sql(field, limits[0]), _round_params(order, read, depth, average, limits[1]))
        if len(top) == depth:
            read = _last_read(order, read, top[-1][0])
            break
        read = _next_read(order, read)
    found = rows(_search_sql(field, limits[0]), _round_params(order, read, depth, average, limits[1]))
    return [(int(chunk_id), float(score)) for chunk_id, score in found if score > 0]


def _round_params(order: Sequence[QueryTerm], read: int, depth: int, average: float, limits: dict) -> dict:
    """The parameters of `_probe_sql` and `_search_sql` with the first `read` terms of `order` read."""
    essential, rest = order[:read], order[read:]
    return {"ids": [t.term_id for t in essential], "weights": [t.weight for t in essential],
            "rest_ids": [t.term_id for t in rest], "rest_weights": [t.weight for t in rest],
            "remainder": _remainder(order, read) * (1 + _MARGIN), "depth": depth, "a0": BM25_K1 * (1 - BM25_B),
            "a1": BM25_K1 * BM25_B / average, **limits}


def _remainder(order: Sequence[QueryTerm], read: int) -> float:
    """The most a chunk holding none of the first `read` terms can score."""
    return sum(t.bound for t in order[read:])


def _first_read(order: Sequence[QueryTerm]) -> int:
    total = 0
    for count, term in enumerate(order):
        total += term.df
        if total > FIRST_READ_POSTINGS and count > 0:
            return count
    return len(order)


def _next_read(order: Sequence[QueryTerm], read: int) -> int:
    """The next probe: up to `_GROWTH` times the postings read so far, at least one more term."""
    budget = _GROWTH * max(sum(t.df for t in order[:read]), 1)
    total, count = 0, 0
    for count, term in enumerate(order, 1):
        total += term.df
        if total > budget and count > read:
            return count
    return len(order)


def _last_read(order: Sequence[QueryTerm], read: int, floor: float) -> int:
    """The fewest terms, at least `read`, whose left-out bounds stay below `floor` (a depth-th score found):
    no chunk holding none of them can then enter the results."""
    for count in range(read, len(order)):
        if _remainder(order, count) < floor * (1 - _MARGIN):
            return count
    return len(order)


def _partial_sql(field: LexicalField, limits: str) -> str:
    """The chunks holding a term read, with their length and partial score (terms read). Each posting's share
    is computed below a fence (`OFFSET 0`), so the sort by chunk carries it and not its block's row of lengths
    (at 100k chunks, 300k postings of 13 terms: the sort took 580 of a question's 930 ms with the rows)."""
    within = f"JOIN hoidap_chunks c ON c.chunk_id = b.block::bigint * {BLOCK} + u.at AND {limits}" if limits else ""
    return f"""partial AS (
            SELECT chunk_id, min(length) AS length, sum(share ORDER BY term_id) AS score
            FROM (SELECT b.block::bigint * {BLOCK} + u.at AS chunk_id, q.term_id, l.{field}[u.at + 1] AS length,
                         q.weight * u.tf / (u.tf + %(a0)s + %(a1)s * l.{field}[u.at + 1]) AS share
                  FROM unnest(%(ids)s::int[], %(weights)s::float8[]) AS q(term_id, weight)
                  JOIN hoidap_postings_{field} b ON b.term_id = q.term_id
                  JOIN hoidap_block_lengths l ON l.block = b.block
                  CROSS JOIN LATERAL unnest(b.offsets, b.tfs) AS u(at, tf) {within}
                  OFFSET 0) AS p
            GROUP BY chunk_id)"""


def _probe_sql(field: LexicalField, limits: str) -> str:
    """The `depth` best partial scores."""
    return f"WITH {_partial_sql(field, limits)} SELECT score FROM partial ORDER BY score DESC LIMIT %(depth)s"


def _search_sql(field: LexicalField, limits: str) -> str:
    """Score the chunks holding an essential term: their partial score (essential terms), the depth-th best
    partial score as a bar (final scores are at least as high), the chunks that could still reach it with
    every other term, and those completed with their other terms: each block of those terms holding a kept chunk
    read once and unnested, joined to the kept chunks by a hash. (Looking each (term, kept chunk) up in its
    block instead made one index probe and heap fetch per pair: with 11k chunks kept and 16 other terms, 183k
    of them, 590 of a question's 627 ms. At 20k chunks, 100 questions, the same block tables, interleaved,
    probes / blocks read once: p50 201 / 69 ms folded, 35 / 41 plain, 40 / 46 pairs; p95 537 / 212 folded,
    327 / 119 plain, 365 / 111 pairs: a little slower when few chunks are kept, much faster when many are.)

    The sums go term by term in term id order: in the order the postings come in (which the plan and the
    order syncs wrote them in decide), chunks holding the same words as many times would differ in the last
    bits and their tie would go by rounding, not by chunk id (at 10k synthetic chunks, 4-9 of 100 top-50
    lists differed from `bm25s`'s that way). Sorting the few postings of each chunk costs nothing measurable
    (20k chunks, 100 questions, unordered / ordered: p50 63.5 / 66.2 ms plain, 224 / 218 folded, 64.6 / 60.9
    pairs)."""
    return f"""
        WITH {_partial_sql(field, limits)},
        bar AS (SELECT coalesce((SELECT score FROM partial ORDER BY score DESC OFFSET %(depth)s - 1 LIMIT 1), 0) AS at),
        kept AS (SELECT partial.* FROM partial, bar WHERE partial.score + %(remainder)s >= bar.at),
        more AS (
            SELECT k.chunk_id, sum(r.weight * u.tf / (u.tf + %(a0)s + %(a1)s * k.length) ORDER BY r.term_id) AS score
            FROM unnest(%(rest_ids)s::int[], %(rest_weights)s::float8[]) AS r(term_id, weight)
            JOIN hoidap_postings_{field} b ON b.term_id = r.term_id
                 AND b.block IN (SELECT DISTINCT (chunk_id >> {BLOCK_BITS})::int FROM kept)
            CROSS JOIN LATERAL unnest(b.offsets, b.tfs) AS u(at, tf)
            JOIN kept k ON k.chunk_id = b.block::bigint * {BLOCK} + u.at
            GROUP BY k.chunk_id)
        SELECT k.chunk_id, k.score + coalesce(m.score, 0) AS score
        FROM kept k LEFT JOIN more m ON m.chunk_id = k.chunk_id
        ORDER BY score DESC, k.chunk_id LIMIT %(depth)s"""
