//! The rank index of `GET /products` (`list_block` in schema.sql): blocks of consecutive
//! product ids, each knowing how many documents come before it, so that page P of C
//! entries is found in O(log n + block) and a product added or removed mid-list costs
//! an update of the blocks after it rather than a renumbering of every document.
//!
//! Also the ranks a change touched, which servers need to drop exactly the list pages
//! that moved.

use tokio_postgres::Transaction;

use crate::Result;

/// Documents per block when blocks are cut afresh; a block that grows past twice this
/// is split. Reading a page skips up to a block of keys, and adding or removing a
/// product updates every block after it: 256 keeps both near a few thousand rows at
/// a million products.
pub const BLOCK: i64 = 256;

/// Serialises the ends of partial rebuilds, from the blocks' shift to the commit (an
/// arbitrary, fixed advisory-lock key): two never shift the same blocks at once, and the
/// ranks one reports hold whatever another added or removed before it, so a page that
/// moves under a concurrent rebuild is never left in a cache.
const LIST_LOCK_KEY: i64 = 0x6c69_7374_626c_6f6b;

/// Waits for the partial rebuilds ending before this one, and holds off the others until
/// this transaction ends; call before [`apply`] and [`ranks`].
pub async fn lock(transaction: &Transaction<'_>) -> Result<()> {
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LIST_LOCK_KEY])
        .await?;
    Ok(())
}

/// Cuts the blocks afresh from the documents (inside a full rebuild's swap).
pub async fn rebuild(transaction: &Transaction<'_>) -> Result<()> {
    let cut = format!(
        "DELETE FROM list_block;
         INSERT INTO list_block (first_id, start)
         SELECT CASE WHEN rank = 1 THEN 0 ELSE product_id END, rank - 1
         FROM (SELECT product_id, row_number() OVER (ORDER BY product_id) AS rank
               FROM document) d
         WHERE rank % {BLOCK} = 1;
         INSERT INTO list_block (first_id, start)
         SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM list_block);"
    );
    transaction.batch_execute(&cut).await?;
    Ok(())
}

/// Takes account of documents added (`inserted`) and removed (`removed`) in this
/// transaction: shifts the blocks after them and splits blocks grown too large. Returns
/// the first rank whose entry moved, if any did. Needs [`lock`].
pub async fn apply(
    transaction: &Transaction<'_>,
    inserted: &[i32],
    removed: &[i32],
) -> Result<Option<i64>> {
    // Each change counts in the block holding its id; every later block moves by the
    // sum of the changes before it.
    const SHIFT_SQL: &str = "
        WITH changes AS (
            SELECT id, 1 AS delta FROM unnest($1::int[]) id
            UNION ALL SELECT id, -1 FROM unnest($2::int[]) id
        ), per_block AS (
            SELECT b.first_id, sum(c.delta) AS delta
            FROM changes c
            CROSS JOIN LATERAL (SELECT first_id FROM list_block WHERE first_id <= c.id
                                ORDER BY first_id DESC LIMIT 1) b
            GROUP BY b.first_id
        ), shifts AS (
            SELECT b.first_id,
                   coalesce(sum(p.delta) OVER (ORDER BY b.first_id
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                       AS shift
            FROM list_block b LEFT JOIN per_block p USING (first_id)
            WHERE b.first_id >= (SELECT min(first_id) FROM per_block)
        )
        UPDATE list_block b SET start = b.start + s.shift
        FROM shifts s WHERE b.first_id = s.first_id AND s.shift <> 0";
    // New blocks every BLOCK documents inside each block that an insert grew past twice
    // BLOCK documents. A block's size is the next block's start less its own, so only
    // the last block counts documents, and only grown blocks are read.
    const SPLIT_SQL: &str = "
        WITH sized AS (
            SELECT first_id, start,
                   lead(first_id) OVER w AS next_id, lead(start) OVER w AS next_start
            FROM list_block WINDOW w AS (ORDER BY first_id)
        ), grown AS (
            SELECT s.first_id, s.start, s.next_id
            FROM sized s
            WHERE s.first_id IN (
                      SELECT (SELECT first_id FROM list_block WHERE first_id <= i
                              ORDER BY first_id DESC LIMIT 1)
                      FROM unnest($1::int[]) i)
              AND coalesce(s.next_start,
                           s.start + (SELECT count(*) FROM document d
                                      WHERE d.product_id >= s.first_id)) - s.start > 2 * $2::bigint
        ), ranked AS (
            SELECT d.product_id, g.start,
                   row_number() OVER (PARTITION BY g.first_id ORDER BY d.product_id) AS k
            FROM grown g
            JOIN document d ON d.product_id >= g.first_id
                           AND d.product_id < coalesce(g.next_id, 2147483647)
        )
        INSERT INTO list_block (first_id, start)
        SELECT product_id, start + k - 1 FROM ranked WHERE k > 1 AND k % $2::bigint = 1";
    if inserted.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    transaction
        .execute(SHIFT_SQL, &[&inserted, &removed])
        .await?;
    if !inserted.is_empty() {
        transaction.execute(SPLIT_SQL, &[&inserted, &BLOCK]).await?;
    }
    let first = inserted.iter().chain(removed).copied().min();
    let before: i64 = transaction
        .query_one(BEFORE_SQL, &[&first.expect("a change")])
        .await?
        .get(0);
    Ok(Some(before + 1))
}

/// The number of documents with an id below $1.
const BEFORE_SQL: &str = "
    SELECT coalesce((
        SELECT b.start + (SELECT count(*) FROM document d
                          WHERE d.product_id >= b.first_id AND d.product_id < $1)
        FROM list_block b WHERE b.first_id <= $1 ORDER BY b.first_id DESC LIMIT 1), 0)::bigint";

/// The 1-based list ranks of those of `ids` that have a document.
pub async fn ranks(transaction: &Transaction<'_>, ids: &[i32]) -> Result<Vec<i64>> {
    const RANKS_SQL: &str = "
        SELECT (b.start + (SELECT count(*) FROM document d
                           WHERE d.product_id >= b.first_id AND d.product_id <= i))::bigint
        FROM unnest($1::int[]) i
        CROSS JOIN LATERAL (SELECT first_id, start FROM list_block WHERE first_id <= i
                            ORDER BY first_id DESC LIMIT 1) b
        WHERE EXISTS (SELECT 1 FROM document WHERE product_id = i)";
    let rows = transaction.query(RANKS_SQL, &[&ids]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
