//! The demo catalog: on a fresh machine, `atelier serve` without `DATABASE_URL` fills
//! the embedded cluster with a generated catalog first, so it serves real data at once.

use std::path::PathBuf;

use crate::config::{DatabaseArgs, GenerateArgs, Variant};
use crate::materialize::Scope;
use crate::{Result, db, generate, load, materialize};

/// Products in the demo catalog.
const DEMO_PRODUCTS: u32 = 10_000;
/// Seed of the demo catalog, so every machine serves the same one.
const DEMO_SEED: u64 = 1;

/// The URL to serve from: `DATABASE_URL` as given (not touched, so the server starts
/// while that database is down), or the embedded cluster, started, with a demo
/// catalog generated, loaded and materialized into it if it has none yet.
pub async fn database_url(args: &DatabaseArgs) -> Result<String> {
    if let Some(url) = &args.database_url {
        return Ok(url.clone());
    }
    let url = db::resolve_url(args).await?;
    let mut client = db::connect(&url).await?;
    db::apply_schema(&client).await?;
    const MATERIALIZED_SQL: &str =
        "SELECT EXISTS (SELECT 1 FROM catalog_run WHERE kind = 'materialize')";
    let materialized: bool = client.query_one(MATERIALIZED_SQL, &[]).await?.get(0);
    if materialized {
        return Ok(url);
    }
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
    let rejects: PathBuf = dir.join("rejects.csv");
    load::load_catalog(&mut client, &dir, &rejects, true).await?;
    tracing::info!("materializing the demo catalog's documents");
    let report =
        materialize::materialize(&mut client, Scope::All, materialize::DEFAULT_CAMPUS).await?;
    tracing::info!(documents = report.documents, "demo catalog ready");
    Ok(url)
}
