//! `atelier materialize`: builds the stored response documents from the catalog tables,
//! set-based in SQL, and switches servers to them atomically.
//!
//! A full rebuild fills a new table in one transaction and swaps it for the old one at
//! commit, so a reader sees all old or all new documents, never a mix and never an empty
//! table. A partial rebuild (`--products`) rewrites those rows in one transaction. Either
//! way the transaction ends with a NOTIFY telling servers which cache entries are stale.

use std::time::Instant;

use tokio_postgres::Client;

use crate::config::MaterializeArgs;
use crate::{Error, Result};

/// The PostgreSQL NOTIFY channel on which a finished materialize says what changed.
/// Payload: `{"all":true}` or `{"products":[1,2,3]}`.
pub const NOTIFY_CHANNEL: &str = "atelier_documents";

/// Whether a materialize has ever completed in this database: one bool column.
pub const MATERIALIZED_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM catalog_run WHERE kind = 'materialize')";

/// The `campus` of every product when none is configured.
pub const DEFAULT_CAMPUS: &str = "hr-rfp";

/// NOTIFY payloads must stay under 8000 bytes; longer id lists become "all".
const MAX_NOTIFY_PAYLOAD: usize = 7900;

/// Serialises materialize runs against each other (an arbitrary, fixed advisory-lock key).
const MATERIALIZE_LOCK_KEY: i64 = 0x6d61_7465_7269_616c;

/// How documents are built from rows; preceded by the sources and followed by a store.
const BUILD_SQL: &str = include_str!("documents.sql");

/// Every row of the catalog.
const ALL_SOURCES: &str = "
    product_src AS (SELECT * FROM product),
    style_src AS (SELECT * FROM style),
    feature_src AS (SELECT * FROM feature),
    photo_src AS (SELECT * FROM photo),
    sku_src AS (SELECT * FROM sku),
    related_src AS (SELECT * FROM related),";

/// The rows of the products listed in $2.
const SOME_SOURCES: &str = "
    wanted AS (SELECT DISTINCT unnest($2::int[]) AS id),
    product_src AS (SELECT * FROM product WHERE id IN (SELECT id FROM wanted)),
    style_src AS MATERIALIZED (SELECT * FROM style WHERE product_id IN (SELECT id FROM wanted)),
    feature_src AS (SELECT * FROM feature WHERE product_id IN (SELECT id FROM wanted)),
    photo_src AS (SELECT * FROM photo WHERE style_id IN (SELECT id FROM style_src)),
    sku_src AS (SELECT * FROM sku WHERE style_id IN (SELECT id FROM style_src)),
    related_src AS (SELECT * FROM related WHERE product_id IN (SELECT id FROM wanted)),";

/// Fills `document_next` with every product's documents, positions by id order.
const FILL_NEXT_SQL: &str = "
    INSERT INTO document_next (product_id, position, list_entry, product, styles, related)
    SELECT product_id, row_number() OVER (ORDER BY product_id), list_entry, product, styles, related
    FROM built";

/// Writes the listed products' documents in place; new products get a temporary,
/// unique negative position until the renumbering below.
const UPSERT_SOME_SQL: &str = "
    INSERT INTO document (product_id, position, list_entry, product, styles, related)
    SELECT product_id, -product_id, list_entry, product, styles, related
    FROM built
    ON CONFLICT (product_id) DO UPDATE
    SET list_entry = EXCLUDED.list_entry, product = EXCLUDED.product,
        styles = EXCLUDED.styles, related = EXCLUDED.related
    RETURNING (xmax = 0) AS inserted";

/// Removes documents of listed products that the catalog no longer has.
const DELETE_GONE_SQL: &str = "
    DELETE FROM document
    WHERE product_id = ANY($1) AND NOT EXISTS (SELECT 1 FROM product p WHERE p.id = product_id)";

/// Makes positions 1..n in id order again after products came or went.
const RENUMBER_SQL: &str = "
    UPDATE document d SET position = r.position
    FROM (SELECT product_id, row_number() OVER (ORDER BY product_id) AS position FROM document) r
    WHERE d.product_id = r.product_id AND d.position <> r.position";

/// Which documents to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every product: a new document table swapped in atomically.
    All,
    /// Only these products (documents of ids no longer in the catalog are removed).
    Products(Vec<i32>),
}

/// What a materialize did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaterializeReport {
    /// Documents written (one per product, each holding its four bodies).
    pub documents: u64,
    /// Documents removed because their product left the catalog (partial rebuilds).
    pub removed: u64,
}

