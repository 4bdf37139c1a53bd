//! The contract between the writers of the documents (`materialize`) and their readers
//! (`serve`): where the documents are and how servers read them, how a server tells
//! that a catalog is ready, and what a materialize announces when documents change.
//!
//! The `document` table (see `schema.sql`) holds one row per product, a column per
//! [`Kind`] ([`kind`] is the registry of them), each jsonb stored as the exact bytes
//! served. `list_block` indexes the list by rank, for pages in O(log n).

pub mod gzip;
pub mod kind;
pub mod notice;

pub use kind::{Kind, Kinds};
pub use notice::{Notice, Pages};

use std::error::Error as StdError;

use tokio_postgres::types::{FromSql, Type};

/// The product id that stands for every product in the change queue and in
/// `product_edited`: a TRUNCATE of a catalog table queues it (schema.sql). Catalog ids
/// are positive.
pub const EVERY_PRODUCT: i32 = 0;

/// The most list entries one page (`GET /products?count=`) may hold.
macro_rules! max_page_count {
    () => {
        1000
    };
}
pub const MAX_PAGE_COUNT: u32 = max_page_count!();
/// The `count` values a page may have, as error messages name them.
pub const PAGE_COUNT_RANGE: &str = concat!("1 to ", max_page_count!());

/// The `catalog_run.kind` a completed materialize records, which makes a catalog ready.
macro_rules! materialize_run {
    () => {
        "materialize"
    };
}
pub const MATERIALIZE_RUN: &str = materialize_run!();

/// The PostgreSQL NOTIFY channel on which a materialize says what changed; payloads are
/// [`Notice`]s.
pub const CHANNEL: &str = "atelier_documents";

/// How long `document_notice` keeps what was announced on [`CHANNEL`]: a server whose
/// LISTEN connection was down for less catches up on exactly what it missed.
pub const NOTICE_RETENTION: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a materialize has ever completed in this database: one bool column. A server
/// is ready once it holds true.
pub const READY_SQL: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM catalog_run WHERE kind = '",
    materialize_run!(),
    "')"
);

/// The list entries from 1-based rank $1 up to rank $2: what a page holds, in id order;
/// nothing past the end of the list.
pub const PAGE_SQL: &str = "
    SELECT d.list_entry FROM document d
    WHERE d.product_id >= (
        SELECT x.product_id
        FROM (SELECT first_id, start FROM list_block WHERE start < $1
              ORDER BY start DESC, first_id DESC LIMIT 1) b
        CROSS JOIN LATERAL (SELECT product_id FROM document WHERE product_id >= b.first_id
                            ORDER BY product_id OFFSET $1 - b.start - 1 LIMIT 1) x)
    ORDER BY d.product_id
    LIMIT $2 - $1 + 1";

/// A `jsonb` document's JSON text, borrowed from the row as PostgreSQL sent it: the
/// binary wire form is a version byte (1) followed by the text, so nothing is parsed.
/// These are the bytes served, and the bytes whose gzip form is stored.
pub struct JsonbText<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for JsonbText<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        match raw.split_first() {
            Some((1, text)) => Ok(JsonbText(text)),
            _ => Err("unsupported jsonb wire format version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}
