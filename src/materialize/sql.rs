//! The statements of a rebuild. The build query is assembled from three pieces: the
//! source rows (every product's, a range of ids', or a list of products'), the shared
//! build (`styles.sql` then `documents.sql`, giving `built`), and what is done with
//! `built` (fill a new table, upsert in place, or return the rows). Every column list is
//! [`Kind::columns`], so a kind added to the registry is written everywhere.
//!
//! jsonb stores an object's keys sorted by length, then bytes, whatever order the build
//! writes them in: the order in the SQL is not the order served.

use crate::documents::{EVERY_PRODUCT, Kind, MATERIALIZE_RUN};

/// How styles documents are built from rows; preceded by `styled` and the style, photo
/// and sku sources.
const STYLES: &str = include_str!("styles.sql");

/// How the other documents are built, after [`STYLES`]; preceded by the sources.
const DOCUMENTS: &str = include_str!("documents.sql");

/// The rows of the products listed in $2 (distinct).
const LISTED_SOURCES: &str = include_str!("some_sources.sql");

/// The rows of the products with ids in $2 ..< $3, one range of a rebuild of everything.
const RANGE_SOURCES: &str = "
    product_src AS (SELECT * FROM product WHERE id >= $2::bigint AND id < $3::bigint),
    styled AS (SELECT id FROM product_src),
    style_src AS (SELECT * FROM style WHERE product_id >= $2::bigint AND product_id < $3::bigint),
    feature_src AS (SELECT * FROM feature WHERE product_id >= $2::bigint AND product_id < $3::bigint),
    photo_src AS (SELECT ph.* FROM photo ph JOIN style s ON s.id = ph.style_id
                  WHERE s.product_id >= $2::bigint AND s.product_id < $3::bigint),
    sku_src AS (SELECT sk.* FROM sku sk JOIN style s ON s.id = sk.style_id
                WHERE s.product_id >= $2::bigint AND s.product_id < $3::bigint),
    related_src AS (SELECT * FROM related WHERE product_id >= $2::bigint AND product_id < $3::bigint),";

/// The style, photo and sku rows of the products in $1 (distinct), for their styles
/// documents alone.
const RESTYLE_SOURCES: &str = "
    styled AS (SELECT DISTINCT unnest($1::int[]) AS id),
    style_src AS MATERIALIZED (SELECT * FROM style WHERE product_id = ANY($1::int[])),
    photo_src AS (SELECT * FROM photo WHERE style_id = ANY(ARRAY(SELECT id FROM style_src))),
    sku_src AS (SELECT * FROM sku WHERE style_id = ANY(ARRAY(SELECT id FROM style_src))),";

/// `WITH` the sources, then every document built into `built`; $1 is the campus.
fn build(sources: &str) -> String {
    format!("WITH {sources}\n{STYLES},\n{DOCUMENTS}")
}

/// Inserts every row of `built` into `table`.
fn fill(table: &str) -> String {
    let columns = Kind::columns();
    format!("INSERT INTO {table} (product_id, {columns})\nSELECT product_id, {columns} FROM built")
}

/// Writes the rows of `from` into `document` in place, and says which products are new.
/// A body equal to the stored one keeps the stored value, so an unchanged body (most of
/// them: a change of stock touches only `styles`) is not written again, nor its TOAST
/// chunks and their WAL; it keeps its gzip form too, and a changed body loses it.
fn upsert_from(from: &str) -> String {
    let columns = Kind::columns();
    let keep_unchanged = Kind::ALL
        .into_iter()
        .flat_map(|kind| {
            let column = kind.column();
            let body = format!(
                "{column} = CASE WHEN document.{column} = EXCLUDED.{column} \
                 THEN document.{column} ELSE EXCLUDED.{column} END"
            );
            let gzip = kind.gzip_column().map(|gzip| {
                format!(
                    "{gzip} = CASE WHEN document.{column} = EXCLUDED.{column} \
                     THEN document.{gzip} END"
                )
            });
            std::iter::once(body).chain(gzip)
        })
        .collect::<Vec<_>>()
        .join(",\n    ");
    format!(
        "INSERT INTO document (product_id, {columns})
SELECT product_id, {columns} FROM {from}
ON CONFLICT (product_id) DO UPDATE SET
    {keep_unchanged}
RETURNING product_id, (xmax = 0) AS inserted"
    )
}