/// Rebuilds the documents in `scope` with `campus` in every product, switches to them
/// atomically and notifies servers.
pub async fn materialize(
    client: &mut Client,
    scope: Scope,
    campus: &str,
) -> Result<MaterializeReport> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MATERIALIZE_LOCK_KEY])
        .await?;
    let (report, payload) = match &scope {
        Scope::All => {
            let documents = rebuild_all(&transaction, campus).await?;
            let report = MaterializeReport {
                documents,
                removed: 0,
            };
            (report, r#"{"all":true}"#.to_string())
        }
        Scope::Products(ids) => {
            let report = rebuild_some(&transaction, ids, campus).await?;
            (report, products_payload(ids))
        }
    };
    let summary = serde_json::json!({
        "scope": match &scope { Scope::All => "all".to_string(), Scope::Products(ids) => format!("{} products", ids.len()) },
        "documents": report.documents,
        "removed": report.removed,
    });
    transaction
        .execute(
            "INSERT INTO catalog_run (kind, summary) VALUES ('materialize', $1::text::jsonb)",
            &[&summary.to_string()],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
        .await?;
    transaction.commit().await?;
    Ok(report)
}

/// Builds `document_next` and swaps it in for `document`; returns the documents written.
async fn rebuild_all(transaction: &tokio_postgres::Transaction<'_>, campus: &str) -> Result<u64> {
    // LIKE … INCLUDING ALL copies the keys and indexes, so schema.sql stays the one
    // definition of the table.
    transaction
        .batch_execute(
            "DROP TABLE IF EXISTS document_next;
             CREATE TABLE document_next (LIKE document INCLUDING ALL);",
        )
        .await?;
    let fill = format!("WITH {ALL_SOURCES}\n{BUILD_SQL}\n{FILL_NEXT_SQL}");
    let documents = transaction.execute(&fill, &[&campus]).await?;
    // Readers wait on this lock only for the instant of the swap, then see the new table.
    transaction
        .batch_execute(
            "ANALYZE document_next;
             LOCK TABLE document IN ACCESS EXCLUSIVE MODE;
             DROP TABLE document;
             ALTER TABLE document_next RENAME TO document;
             ALTER INDEX document_next_pkey RENAME TO document_pkey;
             ALTER INDEX document_next_position_key RENAME TO document_position_key;",
        )
        .await?;
    Ok(documents)
}

/// Rewrites the documents of `ids` in place, removing those of vanished products.
async fn rebuild_some(
    transaction: &tokio_postgres::Transaction<'_>,
    ids: &[i32],
    campus: &str,
) -> Result<MaterializeReport> {
    if ids.iter().any(|&id| id <= 0) {
        return Err(Error::InvalidInput(
            "--products takes positive product ids".into(),
        ));
    }
    transaction
        .batch_execute("SET CONSTRAINTS document_position_key DEFERRED")
        .await?;
    let removed = transaction.execute(DELETE_GONE_SQL, &[&ids]).await?;
    let upsert = format!("WITH {SOME_SOURCES}\n{BUILD_SQL}\n{UPSERT_SOME_SQL}");
    let rows = transaction.query(&upsert, &[&campus, &ids]).await?;
    let inserted = rows.iter().filter(|row| row.get::<_, bool>(0)).count();
    if removed > 0 || inserted > 0 {
        transaction.execute(RENUMBER_SQL, &[]).await?;
    }
    Ok(MaterializeReport {
        documents: rows.len() as u64,
        removed,
    })
}

/// The NOTIFY payload naming `ids`, or "all" when the list is too long for one message.
fn products_payload(ids: &[i32]) -> String {
    let payload = serde_json::json!({ "products": ids }).to_string();
    if payload.len() <= MAX_NOTIFY_PAYLOAD {
        payload
    } else {
        r#"{"all":true}"#.to_string()
    }
}

/// `atelier materialize`.
pub async fn run(args: &MaterializeArgs) -> Result<()> {
    let mut client = crate::db::connect_with_schema(&args.db).await?;
    let scope = match &args.products {
        Some(ids) => Scope::Products(ids.clone()),
        None => Scope::All,
    };
    let started = Instant::now();
    let report = materialize(&mut client, scope, &args.campus).await?;
    eprintln!(
        "materialized {} documents ({} removed) in {:.1?}",
        report.documents,
        report.removed,
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_id_lists_are_named_and_long_ones_become_all() {
        assert_eq!(products_payload(&[3, 1]), r#"{"products":[3,1]}"#);
        let many: Vec<i32> = (1_000_000..1_002_000).collect();
        assert_eq!(products_payload(&many), r#"{"all":true}"#);
    }
}
