//! `atelier materialize`: builds the stored response documents from the catalog tables,
//! set-based in SQL, and switches servers to them atomically.
//!
//! A full rebuild fills a new table in one transaction and swaps it for the old one at
//! commit, so a reader sees all old or all new documents, never a mix and never an empty
//! table. A partial rebuild (`--products`) rewrites those rows in one transaction. Either
//! way the transaction ends with a NOTIFY telling servers which cache entries are stale.

use std::time::Instant;

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

/// The rows of the products with ids in $2 ..< $3, one part of a full rebuild.
const PART_SOURCES: &str = "
    product_src AS (SELECT * FROM product WHERE id >= $2::bigint AND id < $3::bigint),
    style_src AS (SELECT * FROM style WHERE product_id >= $2::bigint AND product_id < $3::bigint),
    feature_src AS (SELECT * FROM feature WHERE product_id >= $2::bigint AND product_id < $3::bigint),
    photo_src AS (SELECT ph.* FROM photo ph JOIN style s ON s.id = ph.style_id
                  WHERE s.product_id >= $2::bigint AND s.product_id < $3::bigint),
    sku_src AS (SELECT sk.* FROM sku sk JOIN style s ON s.id = sk.style_id
                WHERE s.product_id >= $2::bigint AND s.product_id < $3::bigint),
    related_src AS (SELECT * FROM related WHERE product_id >= $2::bigint AND product_id < $3::bigint),";

/// The rows of the products listed in $2.
const SOME_SOURCES: &str = "
    wanted AS (SELECT DISTINCT unnest($2::int[]) AS id),
    product_src AS (SELECT * FROM product WHERE id IN (SELECT id FROM wanted)),
    style_src AS MATERIALIZED (SELECT * FROM style WHERE product_id IN (SELECT id FROM wanted)),
    feature_src AS (SELECT * FROM feature WHERE product_id IN (SELECT id FROM wanted)),
    photo_src AS (SELECT * FROM photo WHERE style_id IN (SELECT id FROM style_src)),
    sku_src AS (SELECT * FROM sku WHERE style_id IN (SELECT id FROM style_src)),
    related_src AS (SELECT * FROM related WHERE product_id IN (SELECT id FROM wanted)),";

/// Fills `document_next` with one part's documents; $4 is the number of products before
/// the part, so positions continue from the previous part.
const FILL_PART_SQL: &str = "
    INSERT INTO document_next (product_id, position, list_entry, product, styles, related)
    SELECT product_id, ($4::bigint + row_number() OVER (ORDER BY product_id))::integer,
           list_entry, product, styles, related
    FROM built";

/// The first product id of the part that starts after $1 products.
const PART_START_SQL: &str = "SELECT id FROM product ORDER BY id OFFSET $1::bigint LIMIT 1";

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

/// The listed ids that neither the catalog nor the documents know: a product that left
/// the catalog still has a document until a materialize removes it, so it is not one.
const UNKNOWN_SQL: &str = "
    SELECT coalesce(array_agg(DISTINCT u.id ORDER BY u.id), '{}')
    FROM unnest($1::int[]) AS u(id)
    WHERE NOT EXISTS (SELECT 1 FROM product p WHERE p.id = u.id)
      AND NOT EXISTS (SELECT 1 FROM document d WHERE d.product_id = u.id)";

/// Unknown ids named in a message at most; the rest are counted.
const MAX_NAMED_IDS: usize = 20;

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
    /// Listed ids that are neither in the catalog nor among the documents, in order
    /// (partial rebuilds); when every listed id is unknown, materialize fails instead.
    pub unknown: Vec<i32>,
}

