//! What every request shares: the cache, the store behind it, the metrics, and the
//! settings the server runs with.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use tokio_postgres::config::TargetSessionAttrs;

use super::cache::{CacheSettings, Document, DocumentCache};
use super::metrics::Metrics;
use super::store::{PoolSettings, Store};
use crate::config::{Compression, ServeArgs};
use crate::{Error, Result};

/// Connection handling settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Client connections open at once, at most.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and an idle connection is kept).
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish once shutdown begins.
    pub drain_timeout: Duration,
}

/// The server's shared state, held in an `Arc` by every connection.
pub struct AppState {
    pub(crate) cache: DocumentCache,
    pub(crate) store: Store,
    pub(crate) metrics: Metrics,
    /// Where documents are read (a primary or streaming replicas).
    pub(crate) database: tokio_postgres::Config,
    /// The primary, for the LISTEN connection and its WAL position.
    pub(crate) primary: tokio_postgres::Config,
    /// Whether the LISTEN connection is up.
    pub(crate) listening: AtomicBool,
    /// Whether shutdown has begun (`/readyz` then answers 503).
    pub(crate) draining: AtomicBool,
    pub(crate) cache_control: HeaderValue,
    /// `[]`, the answer for a page past the end of the list.
    pub(crate) empty_page: Document,
    /// Whether documents are offered in gzip form (and answers vary on
    /// `Accept-Encoding`).
    pub(crate) compress: bool,
    pub(crate) limits: Limits,
}

impl AppState {
    /// State for serving the documents of the database at `database_url` with the
    /// settings of `args`. Opens no connection: the database may be down.
    pub fn new(args: &ServeArgs, database_url: &str) -> Result<Arc<AppState>> {
        let mut database: tokio_postgres::Config = database_url.parse().map_err(|error| {
            Error::InvalidInput(format!(
                "invalid database URL {}: {error}",
                crate::db::redact(database_url)
            ))
        })?;
        let pool_wait = Duration::from_millis(args.pool_timeout_ms);
        database
            .application_name("atelier serve")
            .connect_timeout(pool_wait)
            .keepalives_idle(Duration::from_secs(30));
        let primary = match &args.primary_url {
            Some(url) => {
                let mut primary: tokio_postgres::Config = url.parse().map_err(|error| {
                    Error::InvalidInput(format!(
                        "invalid primary URL {}: {error}",
                        crate::db::redact(url)
                    ))
                })?;
                primary
                    .connect_timeout(pool_wait)
                    .keepalives_idle(Duration::from_secs(30));
                primary
            }
            // Of several hosts, the one that accepts writes is the primary.
            None => {
                let mut primary = database.clone();
                primary.target_session_attrs(TargetSessionAttrs::ReadWrite);
                primary
            }
        };
        let store = Store::new(
            database.clone(),
            PoolSettings {
                size: args.pool_size,
                wait: pool_wait,
                read: Duration::from_millis(args.query_timeout_ms),
            },
        );
        let cache = DocumentCache::new(
            store.clone(),
            CacheSettings {
                capacity_bytes: args.cache_bytes,
                ttl: Duration::from_secs(args.cache_ttl),
                not_found_ttl: Duration::from_secs(args.not_found_ttl),
                compress: args.compression == Compression::Gzip,
            },
        );
        let cache_control = HeaderValue::try_from(format!("public, max-age={}", args.max_age))
            .expect("a number makes a valid header value");
        Ok(Arc::new(AppState {
            cache,
            store,
            metrics: Metrics::default(),
            database,
            primary,
            listening: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            cache_control,
            empty_page: Document::new(Bytes::from_static(b"[]"), false),
            compress: args.compression == Compression::Gzip,
            limits: Limits {
                max_connections: args.max_connections,
                header_timeout: Duration::from_millis(args.header_timeout_ms),
                drain_timeout: Duration::from_millis(args.drain_timeout_ms),
            },
        }))
    }
}
