//! The products HTTP service: `atelier serve`.
//!
//! A request flows [`server`] (connections) → [`router`] (method and path) →
//! [`handlers`] → [`cache`] (documents in memory; `single_flight` shares one read
//! among the misses on a document) → [`store`] (the `document` table),
//! and the stored JSON bytes go back out untouched, or their gzip form as materialize
//! stored it ([`encoding`] picks which).
//! [`composite`] joins several cached documents into one answer (a product page,
//! several products); [`cors`] lets other origins' pages read the API;
//! [`endpoint`] names what a request was routed to; [`notify`] keeps the cache in step
//! with materialize, [`catch_up`] over LISTEN outages; [`error`] is the one mapping of failures to answers; [`head`]
//! refuses oversized and unparseable request heads with those answers; [`metrics`]
//! counts; [`access_log`] logs each request when asked to.

pub mod access_log;
mod batch;
pub mod cache;
pub mod catch_up;
pub mod composite;
pub mod cors;
pub mod encoding;
pub mod endpoint;
pub mod error;
pub mod fields;
mod front;
pub mod handlers;
pub mod head;
pub mod headers;
pub mod metrics;
pub mod notify;
pub mod router;
pub mod server;
mod single_flight;
pub mod state;
pub mod store;

pub use server::serve;
pub use state::{AppState, Settings};

use std::net::SocketAddr;

use crate::db::Database;
use crate::{Error, Result};

/// `atelier serve`: finds the database (preparing the demo catalog on first use of the
/// embedded one), binds the address and serves until SIGTERM or SIGINT. On the embedded
/// database it also follows catalog changes itself, as `materialize --follow` does,
/// building documents with `materialize`.
pub async fn run(
    listen: SocketAddr,
    database: &Database,
    settings: &Settings,
    materialize: &crate::materialize::Settings,
) -> Result<()> {
    let prepared = crate::demo::prepare_database(database).await?;
    let url = prepared.read_url;
    let _follower = prepared.owner_url.map(|owner_url| {
        let materialize = materialize.clone();
        tracing::info!("following catalog changes of the embedded database");
        AbortOnDrop(tokio::spawn(async move {
            crate::materialize::follow::follow(&owner_url, &materialize, std::future::pending())
                .await;
        }))
    });
    let state = AppState::new(settings, &url)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("listen on {listen}"),
            source,
        })?;
    let shutdown = crate::shutdown::signal()?;
    // The bound address, which differs from the flag's when that asks for port 0.
    let address = listener.local_addr().unwrap_or(listen);
    tracing::info!(
        %address,
        database = %crate::db::redact(&url),
        "serving the products API"
    );
    serve(listener, state, shutdown).await?;
    if let Database::Embedded(data_dir) = database {
        // The cluster outlives the server: whoever stops the one should learn of the other.
        let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.clone());
        tracing::info!(
            "the embedded PostgreSQL cluster is still running; \
             `atelier db stop --data-dir {}` stops it",
            data_dir.display()
        );
    }
    Ok(())
}

/// A task aborted when this handle goes: the follower ends with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