/// What materialize builds for the products listed in $2 (an `int[]`, campus $1): one
/// row per product, `product_id` and a column per kind (jsonb), for tools that compare
/// served documents with a fresh build.
pub fn listed_documents_sql() -> String {
    format!(
        "{}\nSELECT product_id, {} FROM built",
        build(LISTED_SOURCES),
        Kind::columns()
    )
}

/// Builds the documents of the products listed in $2 and writes them in place; says
/// which products are new.
pub fn upsert_listed() -> String {
    format!("{}\n{}", build(LISTED_SOURCES), upsert_from("built"))
}

/// Fills `document_next` with the documents of the products with ids in $2 ..< $3.
pub fn fill_range() -> String {
    format!("{}\n{}", build(RANGE_SOURCES), fill("document_next"))
}

/// Fills `document_batch` with the documents of the products listed in $2.
pub fn fill_batch() -> String {
    format!("{}\n{}", build(LISTED_SOURCES), fill("document_batch"))
}

/// Writes the documents of `document_batch` in place; says which products are new.
pub fn upsert_batch() -> String {
    upsert_from("document_batch")
}

/// Rewrites the styles documents of the products in $1 that have a document; says
/// which.
pub fn restyle() -> String {
    let column = Kind::Styles.column();
    let gzip = Kind::Styles.gzip_column().expect("styles are read by id");
    format!(
        "WITH {RESTYLE_SOURCES}\n{STYLES}
UPDATE document d
SET {column} = CASE WHEN d.{column} = x.styles THEN d.{column} ELSE x.styles END,
    {gzip} = CASE WHEN d.{column} = x.styles THEN d.{gzip} END
FROM styles_doc x
WHERE d.product_id = x.product_id
RETURNING d.product_id"
    )
}

/// The bodies of the documents of products $1 (an `int4[]`) in `table` whose gzip forms
/// are not made ([`unmade_gzip`]).
pub fn unmade_gzip_listed(table: &str) -> String {
    unmade_gzip(table, "product_id = ANY($1::int4[])", "")
}

/// The same for the first $3 products (by id) with ids in $1 ..< $2.
pub fn unmade_gzip_in_range(table: &str) -> String {
    unmade_gzip(
        table,
        "product_id >= $1::int8 AND product_id < $2::int8",
        "ORDER BY product_id LIMIT $3",
    )
}

/// The bodies of `table`'s documents `condition` selects whose gzip forms are not made:
/// `product_id`, then a column per kind read by id ([`Kind::BY_ID`]), its body when its
/// form is missing, else NULL.
fn unmade_gzip(table: &str, condition: &str, tail: &str) -> String {
    let bodies = Kind::BY_ID
        .map(|kind| {
            let gzip = kind
                .gzip_column()
                .expect("a kind read by id has a gzip form");
            format!("CASE WHEN {gzip} IS NULL THEN {} END", kind.column())
        })
        .join(", ");
    let unmade = Kind::BY_ID
        .map(|kind| format!("{} IS NULL", kind.gzip_column().expect("read by id")))
        .join(" OR ");
    format!("SELECT product_id, {bodies} FROM {table} WHERE {condition} AND ({unmade}) {tail}")
}

