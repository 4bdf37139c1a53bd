//! Building many documents on several connections at once: every product's, into a new
//! table swapped in for the old one (a rebuild of everything), or many listed products',
//! into a batch table a partial rebuild then writes in place. Building is most of the
//! work, and reads of rows not in memory overlap.

use tokio_postgres::Transaction;

use super::{Settings, compress, list, sql};
use crate::catalog::{LockMode, lock_catalog_sql};
use crate::{Error, Result};

/// Builds `document_next` with its gzip forms in ranges of ids on `settings.jobs`
/// connections and swaps it in for `document` inside `transaction`, with the list's
/// blocks cut afresh and the change queue emptied; returns the documents written. A failure leaves `document` as
/// it was (and `document_next` for the next run to drop).
pub async fn rebuild_everything(
    url: &str,
    transaction: &Transaction<'_>,
    settings: &Settings,
) -> Result<u64> {
    // Writers and loads wait until the swap: every range sees the same catalog, and every
    // change queued until now is in it.
    transaction
        .batch_execute(&lock_catalog_sql(LockMode::Share))
        .await?;
    let products: i64 = transaction
        .query_one("SELECT count(*) FROM product", &[])
        .await?
        .get(0);
    let ranges = ranges(transaction, products, settings.jobs.max(1) as i64).await?;

    // The new table must be visible to the range connections, so it is committed apart;
    // LIKE … INCLUDING ALL keeps schema.sql the one definition of its keys and indexes.
    let setup = crate::db::connect(url).await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS document_next;
             CREATE TABLE document_next (LIKE document INCLUDING ALL);",
        )
        .await?;
    let fill = sql::fill_range();
    let fills = ranges.iter().map(|range| {
        let fill = &fill;
        async move {
            let client = crate::db::connect(url).await?;
            let written = client
                .execute(fill.as_str(), &[&settings.campus, &range.first, &range.end])
                .await?;
            compress::in_range(&client, "document_next", range.first, range.end).await?;
            Ok::<u64, Error>(written)
        }
    });
    let documents = futures_util::future::try_join_all(fills)
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

/// Product ids `first ..< end`: the products one connection builds.
struct IdRange {
    first: i64,
    end: i64,
}

/// The catalog's `products` cut into `jobs` ranges of about as many products each.
async fn ranges(transaction: &Transaction<'_>, products: i64, jobs: i64) -> Result<Vec<IdRange>> {
    // Range k starts after k*products/jobs products, at the id found there.
    let mut starts: Vec<i64> = Vec::new();
    for k in 0..jobs {
        let before = k * products / jobs;
        if let Some(row) = transaction.query_opt(sql::RANGE_START, &[&before]).await? {
            starts.push(i64::from(row.get::<_, i32>(0)));
        }
    }
    starts.dedup();
    Ok(starts
        .iter()
        .enumerate()
        .map(|(k, &first)| IdRange {
            first,
            end: starts
                .get(k + 1)
                .copied()
                .unwrap_or(i64::from(i32::MAX) + 1),
        })
        .collect())
}

/// Builds the documents of `ids` into a new `document_batch` table, in ranges of ids
/// on `settings.jobs` connections at once. The table is unlogged (it lives for one
/// transaction of the caller's) and committed apart so the caller can read it.
pub async fn build_batch(url: &str, ids: &[i32], settings: &Settings) -> Result<()> {
    let setup = crate::db::connect(url).await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS document_batch;
             CREATE UNLOGGED TABLE document_batch (LIKE document);",
        )
        .await?;
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let fill = sql::fill_batch();
    let fills = sorted
        .chunks(sorted.len().div_ceil(settings.jobs))
        .map(|chunk| {
            let fill = &fill;
            async move {
                let client = crate::db::connect(url).await?;
                client.batch_execute("SET jit = off").await?;
                client
                    .execute(fill.as_str(), &[&settings.campus, &chunk])
                    .await?;
                Ok::<(), Error>(())
            }
        });
    futures_util::future::try_join_all(fills).await?;
    Ok(())
}
