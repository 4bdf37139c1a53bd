//! `atelier materialize`: builds the stored response documents from the catalog tables,
//! set-based in SQL, and switches servers to them atomically.
//!
//! By default it rebuilds only the products the change queue names (`document_queue` in
//! schema.sql: a load queues the products it added, changed or removed, and capture
//! triggers queue every other write), in one transaction that also takes those queue
//! rows, so servers see all of the rebuilt documents or none. A full rebuild (`--all`,
//! or when the queue names a large share of the catalog, or the documents were never
//! built) fills a new table and swaps it for the old one at commit: a reader sees all old
//! or all new documents, never a mix and never an empty table. `--products` rewrites
//! the listed products' rows. Every transaction ends with NOTIFYs telling servers which
//! cache entries are stale ([`notice`]). [`follow`] takes the queue in small batches as
//! it fills; [`list`] keeps the list's rank index in step.

pub mod follow;
pub mod list;

use std::time::Instant;

use tokio_postgres::Transaction;

use crate::db::Database;
use crate::documents::{self, Notice, Pages};
use crate::{Error, Result};

/// The `campus` of every product when none is configured.
pub const DEFAULT_CAMPUS: &str = "hr-rfp";

/// Serialises materialize runs against each other (an arbitrary, fixed advisory-lock
/// key). Runs that rebuild many products hold it exclusively; each batch of a follower
/// holds it shared, so followers run side by side and wait only for those.
const MATERIALIZE_LOCK_KEY: i64 = 0x6d61_7465_7269_616c;

/// A queue naming more than this share of the catalog's products is rebuilt in full: a
/// new table filled in parts on several connections beats rewriting that many rows in
/// place (measured at a million products: partial rebuilds cost about 0.5 ms per product
/// against 0.25 ms for a full one).
const FULL_REBUILD_SHARE: f64 = 0.25;

/// A queue naming at most this many products is rebuilt in place whatever the catalog's
/// size: a small catalog gains nothing from a new table.
const FULL_REBUILD_MIN: i64 = 1_000;

/// Past this many products a partial rebuild drops every list page rather than
/// computing which ones moved: the ranks cost more than they save then.
const MAX_RANKED_PRODUCTS: usize = 5_000;

/// How styles documents are built from rows; preceded by `styled` and the style, photo
/// and sku sources.
const STYLES_SQL: &str = include_str!("styles.sql");

/// How documents are built from rows; preceded by the sources and followed by a store.
const BUILD_SQL: &str = concat!(
    include_str!("styles.sql"),
    ",\n",
    include_str!("documents.sql")
);

/// The `parts` bit of a queue row whose change touches only the styles document (a
/// style, photo or sku row): see `document_queue` in schema.sql.
const STYLES_PART: i16 = 4;

/// The rows of the products with ids in $2 ..< $3, one part of a full rebuild.
const PART_SOURCES: &str = "
    product_src AS (SELECT * FROM product WHERE id >= $2::bigint AND id < $3::bigint),
    styled AS (SELECT id FROM product_src),
    style_src AS (SELECT * FROM style WHERE product_id >= $2::bigint AND product_id < $3::bigint),
    feature_src AS (SELECT * FROM feature WHERE product_id >= $2::bigint AND product_id < $3::bigint),
    photo_src AS (SELECT ph.* FROM photo ph JOIN style s ON s.id = ph.style_id
                  WHERE s.product_id >= $2::bigint AND s.product_id < $3::bigint),
    sku_src AS (SELECT sk.* FROM sku sk JOIN style s ON s.id = sk.style_id
                WHERE s.product_id >= $2::bigint AND s.product_id < $3::bigint),
    related_src AS (SELECT * FROM related WHERE product_id >= $2::bigint AND product_id < $3::bigint),";

/// The rows of the products listed in $2 (distinct); a file of its own, so that
/// bench/freshness compares served documents with what this very query builds.
const SOME_SOURCES: &str = include_str!("some_sources.sql");

/// Fills `document_next` with one part's documents.
const FILL_PART_SQL: &str = "
    INSERT INTO document_next (product_id, list_entry, product, styles, related)
    SELECT product_id, list_entry, product, styles, related
    FROM built";

/// The first product id of the part that starts after $1 products.
const PART_START_SQL: &str = "SELECT id FROM product ORDER BY id OFFSET $1::bigint LIMIT 1";

