//! What every request shares: the cache, the store behind it, the metrics, and the
//! settings the server runs with.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use tokio_postgres::config::TargetSessionAttrs;

use super::cache::{CacheSettings, Document, DocumentCache};
use super::catch_up::{MissedChanges, Reconnections};
use super::cors::Origins;
use super::headers::DocumentHeaders;
use super::metrics::Metrics;
use super::store::{PoolSettings, Store};
use crate::db::connection::Outage;
use crate::{Error, Result};

/// How a server runs: every setting of `atelier serve` but the address and the
/// database. The defaults are the command line's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Memory the document cache may hold, in bytes (bodies, validators and keys).
    pub cache_bytes: u64,
    /// How long a cached document is kept at most; a backstop behind NOTIFY.
    pub cache_ttl: Duration,
    /// How long an unknown product id is remembered as unknown.
    pub not_found_ttl: Duration,
    /// `Cache-Control: max-age` sent with documents, in seconds: how long a browser may
    /// reuse one without asking. 0 (the default) makes it revalidate every time, which
    /// costs a 304 without a body when nothing changed, and shows a change at the next
    /// load.
    pub max_age: u32,
    /// `Cache-Control: s-maxage` sent with documents, in seconds: how long a shared
    /// cache (nginx's, a CDN's) may serve one without asking; `None` sends none, so they
    /// keep `max_age`. A change reaches browsers within this plus the follower's delay.
    pub shared_max_age: Option<u32>,
    /// Origins whose pages may read the API from a browser (`*`: every origin).
    pub cors_origins: Vec<String>,
    /// Database connections kept open, shared by concurrent reads.
    pub pool_size: u32,
    /// How long a read waits for a pooled connection (or to open one).
    pub pool_timeout: Duration,
    /// How long a database read may take in all, connection wait included.
    pub query_timeout: Duration,
    /// The primary's URL, when the database URL names streaming replicas; by default
    /// the hosts of the database URL that accept writes.
    pub primary_url: Option<String>,
    /// Client connections open at once, at most.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and an idle connection is kept).
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish once shutdown begins.
    pub drain_timeout: Duration,
    /// Whether documents are also sent gzip-compressed to clients that accept it (the
    /// gzip form materialize stored, or made once when a client first asks for a
    /// document stored without one).
    pub compress: bool,
    /// Whether every request is logged (method, path, status, duration, bytes).
    pub access_log: bool,
    /// What a server does about changes announced while its LISTEN connection was down.
    pub missed_changes: MissedChanges,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache_bytes: 256 * 1024 * 1024,
            cache_ttl: Duration::from_secs(300),
            not_found_ttl: Duration::from_secs(5),
            max_age: 0,
            shared_max_age: Some(1),
            cors_origins: vec!["*".to_string()],
            pool_size: 4,
            pool_timeout: Duration::from_millis(1000),
            query_timeout: Duration::from_millis(3000),
            primary_url: None,
            max_connections: 4096,
            header_timeout: Duration::from_millis(10_000),
            drain_timeout: Duration::from_millis(10_000),
            compress: true,
            access_log: false,
            missed_changes: MissedChanges::CatchUp,
        }
    }
}

/// Connection handling settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Client connections open at once, at most.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and an idle connection is kept).
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish once shutdown begins.
    pub drain_timeout: Duration,
    /// Whether every request is logged.
    pub access_log: bool,
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
    /// Whether the LISTEN connection is up, logged once per outage.
    pub(crate) listening: Outage,
    pub(crate) missed_changes: MissedChanges,
    /// How the LISTEN sessions began (caught up or dropped everything).
    pub(crate) reconnections: Reconnections,
    /// Whether shutdown has begun (`/readyz` then answers 503).
    pub(crate) draining: AtomicBool,
    /// The headers of every document answer (its cache policy among them).
    pub(crate) document_headers: DocumentHeaders,
    /// `[]`, the answer for a page past the end of the list.
    pub(crate) empty_page: Document,
    /// Whether documents are offered in gzip form (and answers vary on
    /// `Accept-Encoding`).
    pub(crate) compress: bool,
    /// Which origins' pages may read the API.
    pub(crate) cors: Origins,
    pub(crate) limits: Limits,
}

impl AppState {
    /// State for serving the documents of the database at `database_url` with
    /// `settings`. Opens no connection: the database may be down.
    pub fn new(settings: &Settings, database_url: &str) -> Result<Arc<AppState>> {
        let mut database: tokio_postgres::Config = database_url.parse().map_err(|error| {
            Error::InvalidInput(format!(
                "invalid database URL {}: {error}",
                crate::db::redact(database_url)
            ))
        })?;
        let pool_wait = settings.pool_timeout;
        database
            .application_name("atelier serve")
            .connect_timeout(pool_wait)
            .keepalives_idle(Duration::from_secs(30));
        let primary = match &settings.primary_url {
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
                size: settings.pool_size,
                wait: pool_wait,
                read: settings.query_timeout,
            },
        );
        let cache = DocumentCache::new(
            store.clone(),
            CacheSettings {
                capacity_bytes: settings.cache_bytes,
                ttl: settings.cache_ttl,
                not_found_ttl: settings.not_found_ttl,
            },
        );
        let cache_control = match settings.shared_max_age {
            Some(shared) => format!("public, max-age={}, s-maxage={shared}", settings.max_age),
            None => format!("public, max-age={}", settings.max_age),
        };
        let cache_control =
            HeaderValue::try_from(cache_control).expect("numbers make a valid header value");
        let cors = Origins::from_list(&settings.cors_origins);
        let document_headers =
            DocumentHeaders::new(&cache_control, settings.compress, cors == Origins::Any);
        Ok(Arc::new(AppState {
            cache,
            store,
            metrics: Metrics::default(),
            database,
            primary,
            listening: Outage::not_yet_working(
                "lost the database LISTEN connection; reconnecting",
                "listening for document changes again",
            ),
            missed_changes: settings.missed_changes,
            reconnections: Reconnections::default(),
            draining: AtomicBool::new(false),
            document_headers,
            empty_page: Document::identity(Bytes::from_static(b"[]")),
            compress: settings.compress,
            cors,
            limits: Limits {
                max_connections: settings.max_connections,
                header_timeout: settings.header_timeout,
                drain_timeout: settings.drain_timeout,
                access_log: settings.access_log,
            },
        }))
    }
}
