//! The contract between the writers of the documents (`materialize`) and their readers
//! (`serve`): where the documents are and how servers read them, how a server tells
//! that a catalog is ready, and what a materialize announces when documents change.
//!
//! The `document` table (see `schema.sql`) holds one row per product: `list_entry`
//! (its entry in `GET /products`), `product`, `styles` and `related` (the bodies of
//! `GET /products/:id`, `/styles` and `/related`), each jsonb stored as the exact bytes
//! served. `list_block` indexes the list by rank, for pages in O(log n).

pub mod notice;

pub use notice::{Notice, Pages};

/// The PostgreSQL NOTIFY channel on which a materialize says what changed; payloads are
/// [`Notice`]s.
pub const CHANNEL: &str = "atelier_documents";

/// Whether a materialize has ever completed in this database: one bool column. A server
/// is ready once it holds true.
pub const READY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM catalog_run WHERE kind = 'materialize')";

/// The body of `GET /products/:id` for product $1; no row when there is no such product.
pub const PRODUCT_SQL: &str = "SELECT product FROM document WHERE product_id = $1";

/// The body of `GET /products/:id/styles` for product $1.
pub const STYLES_SQL: &str = "SELECT styles FROM document WHERE product_id = $1";

/// The body of `GET /products/:id/related` for product $1.
pub const RELATED_SQL: &str = "SELECT related FROM document WHERE product_id = $1";

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