/// The SET list of a document rewrite: a body equal to the stored one keeps the stored
/// value, so an unchanged body (most of them: a change of stock touches only `styles`)
/// is not written again, nor its TOAST chunks and their WAL.
macro_rules! keep_unchanged {
    () => {
        "list_entry = CASE WHEN document.list_entry = EXCLUDED.list_entry
                           THEN document.list_entry ELSE EXCLUDED.list_entry END,
         product = CASE WHEN document.product = EXCLUDED.product
                        THEN document.product ELSE EXCLUDED.product END,
         styles = CASE WHEN document.styles = EXCLUDED.styles
                       THEN document.styles ELSE EXCLUDED.styles END,
         related = CASE WHEN document.related = EXCLUDED.related
                        THEN document.related ELSE EXCLUDED.related END"
    };
}

/// Writes the listed products' documents in place; says which ones are new.
const UPSERT_SOME_SQL: &str = concat!(
    "
    INSERT INTO document (product_id, list_entry, product, styles, related)
    SELECT product_id, list_entry, product, styles, related
    FROM built
    ON CONFLICT (product_id) DO UPDATE SET ",
    keep_unchanged!(),
    "
    RETURNING product_id, (xmax = 0) AS inserted"
);

/// A partial rebuild of at least this many products builds its documents on several
/// connections at once (into `document_batch`) before writing them in its transaction:
/// building is most of the work, and reads of rows not in memory overlap.
const PARALLEL_MIN: usize = 2_000;

/// Fills `document_batch` with the documents of the products in $2.
const FILL_BATCH_SQL: &str = "
    INSERT INTO document_batch (product_id, list_entry, product, styles, related)
    SELECT product_id, list_entry, product, styles, related
    FROM built";

/// Writes the documents of `document_batch` in place; says which ones are new.
const UPSERT_BATCH_SQL: &str = concat!(
    "
    INSERT INTO document (product_id, list_entry, product, styles, related)
    SELECT product_id, list_entry, product, styles, related
    FROM document_batch
    ON CONFLICT (product_id) DO UPDATE SET ",
    keep_unchanged!(),
    "
    RETURNING product_id, (xmax = 0) AS inserted"
);

/// The style, photo and sku rows of the products in $1 (distinct), for their styles
/// documents alone.
const RESTYLE_SOURCES: &str = "
    styled AS (SELECT DISTINCT unnest($1::int[]) AS id),
    style_src AS MATERIALIZED (SELECT * FROM style WHERE product_id = ANY($1::int[])),
    photo_src AS (SELECT * FROM photo WHERE style_id = ANY(ARRAY(SELECT id FROM style_src))),
    sku_src AS (SELECT * FROM sku WHERE style_id = ANY(ARRAY(SELECT id FROM style_src))),";

/// Rewrites the styles documents of the products in $1 that have a document; says which.
const RESTYLE_SQL: &str = "
    UPDATE document d
    SET styles = CASE WHEN d.styles = x.styles THEN d.styles ELSE x.styles END
    FROM styles_doc x
    WHERE d.product_id = x.product_id
    RETURNING d.product_id";

/// Removes documents of listed products that the catalog no longer has.
const DELETE_GONE_SQL: &str = "
    DELETE FROM document
    WHERE product_id = ANY($1) AND NOT EXISTS (SELECT 1 FROM product p WHERE p.id = product_id)
    RETURNING product_id";

/// The listed ids that neither the catalog nor the documents know: a product that left
/// the catalog still has a document until a materialize removes it, so it is not one.
const UNKNOWN_SQL: &str = "
    SELECT coalesce(array_agg(DISTINCT u.id ORDER BY u.id), '{}')
    FROM unnest($1::int[]) AS u(id)
    WHERE NOT EXISTS (SELECT 1 FROM product p WHERE p.id = u.id)
      AND NOT EXISTS (SELECT 1 FROM document d WHERE d.product_id = u.id)";

/// Unknown ids named in a message at most; the rest are counted.
const MAX_NAMED_IDS: usize = 20;

/// Which documents to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every product: a new document table swapped in atomically.
    All,
    /// The products the change queue names, taking their queue rows; in full when the
    /// queue names too many, holds a TRUNCATE, or the documents were never built.
    Queued,
    /// Only these products (documents of ids no longer in the catalog are removed).
    Products(Vec<i32>),
}

