//! The demo catalog: on a fresh machine, `atelier serve` without `DATABASE_URL` fills
//! the embedded cluster with a generated catalog first, so it serves real data at once.

use std::path::Path;

use tokio_postgres::Client;

use crate::catalog::Variant;
use crate::db::Database;
use crate::materialize::{self, Plan};
use crate::{Result, db, documents, generate, load};

/// Products in the demo catalog.
const DEMO_PRODUCTS: u32 = 10_000;
/// Seed of the demo catalog, so every machine serves the same one.
const DEMO_SEED: u64 = 1;
/// Serialises servers that start at once on a fresh cluster (an arbitrary, fixed key).
const DEMO_LOCK_KEY: i64 = 0x6465_6d6f;

/// Whether the database holds any catalog rows.
const LOADED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM product)";

/// Makes the database ready to serve and says where to read and, on the embedded
/// cluster, where to follow catalog changes from. `DATABASE_URL` is used as given (not
/// touched, so the server starts while that database is down; the operator picks the
/// role and runs `materialize --follow`). The embedded cluster is started and given a
/// catalog to serve if it has none: a loaded but never materialized catalog is
/// materialized; an empty database gets the demo catalog, generated, loaded and
/// materialized. It is then read as the read-only [`db::READER_ROLE`], so the server
/// cannot change what it serves, and followed as the tables' owner.
pub async fn prepare_database(database: &Database) -> Result<ServeTarget> {
    let data_dir = match database {
        Database::Url(url) => {
            return Ok(ServeTarget {
                read_url: url.clone(),
                owner_url: None,
            });
        }
        Database::Embedded(data_dir) => data_dir,
    };
    let url = db::resolve_url(database).await?;
    let mut client = db::connect(&url).await?;
    db::apply_schema(&client).await?;
    // The lock is the session's: it goes with the connection, whatever happens below.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&DEMO_LOCK_KEY])
        .await?;
    provide_catalog(&mut client, &url, data_dir).await?;
    Ok(ServeTarget {
        read_url: db::with_user(&url, db::READER_ROLE)?,
        owner_url: Some(url),
    })
}

/// Where a server reads, and where it follows changes when it should do so itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeTarget {
    /// The URL the server reads documents from.
    pub read_url: String,
    /// On the embedded cluster, the tables' owner, for the server to follow catalog
    /// changes itself (`materialize::follow`).
    pub owner_url: Option<String>,
}

async fn provide_catalog(client: &mut Client, url: &str, data_dir: &Path) -> Result<()> {
    let materialized: bool = client.query_one(documents::READY_SQL, &[]).await?.get(0);
    if materialized {
        return Ok(());
    }
    let loaded: bool = client.query_one(LOADED_SQL, &[]).await?.get(0);
    if !loaded {
        let dir = data_dir.join("demo-catalog");
        tracing::info!(
            "the embedded database holds no catalog yet: generating a demo catalog of \
             {DEMO_PRODUCTS} products in {}",
            dir.display()
        );
        let spec = generate::Spec {
            products: DEMO_PRODUCTS,
            seed: DEMO_SEED,
            out: dir.clone(),
            clean: false,
            variant: Variant::Compact,
        };
        tokio::task::spawn_blocking(move || generate::generate(&spec, true))
            .await
            .expect("catalog generation panicked")?;
        tracing::info!("loading the demo catalog");
        load::load_catalog(client, &dir, &dir.join(load::REJECTS_FILE), true).await?;
    } else {
        tracing::info!("the embedded database holds a loaded catalog that was never materialized");
    }
    tracing::info!("materializing the catalog's documents");
    let report =
        materialize::materialize(url, Plan::Everything, &materialize::Settings::default()).await?;
    tracing::info!(documents = report.documents, "catalog ready");
    Ok(())
}
