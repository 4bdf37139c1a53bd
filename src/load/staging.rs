//! The staging schema where a load builds the new catalog tables, and the single
//! transaction that swaps them in for the live ones. The live tables, created by
//! `schema.sql`, stay the one source of truth for the tables' shape: staging tables are
//! created `LIKE` them and their keys, foreign keys and indexes are copied from them
//! through `pg_get_constraintdef` and `pg_get_indexdef`.

use std::pin::pin;

use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::Client;

use super::ids::{IdMap, IdSet};
use crate::Result;
use crate::catalog::{FileKind, LockMode, lock_catalog_sql};

/// The schema a load builds its tables in; it exists only while a load runs.
pub const SCHEMA: &str = "atelier_load";

/// Serialises loads of one database (an arbitrary, fixed advisory-lock key).
const LOAD_LOCK_KEY: i64 = 0x6174_656c_6c6f_6164;

/// Size of the COPY data chunks sent to a connection.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The staging table product.csv is copied into; the product table proper is built from
/// it once every product's fingerprint is known.
const PRODUCT_ROWS: &str = "product_rows";

/// Waits until no other load of this database runs, then holds it off until [`unlock`].
pub async fn lock(client: &Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOAD_LOCK_KEY])
        .await?;
    Ok(())
}

/// Lets the next load of this database run, and puts back the settings of [`tune`].
pub async fn unlock(client: &Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOAD_LOCK_KEY])
        .await?;
    untune(client).await
}

/// Drops what an earlier load may have left and creates the staging schema afresh.
pub async fn reset(client: &Client) -> Result<()> {
    const RESET_SQL: &str =
        "DROP SCHEMA IF EXISTS atelier_load CASCADE; CREATE SCHEMA atelier_load;";
    client.batch_execute(RESET_SQL).await?;
    Ok(())
}

/// Session settings for the statements of a load: big sorts and hashes stay in memory.
pub async fn tune(client: &Client) -> Result<()> {
    client
        .batch_execute("SET work_mem = '512MB'; SET maintenance_work_mem = '1GB'")
        .await?;
    Ok(())
}

/// Puts back the settings of [`tune`].
pub async fn untune(client: &Client) -> Result<()> {
    client
        .batch_execute("RESET work_mem; RESET maintenance_work_mem")
        .await?;
    Ok(())
}

/// Gives the staging tables planner statistics, which move with them into `public`.
pub async fn analyze(client: &Client) -> Result<()> {
    let tables: Vec<String> = FileKind::ALL
        .iter()
        .map(|kind| format!("{SCHEMA}.{}", kind.table()))
        .collect();
    client
        .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
        .await?;
    Ok(())
}

/// Drops the staging schema and everything in it.
pub async fn drop_schema(client: &Client) -> Result<()> {
    client
        .batch_execute("DROP SCHEMA IF EXISTS atelier_load CASCADE")
        .await?;
    Ok(())
}

/// The statements that create the staging table of `kind` (inside the transaction that
/// copies into it, so that COPY can skip the WAL) and copy into it.
pub fn copy_statements(kind: FileKind) -> (String, String) {
    let live = kind.table();
    let staging = match kind {
        FileKind::Product => PRODUCT_ROWS,
        _ => live,
    };
    (
        format!(
            "CREATE TABLE {SCHEMA}.{staging} \
             (LIKE public.{live} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ),
        format!(
            "COPY {SCHEMA}.{staging} ({}) FROM STDIN (FORMAT binary, FREEZE)",
            kind.columns()
        ),
    )
}

/// What a definition adds to a staging table; ready statements run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A primary key or unique constraint (and its index).
    Key,
    /// An index of no constraint.
    Index,
    /// A foreign key, which needs the referenced table's key.
    ForeignKey,
}

/// One definition copied from a live table, as a statement for its staging table.
#[derive(Debug)]
pub struct Definition {
    /// The table it applies to, by its file.
    pub table: FileKind,
    /// What it adds.
    pub step: Step,
    /// The catalog table a foreign key references.
    pub references: Option<FileKind>,
    /// The SQL statement, naming the staging tables.
    pub statement: String,
}

