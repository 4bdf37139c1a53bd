//! The products HTTP service: `atelier serve`.
//!
//! A request flows [`server`] (connections) → [`router`] (method and path) →
//! [`handlers`] → [`cache`] (documents in memory) → [`store`] (the `document` table),
//! and the stored JSON bytes go back out untouched. [`notify`] keeps the cache in step
//! with materialize; [`error`] is the one mapping of failures to answers; [`metrics`]
//! counts.

pub mod cache;
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
/// embedded one), binds the address and serves until SIGTERM or SIGINT. On the embedded
/// database it also follows catalog changes itself, as `materialize --follow` does.
pub async fn run(args: ServeArgs) -> Result<()> {
    let (url, owner_url) = crate::demo::database_urls(&args.db).await?;
    let _follower = owner_url.map(|owner_url| {
        let settings = crate::materialize::Settings {
            campus: args.campus.clone(),
            ..crate::materialize::Settings::default()
        };
        tracing::info!("following catalog changes of the embedded database");
        AbortOnDrop(tokio::spawn(async move {
            crate::materialize::follow::follow(&owner_url, &settings, std::future::pending()).await;
        }))
    });
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

/// A task aborted when this handle goes: the follower ends with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
