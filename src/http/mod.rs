//! The products HTTP service: `atelier serve`.
//!
//! A request flows [`server`] (connections) → [`router`] (method and path) →
//! [`handlers`] → [`cache`] (documents in memory) → [`store`] (the `document` table),
//! and the stored JSON bytes go back out untouched, or in the gzip form [`encoding`]
//! made of them once, as the document entered the cache. [`notify`] keeps the cache in step
//! with materialize; [`error`] is the one mapping of failures to answers; [`metrics`]
//! counts.

pub mod cache;
pub mod encoding;
pub mod error;
pub mod handlers;
pub mod headers;
pub mod metrics;
pub mod notify;
pub mod router;
pub mod server;
pub mod state;
pub mod store;

pub use server::serve;
pub use state::AppState;

use crate::config::ServeArgs;
use crate::{Error, Result};

/// `atelier serve`: finds the database (preparing the demo catalog on first use of the
/// embedded one), binds the address and serves until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> Result<()> {
    let url = crate::demo::database_url(&args.db).await?;
    let state = AppState::new(&args, &url)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("listen on {}", args.listen),
            source,
        })?;
    tracing::info!(
        address = %args.listen,
        database = %crate::db::redact(&url),
        "serving the products API"
    );
    serve(listener, state, shutdown_signal()).await
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
