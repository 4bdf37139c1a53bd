//! The demo catalog: on a fresh machine, `atelier serve` without `DATABASE_URL` fills
//! the embedded cluster with a generated catalog first, so it serves real data at once.

use tokio_postgres::Client;

use crate::config::{DatabaseArgs, GenerateArgs, Variant};
use crate::materialize::{self, Scope};
use crate::{Result, db, generate, load};

/// Products in the demo catalog.
const DEMO_PRODUCTS: u32 = 10_000;
/// Seed of the demo catalog, so every machine serves the same one.
const DEMO_SEED: u64 = 1;
/// Serialises servers that start at once on a fresh cluster (an arbitrary, fixed key).
const DEMO_LOCK_KEY: i64 = 0x6465_6d6f;

/// Whether the database holds any catalog rows.
const LOADED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM product)";

/// The URL to serve from: `DATABASE_URL` as given (not touched, so the server starts
/// while that database is down; the operator picks the role), or the embedded cluster,
/// started and given a catalog to serve if it has none: a loaded but never materialized
/// catalog is materialized; an empty database gets the demo catalog, generated, loaded
/// and materialized. The embedded cluster is then served as the read-only
/// [`db::READER_ROLE`], so the server cannot change what it serves.
pub async fn database_url(args: &DatabaseArgs) -> Result<String> {
    Ok(database_urls(args).await?.0)
}

/// [`database_url`], and with it, on the embedded cluster, the URL of the tables' owner,
/// for the server to follow catalog changes itself (`materialize::follow`).
pub async fn database_urls(args: &DatabaseArgs) -> Result<(String, Option<String>)> {
    if let Some(url) = &args.database_url {
        return Ok((url.clone(), None));
    }
    let url = db::resolve_url(args).await?;
    let mut client = db::connect(&url).await?;
    db::apply_schema(&client).await?;
    // The lock is the session's: it goes with the connection, whatever happens below.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&DEMO_LOCK_KEY])
        .await?;
    provide_catalog(&mut client, &url, args).await?;
    Ok((db::with_user(&url, db::READER_ROLE)?, Some(url)))
}

async fn provide_catalog(client: &mut Client, url: &str, args: &DatabaseArgs) -> Result<()> {
    let materialized: bool = client
        .query_one(materialize::MATERIALIZED_SQL, &[])
        .await?
        .get(0);
    if materialized {
        return Ok(());
    }
    let loaded: bool = client.query_one(LOADED_SQL, &[]).await?.get(0);
    if !loaded {
        let dir = args.data_dir.join("demo-catalog");
        tracing::info!(
            "the embedded database holds no catalog yet: generating a demo catalog of \
             {DEMO_PRODUCTS} products in {}",
            dir.display()
        );
        let generate_args = GenerateArgs {
            products: DEMO_PRODUCTS,
            seed: DEMO_SEED,
            out: dir.clone(),
            clean: false,
            variant: Variant::Compact,
        };
        tokio::task::spawn_blocking(move || generate::generate(&generate_args, true))
            .await
            .expect("catalog generation panicked")?;
        tracing::info!("loading the demo catalog");
        load::load_catalog(client, &dir, &dir.join("rejects.csv"), true).await?;
    } else {
        tracing::info!("the embedded database holds a loaded catalog that was never materialized");
    }
    tracing::info!("materializing the catalog's documents");
    let report =
        materialize::materialize(url, Scope::All, &materialize::Settings::default()).await?;
    tracing::info!(documents = report.documents, "catalog ready");
    Ok(())
}