/// Stores gzip forms in `table`: of products $1, a `bytea[]` per kind read by id, in
/// [`Kind::BY_ID`]'s order (NULL keeps what is there).
pub fn store_gzip(table: &str) -> String {
    let columns = Kind::BY_ID.map(|kind| kind.gzip_column().expect("read by id"));
    let set = columns
        .map(|gzip| format!("{gzip} = coalesce(made.{gzip}, d.{gzip})"))
        .join(", ");
    let arrays = (2..2 + columns.len())
        .map(|n| format!("${n}::bytea[]"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {table} d SET {set} \
         FROM unnest($1::int4[], {arrays}) AS made (product_id, {}) \
         WHERE d.product_id = made.product_id",
        columns.join(", ")
    )
}

/// Removes documents of listed products ($1) that the catalog no longer has.
pub const DELETE_GONE: &str = "
    DELETE FROM document
    WHERE product_id = ANY($1) AND NOT EXISTS (SELECT 1 FROM product p WHERE p.id = product_id)
    RETURNING product_id";

/// The listed ids ($1) that neither the catalog nor the documents know: a product that
/// left the catalog still has a document until a materialize removes it, so it is not
/// one.
pub const UNKNOWN: &str = "
    SELECT coalesce(array_agg(DISTINCT u.id ORDER BY u.id), '{}')
    FROM unnest($1::int[]) AS u(id)
    WHERE NOT EXISTS (SELECT 1 FROM product p WHERE p.id = u.id)
      AND NOT EXISTS (SELECT 1 FROM document d WHERE d.product_id = u.id)";

/// Takes every queue row (a rebuild holding every other off).
pub const TAKE_WHOLE_QUEUE: &str = "DELETE FROM document_queue RETURNING id, product_id, parts";

/// Locks up to $1 queue rows no other follower holds, oldest first.
pub const TAKE_QUEUE: &str = "SELECT id, product_id, parts FROM document_queue \
                              ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

/// Those of the products $1 no other follower is rebuilding ($2 is the lock class),
/// now held by this transaction.
pub const LOCK_PRODUCTS: &str =
    "SELECT id FROM unnest($1::int[]) id WHERE pg_try_advisory_xact_lock($2, id)";

/// Deletes the queue rows ($1) whose products were rebuilt.
pub const QUEUE_DONE: &str = "DELETE FROM document_queue WHERE id = ANY($1)";

/// Logs one notice payload ($2, a JSON object) in `document_notice` and sends it on a
/// channel ($1) with the log row's `seq` as its first key; delivered at commit.
pub const ANNOUNCE: &str = "\
    WITH logged AS (INSERT INTO document_notice (payload) VALUES ($2) RETURNING seq) \
    SELECT pg_notify($1, '{\"seq\":' || seq || ',' || substr($2, 2)) FROM logged";

/// Forgets the notices logged more than $1 seconds ago.
pub const PRUNE_NOTICES: &str = "DELETE FROM document_notice \
                                 WHERE sent_at < clock_timestamp() - make_interval(secs => $1)";

/// Records a completed materialize, with its summary ($1), which makes a catalog ready.
pub fn record_run() -> String {
    format!("INSERT INTO catalog_run (kind, summary) VALUES ('{MATERIALIZE_RUN}', $1::text::jsonb)")
}

/// Whether the queue is better served by rebuilding everything: the documents were
/// never built, a TRUNCATE emptied a catalog table, the last load predates the queue
/// (it queued nothing); then the queue's rows and the catalog's products.
pub fn queue_state() -> String {
    format!(
        "SELECT NOT EXISTS (SELECT 1 FROM catalog_run WHERE kind = '{MATERIALIZE_RUN}'),
               EXISTS (SELECT 1 FROM document_queue WHERE product_id = {EVERY_PRODUCT}),
               coalesce((SELECT kind = 'load' AND NOT summary ? 'queued' FROM catalog_run
                         ORDER BY id DESC LIMIT 1), false),
               (SELECT count(*) FROM document_queue),
               (SELECT count(*) FROM product)"
    )
}

/// The products the queue names, each once.
pub const QUEUED_PRODUCTS: &str = "SELECT count(DISTINCT product_id) FROM document_queue";

/// Whether the queue is longer than the share $1 of the catalog's products, and than
/// $2 rows. The planner's estimate of the catalog's size is close enough, and free.
pub const BACKLOG: &str = "
    SELECT (SELECT count(*) FROM document_queue)
           > greatest((SELECT reltuples FROM pg_class WHERE oid = 'product'::regclass)
                      * $1::float8, $2::bigint)";

/// The first product id after $1 products: where a range of a rebuild of everything
/// starts.
pub const RANGE_START: &str = "SELECT id FROM product ORDER BY id OFFSET $1::bigint LIMIT 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_that_writes_documents_names_every_kind() {
        for statement in [fill_range(), fill_batch(), upsert_listed(), upsert_batch()] {
            for kind in Kind::ALL {
                let set = format!("{0} = CASE WHEN document.{0}", kind.column());
                assert!(statement.contains(kind.column()), "{kind} in {statement}");
                if statement.contains("ON CONFLICT") {
                    assert!(statement.contains(&set), "{kind} kept when unchanged");
                    if let Some(gzip) = kind.gzip_column() {
                        let dropped = format!("{gzip} = CASE WHEN document.{}", kind.column());
                        assert!(statement.contains(&dropped), "{gzip} dropped when changed");
                    }
                }
            }
        }
    }
}