/// Reads the definitions from the live tables.
pub async fn definitions(client: &mut Client) -> Result<Vec<Definition>> {
    // With an empty search_path the definitions name every table with its schema.
    const CONSTRAINTS_SQL: &str = "SELECT c.conname::text, c.contype::text, \
         pg_catalog.pg_get_constraintdef(c.oid), \
         CASE WHEN c.contype = 'f' THEN c.confrelid::pg_catalog.regclass::text END \
         FROM pg_catalog.pg_constraint c \
         WHERE c.conrelid = $1::text::pg_catalog.regclass AND c.contype IN ('p', 'u', 'x', 'f') \
         ORDER BY c.conname";
    const INDEXES_SQL: &str = "SELECT pg_catalog.pg_get_indexdef(i.indexrelid) \
         FROM pg_catalog.pg_index i \
         WHERE i.indrelid = $1::text::pg_catalog.regclass AND NOT EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_constraint c \
             WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
         ORDER BY 1";
    let transaction = client.transaction().await?;
    transaction
        .batch_execute("SET LOCAL search_path = ''")
        .await?;
    let mut definitions = Vec::new();
    for table_kind in FileKind::ALL {
        let table = table_kind.table();
        let live = format!("public.{table}");
        for row in transaction.query(CONSTRAINTS_SQL, &[&live]).await? {
            let (name, contype, definition): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let references: Option<String> = row.get(3);
            let definition = retarget(&definition, "REFERENCES public.", "REFERENCES");
            definitions.push(Definition {
                table: table_kind,
                step: if contype == "f" {
                    Step::ForeignKey
                } else {
                    Step::Key
                },
                references: references.as_deref().and_then(FileKind::of_live_table),
                statement: format!(
                    "ALTER TABLE {SCHEMA}.{table} ADD CONSTRAINT {} {definition}",
                    quote_ident(&name)
                ),
            });
        }
        for row in transaction.query(INDEXES_SQL, &[&live]).await? {
            let definition: String = row.get(0);
            definitions.push(Definition {
                table: table_kind,
                step: Step::Index,
                references: None,
                statement: retarget(&definition, " ON public.", " ON"),
            });
        }
    }
    transaction.commit().await?;
    Ok(definitions)
}