/// How documents are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `campus` value written into every product document.
    pub campus: String,
    /// Connections that build parts of a full rebuild at once.
    pub jobs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            campus: DEFAULT_CAMPUS.to_string(),
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Rebuilds the documents in `scope` in the database at `url`, switches to them
/// atomically and notifies servers.
pub async fn materialize(
    url: &str,
    scope: Scope,
    settings: &Settings,
) -> Result<MaterializeReport> {
    let mut client = crate::db::connect(url).await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MATERIALIZE_LOCK_KEY])
        .await?;
    let (report, payload, scope_text) = match &scope {
        Scope::All => {
            let documents = rebuild_all(url, &transaction, settings).await?;
            let report = MaterializeReport {
                documents,
                ..MaterializeReport::default()
            };
            (report, r#"{"all":true}"#.to_string(), "all".to_string())
        }
        Scope::Products(ids) => {
            let report = rebuild_some(&transaction, ids, &settings.campus).await?;
            (
                report,
                products_payload(ids),
                format!("{} products", ids.len()),
            )
        }
    };
    let summary = serde_json::json!({
        "scope": scope_text,
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

/// Builds `document_next` in parts on `settings.jobs` connections and swaps it in for
/// `document` inside `transaction`; returns the documents written. A failure leaves
/// `document` as it was (and `document_next` for the next run to drop).
async fn rebuild_all(
    url: &str,
    transaction: &tokio_postgres::Transaction<'_>,
    settings: &Settings,
) -> Result<u64> {
    // Loads wait until the swap: every part sees the same catalog.
    transaction
        .batch_execute("LOCK TABLE product, style, feature, photo, sku, related IN SHARE MODE")
        .await?;
    let products: i64 = transaction
        .query_one("SELECT count(*) FROM product", &[])
        .await?
        .get(0);
    let jobs = settings.jobs.max(1) as i64;
    // Part k starts after k*products/jobs products; its bounds are the ids found there.
    let mut starts: Vec<(i64, i64)> = Vec::new();
    for k in 0..jobs {
        let before = k * products / jobs;
        if let Some(row) = transaction.query_opt(PART_START_SQL, &[&before]).await? {
            let id: i32 = row.get(0);
            starts.push((before, i64::from(id)));
        }
    }
    starts.dedup_by_key(|(_, id)| *id);
    let bounds: Vec<(i64, i64, i64)> = starts
        .iter()
        .enumerate()
        .map(|(k, &(before, first))| {
            let end = starts
                .get(k + 1)
                .map_or(i64::from(i32::MAX) + 1, |&(_, id)| id);
            (before, first, end)
        })
        .collect();

    // The new table must be visible to the part connections, so it is committed apart;
    // LIKE … INCLUDING ALL keeps schema.sql the one definition of its keys and indexes.
    let setup = crate::db::connect(url).await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS document_next;
             CREATE TABLE document_next (LIKE document INCLUDING ALL);",
        )
        .await?;
    let fill = format!("WITH {PART_SOURCES}\n{BUILD_SQL}\n{FILL_PART_SQL}");
    let parts = bounds.iter().map(|&(before, first, end)| {
        let fill = &fill;
        async move {
            let client = crate::db::connect(url).await?;
            let written = client
                .execute(fill.as_str(), &[&settings.campus, &first, &end, &before])
                .await?;
            Ok::<u64, Error>(written)
        }
    });
    let documents = futures_util::future::try_join_all(parts)
        .await?
        .iter()
        .sum();

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
    // Privileges are not copied by LIKE: schema.sql grants them again.
    transaction.batch_execute(crate::db::SCHEMA_SQL).await?;
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
    let unknown: Vec<i32> = transaction.query_one(UNKNOWN_SQL, &[&ids]).await?.get(0);
    let mut listed = ids.to_vec();
    listed.sort_unstable();
    listed.dedup();
    if unknown.len() == listed.len() {
        return Err(Error::InvalidInput(format!(
            "{}; nothing was materialized",
            not_in_catalog(&unknown)
        )));
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
        unknown,
    })
}

/// "product 7 is not in the catalog", or "products 7, 9 are …", naming at most
/// [`MAX_NAMED_IDS`] of `ids`.
pub fn not_in_catalog(ids: &[i32]) -> String {
    let mut named = ids
        .iter()
        .take(MAX_NAMED_IDS)
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > MAX_NAMED_IDS {
        named.push_str(&format!(" and {} more", ids.len() - MAX_NAMED_IDS));
    }
    match ids.len() {
        1 => format!("product {named} is not in the catalog"),
        _ => format!("products {named} are not in the catalog"),
    }
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
    let url = crate::db::resolve_url(&args.db.database()).await?;
    crate::db::apply_schema(&crate::db::connect(&url).await?).await?;
    let scope = match &args.products {
        Some(ids) => Scope::Products(ids.clone()),
        None => Scope::All,
    };
    let started = Instant::now();
    let settings = Settings {
        campus: args.campus.clone(),
        jobs: args.jobs,
    };
    let report = materialize(&url, scope, &settings).await?;
    if !report.unknown.is_empty() {
        tracing::warn!(
            "{}; materialized the others",
            not_in_catalog(&report.unknown)
        );
    }
    println!(
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

    #[test]
    fn unknown_ids_are_named_up_to_a_limit() {
        assert_eq!(not_in_catalog(&[7]), "product 7 is not in the catalog");
        assert_eq!(
            not_in_catalog(&[7, 9]),
            "products 7, 9 are not in the catalog"
        );
        let many: Vec<i32> = (1..=25).collect();
        assert!(not_in_catalog(&many).ends_with("19, 20 and 5 more are not in the catalog"));
    }
}
