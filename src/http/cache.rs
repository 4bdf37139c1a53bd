//! The document cache in front of the store: bounded in bytes, one database read per
//! key however many requests miss at once, unknown ids remembered briefly, a TTL
//! backstop, and invalidation driven by materialize's notifications.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;
use moka::Expiry;
use moka::future::Cache;

use super::store::{Key, Store, StoreError};
use crate::materialize::Scope;

/// A response body ready to send, with its strong validator.
#[derive(Debug, Clone)]
pub struct Document {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Document {
    /// `body` with its ETag: the xxh3 hash of the bytes, computed once here.
    pub fn new(body: Bytes) -> Document {
        let hash = xxhash_rust::xxh3::xxh3_64(&body);
        let etag = HeaderValue::try_from(format!("\"{hash:016x}\""))
            .expect("a quoted hex string is a valid header value");
        Document { body, etag }
    }
}

/// What the cache holds per key: the document, or `None` for "there is none".
type Cached = Option<Document>;

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Bytes of bodies, validators and bookkeeping held at most.
    pub capacity_bytes: u64,
    /// Lifetime of a document.
    pub ttl: Duration,
    /// Lifetime of an absence (an unknown id, a page past the end).
    pub not_found_ttl: Duration,
}

/// Documents by key, loaded from the store on a miss.
pub struct DocumentCache {
    cache: Cache<Key, Cached>,
    store: Store,
    /// Bumped before every invalidation, so a load that raced one can tell.
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Rough bytes of a cache entry beyond its body and validator (key, value, moka's
/// bookkeeping), so that many tiny entries still count against the bound.
const ENTRY_OVERHEAD: usize = 160;

impl DocumentCache {
    /// An empty cache in front of `store`.
    pub fn new(store: Store, settings: CacheSettings) -> DocumentCache {
        let cache = Cache::builder()
            .max_capacity(settings.capacity_bytes)
            .weigher(|_key: &Key, value: &Cached| {
                let size = value
                    .as_ref()
                    .map_or(0, |doc| doc.body.len() + doc.etag.len());
                u32::try_from(size + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(Lifetimes(settings))
            .support_invalidation_closures()
            .build();
        DocumentCache {
            cache,
            store,
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The document under `key`, read from the store if it is not cached. Concurrent
    /// misses on one key share a single read and its outcome; failures are not cached.
    pub async fn get(&self, key: Key) -> Result<Cached, std::sync::Arc<StoreError>> {
        // A plain read first: hits, the common case, skip the entry API's bookkeeping.
        if let Some(value) = self.cache.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(self.load(key))
            .await?;
        if !entry.is_fresh() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else if self.epoch.load(Ordering::SeqCst) != epoch {
            // An invalidation ran while this value was read: it may predate the change
            // and may have been inserted after the invalidation passed, so drop it.
            // This request still gets it, as any request racing a change may.
            self.cache.invalidate(&key).await;
        }
        Ok(entry.into_value())
    }

    async fn load(&self, key: Key) -> Result<Cached, StoreError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        Ok(self.store.read(key).await?.map(Document::new))
    }

    /// Drops what a materialize of `scope` changed: a product's three documents and
    /// every list page (pages hold entries of many products), or everything.
    pub async fn invalidate(&self, scope: &Scope) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match scope {
            Scope::All => self.cache.invalidate_all(),
            Scope::Products(ids) => {
                self.cache
                    .invalidate_entries_if(|key, _| matches!(key, Key::Page { .. }))
                    .expect("the cache is built with invalidation closures");
                for &id in ids {
                    self.cache.invalidate(&Key::Product(id)).await;
                    self.cache.invalidate(&Key::Styles(id)).await;
                    self.cache.invalidate(&Key::Related(id)).await;
                }
            }
        }
    }

    /// Lookups answered from memory, and lookups that read the store.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Entries held and their weight in bytes, after pending maintenance has run.
    pub async fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

/// Documents live `ttl`, absences `not_found_ttl`, counted from when they were read.
struct Lifetimes(CacheSettings);

impl Expiry<Key, Cached> for Lifetimes {
    fn expire_after_create(&self, _: &Key, value: &Cached, _: Instant) -> Option<Duration> {
        Some(match value {
            Some(_) => self.0.ttl,
            None => self.0.not_found_ttl,
        })
    }
}