/// Points `prefix` + a catalog table at the staging schema's table of that name.
fn retarget(definition: &str, prefix: &str, replacement: &str) -> String {
    FileKind::ALL
        .iter()
        .map(|kind| kind.table())
        .find_map(|table| {
            let from = format!("{prefix}{table}");
            let at = definition.find(&from)?;
            let next = definition[at + from.len()..].chars().next();
            // `public.style` must not match `public.style_other`.
            let whole = next.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            whole.then(|| {
                format!(
                    "{}{replacement} {SCHEMA}.{table}{}",
                    &definition[..at],
                    &definition[at + from.len()..]
                )
            })
        })
        .unwrap_or_else(|| definition.to_string())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How the new product rows compare with the live ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProductChanges {
    /// Products that were not in the catalog.
    pub created: u64,
    /// Products whose row or rows belonging to them changed.
    pub changed: u64,
    /// Products exactly as they were.
    pub unchanged: u64,
    /// Products of the catalog that the new files no longer hold.
    pub removed: u64,
}

/// Builds the staging product table from the copied product rows and each product's
/// fingerprint: `created_at` is kept for products already in the catalog, `updated_at`
/// is kept where the fingerprint is unchanged and no other writer changed the product
/// since the last load (`product_edited`), and both are the load's time otherwise. The
/// products added, changed or removed are noted in `atelier_load.product_change`, for
/// the swap to queue their documents.
pub async fn build_products(
    client: &mut Client,
    products: &IdSet,
    fingerprints: &IdMap<u64>,
) -> Result<ProductChanges> {
    const FINGERPRINT_TABLE_SQL: &str = "CREATE TABLE atelier_load.product_fingerprint \
         (id integer NOT NULL, fingerprint bigint NOT NULL)";
    const FINGERPRINT_COPY_SQL: &str =
        "COPY atelier_load.product_fingerprint (id, fingerprint) FROM STDIN";
    const BUILD_SQL: &str = "\
        CREATE TABLE atelier_load.product \
            (LIKE public.product INCLUDING DEFAULTS INCLUDING CONSTRAINTS); \
        INSERT INTO atelier_load.product (id, name, slogan, description, category, \
            default_price, created_at, updated_at, fingerprint) \
        SELECT n.id, n.name, n.slogan, n.description, n.category, n.default_price, \
            coalesce(o.created_at, now()), \
            CASE WHEN o.fingerprint = f.fingerprint AND NOT EXISTS ( \
                     SELECT 1 FROM public.product_edited e WHERE e.product_id IN (n.id, 0)) \
                 THEN o.updated_at ELSE now() END, \
            f.fingerprint \
        FROM atelier_load.product_rows n \
        JOIN atelier_load.product_fingerprint f ON f.id = n.id \
        LEFT JOIN public.product o ON o.id = n.id; \
        DROP TABLE atelier_load.product_rows, atelier_load.product_fingerprint; \
        CREATE TABLE atelier_load.product_change AS \
            SELECT id FROM atelier_load.product WHERE updated_at = now() \
            UNION ALL \
            SELECT o.id FROM public.product o \
            WHERE NOT EXISTS (SELECT 1 FROM atelier_load.product n WHERE n.id = o.id);";
    const CHANGES_SQL: &str = "SELECT \
            count(*) FILTER (WHERE created_at = now()), \
            count(*) FILTER (WHERE updated_at = now() AND created_at <> now()), \
            count(*), \
            (SELECT count(*) FROM public.product) \
        FROM atelier_load.product";

    let transaction = client.transaction().await?;
    transaction.batch_execute(FINGERPRINT_TABLE_SQL).await?;
    let mut sink = pin!(transaction.copy_in(FINGERPRINT_COPY_SQL).await?);
    let mut chunk = BytesMut::new();
    for id in products.iter() {
        let fingerprint = fingerprints.get(id) as i64;
        chunk.put_slice(itoa::Buffer::new().format(id).as_bytes());
        chunk.put_u8(b'\t');
        chunk.put_slice(itoa::Buffer::new().format(fingerprint).as_bytes());
        chunk.put_u8(b'\n');
        if chunk.len() >= CHUNK_BYTES {
            sink.send(chunk.split().freeze()).await?;
        }
    }
    sink.send(chunk.freeze()).await?;
    sink.as_mut().finish().await?;
    transaction.batch_execute(BUILD_SQL).await?;
    let row = transaction.query_one(CHANGES_SQL, &[]).await?;
    transaction.commit().await?;
    let (created, changed, total, before): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let kept = total - created;
    Ok(ProductChanges {
        created: created as u64,
        changed: changed as u64,
        unchanged: (kept - changed) as u64,
        removed: (before - kept) as u64,
    })
}

/// Runs one definition statement on the staging tables.
pub async fn run(client: &Client, statement: &str) -> Result<()> {
    let started = std::time::Instant::now();
    client.batch_execute(statement).await?;
    tracing::debug!(%statement, seconds = started.elapsed().as_secs_f64(), "staging");
    Ok(())
}

/// In one transaction: queues the documents of the products added, changed or removed,
/// drops the live catalog tables, moves the staging tables in, re-applies `schema.sql`
/// (it creates the change-capture triggers on the new tables and grants whatever it
/// grants on them), forgets which products other writers had changed (the new tables
/// hold exactly the files) and records the load in `catalog_run`. Then drops the
/// staging schema.
pub async fn swap(client: &mut Client, summary: &serde_json::Value) -> Result<()> {
    const QUEUE_SQL: &str = "INSERT INTO public.document_queue (product_id) \
         SELECT id FROM atelier_load.product_change; \
         DELETE FROM public.product_edited;";
    const DROP_LIVE_SQL: &str = "DROP TABLE public.related, public.sku, public.photo, public.feature, public.style, public.product";
    const RECORD_SQL: &str =
        "INSERT INTO public.catalog_run (kind, summary) VALUES ('load', $1::text::jsonb)";
    let transaction = client.transaction().await?;
    // schema.sql's "already exists, skipping" notices say nothing here.
    transaction
        .batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    transaction
        .batch_execute(&lock_catalog_sql(LockMode::AccessExclusive))
        .await?;
    transaction.batch_execute(QUEUE_SQL).await?;
    transaction.batch_execute(DROP_LIVE_SQL).await?;
    for kind in FileKind::ALL {
        transaction
            .batch_execute(&format!(
                "ALTER TABLE {SCHEMA}.{} SET SCHEMA public",
                kind.table()
            ))
            .await?;
    }
    transaction.batch_execute(crate::db::SCHEMA_SQL).await?;
    transaction
        .execute(RECORD_SQL, &[&summary.to_string()])
        .await?;
    transaction.commit().await?;
    drop_schema(client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_pointed_at_the_staging_tables() {
        assert_eq!(
            retarget(
                "FOREIGN KEY (product_id) REFERENCES public.product(id)",
                "REFERENCES public.",
                "REFERENCES"
            ),
            "FOREIGN KEY (product_id) REFERENCES atelier_load.product(id)"
        );
        assert_eq!(
            retarget(
                "CREATE INDEX style_product_id_idx ON public.style USING btree (product_id)",
                " ON public.",
                " ON"
            ),
            "CREATE INDEX style_product_id_idx ON atelier_load.style USING btree (product_id)"
        );
        assert_eq!(
            retarget(
                "CREATE INDEX x ON public.styles USING btree (a)",
                " ON public.",
                " ON"
            ),
            "CREATE INDEX x ON public.styles USING btree (a)"
        );
    }

    #[test]
    fn copy_statements_name_staging_tables() {
        let (create, copy) = copy_statements(FileKind::Product);
        assert_eq!(
            create,
            "CREATE TABLE atelier_load.product_rows (LIKE public.product INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        );
        assert!(copy.starts_with("COPY atelier_load.product_rows (id, name,"));
    }
}