/// What `atelier materialize` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// One rebuild, then exit.
    Rebuild(Scope),
    /// Rebuild changed products as their changes commit, until stopped.
    Follow,
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
    /// Longest a follower waits on an empty queue for a notification before it looks
    /// again all the same: the safety net for rows queued with triggers off
    /// (`session_replication_role = replica`), and for a writer that commits long after
    /// its statement, past a working follower's promise to look again.
    pub follow_poll: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            campus: DEFAULT_CAMPUS.to_string(),
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            follow_poll: std::time::Duration::from_secs(1),
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
    let scope = match scope {
        Scope::Queued if needs_full_rebuild(&transaction).await? => Scope::All,
        scope => scope,
    };
    let (report, notice, scope_text) = match &scope {
        Scope::All => {
            let documents = rebuild_all(url, &transaction, settings).await?;
            let report = MaterializeReport {
                documents,
                ..MaterializeReport::default()
            };
            (report, Notice::All, "all".to_string())
        }
        Scope::Queued => {
            const TAKE_SQL: &str = "DELETE FROM document_queue RETURNING product_id, parts";
            let rows = transaction.query(TAKE_SQL, &[]).await?;
            let taken: Vec<(i32, i16)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
            if taken.iter().any(|&(id, _)| id == 0) {
                // A TRUNCATE committed since the queue was looked at.
                let documents = rebuild_all(url, &transaction, settings).await?;
                let report = MaterializeReport {
                    documents,
                    ..MaterializeReport::default()
                };
                (report, Notice::All, "all".to_string())
            } else {
                let rebuilt =
                    rebuild_changed(&transaction, &taken, settings, Some(url), None).await?;
                (rebuilt.report, rebuilt.notice, "changed".to_string())
            }
        }
        Scope::Products(ids) => {
            if ids.iter().any(|&id| id <= 0) {
                return Err(Error::InvalidInput(
                    "--products takes positive product ids".into(),
                ));
            }
            let unknown: Vec<i32> = transaction.query_one(UNKNOWN_SQL, &[ids]).await?.get(0);
            let mut listed = ids.clone();
            listed.sort_unstable();
            listed.dedup();
            if unknown.len() == listed.len() {
                return Err(Error::InvalidInput(format!(
                    "{}; nothing was materialized",
                    not_in_catalog(&unknown)
                )));
            }
            let mut rebuilt = rebuild_some(&transaction, ids, settings, Some(url), None).await?;
            rebuilt.report.unknown = unknown;
            let text = format!("{} products", ids.len());
            (rebuilt.report, rebuilt.notice, text)
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
    announce(&transaction, &notice, NOTIFY_SQL).await?;
    transaction.commit().await?;
    Ok(report)
}

/// Whether the queue is better served by a full rebuild: the documents were never
/// built, a TRUNCATE emptied a catalog table, the last load predates the queue (it
/// queued nothing), or the queue names a large share of the products.
async fn needs_full_rebuild(transaction: &Transaction<'_>) -> Result<bool> {
    const STATE_SQL: &str = "
        SELECT NOT EXISTS (SELECT 1 FROM catalog_run WHERE kind = 'materialize'),
               EXISTS (SELECT 1 FROM document_queue WHERE product_id = 0),
               coalesce((SELECT kind = 'load' AND NOT summary ? 'queued' FROM catalog_run
                         ORDER BY id DESC LIMIT 1), false),
               (SELECT count(*) FROM document_queue),
               (SELECT count(*) FROM product)";
    let row = transaction.query_one(STATE_SQL, &[]).await?;
    let (never, truncated, unqueued_load): (bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    let (queued, products): (i64, i64) = (row.get(3), row.get(4));
    if never || truncated || unqueued_load {
        return Ok(true);
    }
    let threshold = ((products as f64 * FULL_REBUILD_SHARE) as i64).max(FULL_REBUILD_MIN);
    if queued <= threshold {
        return Ok(false);
    }
    // Rows, not products: a product changed many times is queued many times.
    let distinct: i64 = transaction
        .query_one("SELECT count(DISTINCT product_id) FROM document_queue", &[])
        .await?
        .get(0);
    Ok(distinct > threshold)
}

/// Sends one NOTIFY payload ($2) on a channel ($1).
const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

/// Sends `notice` on [`documents::CHANNEL`] through `notify` ([`NOTIFY_SQL`], or that
/// statement prepared); delivered when the transaction commits.
async fn announce<S>(transaction: &Transaction<'_>, notice: &Notice, notify: &S) -> Result<()>
where
    S: tokio_postgres::ToStatement + ?Sized,
{
    for payload in notice.payloads() {
        transaction
            .execute(notify, &[&documents::CHANNEL, &payload])
            .await?;
    }
    Ok(())
}

/// Builds `document_next` in parts on `settings.jobs` connections and swaps it in for
/// `document` inside `transaction`, with the list's blocks cut afresh and the change
/// queue emptied; returns the documents written. A failure leaves `document` as it was
/// (and `document_next` for the next run to drop).
async fn rebuild_all(
    url: &str,
    transaction: &tokio_postgres::Transaction<'_>,
    settings: &Settings,
) -> Result<u64> {
    // Writers and loads wait until the swap: every part sees the same catalog, and every
    // change queued until now is in it.
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
    let bounds: Vec<(i64, i64)> = starts
        .iter()
        .enumerate()
        .map(|(k, &(_, first))| {
            let end = starts
                .get(k + 1)
                .map_or(i64::from(i32::MAX) + 1, |&(_, id)| id);
            (first, end)
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
    let parts = bounds.iter().map(|&(first, end)| {
        let fill = &fill;
        async move {
            let client = crate::db::connect(url).await?;
            let written = client
                .execute(fill.as_str(), &[&settings.campus, &first, &end])
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
             TRUNCATE document_queue;",
        )
        .await?;
    list::rebuild(transaction).await?;
    // Privileges are not copied by LIKE: schema.sql grants them again.
    transaction.batch_execute(crate::db::SCHEMA_SQL).await?;
    Ok(documents)
}

/// The statements of a partial rebuild, prepared once on a connection that rebuilds
/// often (a follower's): planning the build query costs more than running it for a
/// few products.
pub(crate) struct Prepared {
    delete_gone: tokio_postgres::Statement,
    upsert: tokio_postgres::Statement,
    restyle: tokio_postgres::Statement,
}

impl Prepared {
    pub(crate) async fn new(client: &tokio_postgres::Client) -> Result<Prepared> {
        let upsert = format!("WITH {SOME_SOURCES}\n{BUILD_SQL}\n{UPSERT_SOME_SQL}");
        let restyle = format!("WITH {RESTYLE_SOURCES}\n{STYLES_SQL}\n{RESTYLE_SQL}");
        Ok(Prepared {
            delete_gone: client.prepare(DELETE_GONE_SQL).await?,
            upsert: client.prepare(&upsert).await?,
            restyle: client.prepare(&restyle).await?,
        })
    }
}

/// What a partial rebuild did, and what servers must drop.
pub(crate) struct Rebuilt {
    pub report: MaterializeReport,
    pub notice: Notice,
}

/// Rebuilds what the queue rows `taken` (product, parts) ask for: products whose
/// changes touched only their styles get that document alone, when they have one; the
/// others, all of theirs ([`rebuild_some`]).
pub(crate) async fn rebuild_changed(
    transaction: &Transaction<'_>,
    taken: &[(i32, i16)],
    settings: &Settings,
    url: Option<&str>,
    prepared: Option<&Prepared>,
) -> Result<Rebuilt> {
    let mut parts: std::collections::BTreeMap<i32, i16> = std::collections::BTreeMap::new();
    for &(id, part) in taken {
        *parts.entry(id).or_default() |= part;
    }
    let styles_only: Vec<i32> = parts
        .iter()
        .filter(|&(_, &part)| part == STYLES_PART)
        .map(|(&id, _)| id)
        .collect();
    let restyled = restyle(transaction, &styles_only, prepared).await?;
    let full: Vec<i32> = parts
        .keys()
        .copied()
        .filter(|id| restyled.binary_search(id).is_err())
        .collect();
    let mut rebuilt = rebuild_some(transaction, &full, settings, url, prepared).await?;
    rebuilt.report.documents += restyled.len() as u64;
    if let Notice::Products {
        ids, styles_only, ..
    } = &mut rebuilt.notice
    {
        // A styles document is in no list page: no rank to name.
        ids.extend(&restyled);
        ids.sort_unstable();
        *styles_only = restyled;
    }
    Ok(rebuilt)
}

/// Rewrites the styles documents of `ids` that have a document; returns those, sorted.
async fn restyle(
    transaction: &Transaction<'_>,
    ids: &[i32],
    prepared: Option<&Prepared>,
) -> Result<Vec<i32>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = match prepared {
        Some(prepared) => transaction.query(&prepared.restyle, &[&ids]).await?,
        None => {
            let restyle = format!("WITH {RESTYLE_SOURCES}\n{STYLES_SQL}\n{RESTYLE_SQL}");
            transaction.query(&restyle, &[&ids]).await?
        }
    };
    let mut restyled: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    restyled.sort_unstable();
    Ok(restyled)
}

/// Rewrites the documents of `ids` (positive) in place, removing those of vanished
/// products, and keeps the list's blocks in step. Given the database's `url`, many
/// products are built on `settings.jobs` connections at once; whatever connection
/// builds them, they read the catalog after the transaction took its queue rows, so
/// they hold every change those rows stand for.
pub(crate) async fn rebuild_some(
    transaction: &Transaction<'_>,
    ids: &[i32],
    settings: &Settings,
    url: Option<&str>,
    prepared: Option<&Prepared>,
) -> Result<Rebuilt> {
    let started = Instant::now();
    // A few thousand products' statements can cost enough to be compiled, which takes
    // longer than it saves.
    transaction.batch_execute("SET LOCAL jit = off").await?;
    let removed = match prepared {
        Some(prepared) => transaction.query(&prepared.delete_gone, &[&ids]).await?,
        None => transaction.query(DELETE_GONE_SQL, &[&ids]).await?,
    };
    let removed: Vec<i32> = removed.iter().map(|row| row.get(0)).collect();
    let rows = match (url, prepared) {
        (Some(url), _) if ids.len() >= PARALLEL_MIN && settings.jobs > 1 => {
            build_batch(url, ids, settings).await?;
            let rows = transaction.query(UPSERT_BATCH_SQL, &[]).await?;
            transaction
                .batch_execute("DROP TABLE document_batch")
                .await?;
            rows
        }
        (_, Some(prepared)) => {
            transaction
                .query(&prepared.upsert, &[&settings.campus, &ids])
                .await?
        }
        _ => {
            let upsert = format!("WITH {SOME_SOURCES}\n{BUILD_SQL}\n{UPSERT_SOME_SQL}");
            transaction
                .query(&upsert, &[&settings.campus, &ids])
                .await?
        }
    };
    let mut written = Vec::with_capacity(rows.len());
    let mut inserted = Vec::new();
    for row in &rows {
        let id: i32 = row.get(0);
        written.push(id);
        if row.get::<_, bool>(1) {
            inserted.push(id);
        }
    }
    let built = started.elapsed();
    list::lock(transaction).await?;
    let shift = list::apply(transaction, &inserted, &removed).await?;
    let listed = started.elapsed();
    let pages = if ids.len() > MAX_RANKED_PRODUCTS {
        Pages::All
    } else {
        // Pages from the shift on are dropped whole: only ranks before it are needed.
        let mut ranks = list::ranks(transaction, &written).await?;
        if let Some(shift) = shift {
            ranks.retain(|&rank| rank < shift);
        }
        Pages::Ranks { ranks, shift }
    };
    tracing::debug!(
        products = ids.len(),
        built_s = built.as_secs_f64(),
        listed_s = listed.as_secs_f64(),
        ranked_s = started.elapsed().as_secs_f64(),
        "partial rebuild"
    );
    let mut named = ids.to_vec();
    named.sort_unstable();
    named.dedup();
    Ok(Rebuilt {
        report: MaterializeReport {
            documents: written.len() as u64,
            removed: removed.len() as u64,
            unknown: Vec::new(),
        },
        notice: Notice::Products {
            ids: named,
            styles_only: Vec::new(),
            pages,
        },
    })
}

/// Builds the documents of `ids` into a new `document_batch` table, in ranges of ids
/// on `settings.jobs` connections at once. The table is unlogged (it lives for one
/// transaction of the caller's) and committed apart so the caller can read it.
async fn build_batch(url: &str, ids: &[i32], settings: &Settings) -> Result<()> {
    let setup = crate::db::connect(url).await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS document_batch;
             CREATE UNLOGGED TABLE document_batch (LIKE document);",
        )
        .await?;
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let fill = format!("WITH {SOME_SOURCES}\n{BUILD_SQL}\n{FILL_BATCH_SQL}");
    let parts = sorted
        .chunks(sorted.len().div_ceil(settings.jobs))
        .map(|part| {
            let fill = &fill;
            async move {
                let client = crate::db::connect(url).await?;
                client.batch_execute("SET jit = off").await?;
                client
                    .execute(fill.as_str(), &[&settings.campus, &part])
                    .await?;
                Ok::<(), Error>(())
            }
        });
    futures_util::future::try_join_all(parts).await?;
    Ok(())
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

/// `atelier materialize`.
pub async fn run(database: &Database, task: Task, settings: &Settings) -> Result<()> {
    let url = crate::db::resolve_url(database).await?;
    crate::db::apply_schema(&crate::db::connect(&url).await?).await?;
    let scope = match task {
        Task::Follow => return follow::run(&url, settings).await,
        Task::Rebuild(scope) => scope,
    };
    let started = Instant::now();
    let report = materialize(&url, scope, settings).await?;
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

/// What materialize builds for the products listed in $2 (an `int[]`, campus $1): one
/// row per product, `product_id, list_entry, product, styles, related` (jsonb), for
/// tools that compare served documents with a fresh build.
pub fn listed_documents_sql() -> String {
    format!(
        "WITH {SOME_SOURCES}\n{BUILD_SQL}\nSELECT product_id, list_entry, product, styles, related FROM built"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
