//! The document cache in front of the store: bounded in bytes, one database read per
//! key however many requests miss at once, unknown ids remembered briefly, a TTL
//! backstop, and invalidation driven by materialize's notifications.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use moka::future::Cache;

use super::encoding::{self, Coding};
use super::store::{Key, Store, StoreError};
use crate::materialize::Scope;

/// A document ready to send: its stored bytes and, when it pays, their gzip form, each
/// with its own strong validator. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Document(Arc<Representations>);

#[derive(Debug)]
struct Representations {
    identity: Representation,
    gzip: Option<Representation>,
}

/// One form of a document's bytes and its ETag.
#[derive(Debug, Clone)]
pub struct Representation {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Representation {
    /// `body` with its ETag: the xxh3 hash of the bytes, computed once here, with
    /// `suffix` after it.
    fn new(body: Bytes, suffix: &str) -> Representation {
        let hash = xxhash_rust::xxh3::xxh3_64(&body);
        let etag = HeaderValue::try_from(format!("\"{hash:016x}{suffix}\""))
            .expect("a quoted hex string is a valid header value");
        Representation { body, etag }
    }

    fn weight(&self) -> usize {
        self.body.len() + self.etag.len()
    }
}

impl Document {
    /// The stored `body`, with its gzip form too when `compress` is set and gzip gains.
    pub fn new(body: Bytes, compress: bool) -> Document {
        let gzip = match compress {
            true => encoding::gzip(&body).map(|gzip| Representation::new(gzip, "-gzip")),
            false => None,
        };
        Document(Arc::new(Representations {
            identity: Representation::new(body, ""),
            gzip,
        }))
    }

    /// The stored bytes.
    pub fn identity(&self) -> &Representation {
        &self.0.identity
    }

    /// The gzip form, if the document is kept in one.
    pub fn gzip(&self) -> Option<&Representation> {
        self.0.gzip.as_ref()
    }

    /// The representation in `coding`, if the document has it.
    pub fn representation(&self, coding: Coding) -> Option<&Representation> {
        match coding {
            Coding::Identity => Some(self.identity()),
            Coding::Gzip => self.gzip(),
        }
    }

    /// Bytes held for this document: every representation and its validator, and the
    /// shared allocation that holds them.
    pub fn weight(&self) -> usize {
        const SHARED: usize = size_of::<Representations>() + 2 * size_of::<usize>();
        SHARED + self.0.identity.weight() + self.0.gzip.as_ref().map_or(0, Representation::weight)
    }
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Bytes of bodies, validators and bookkeeping held at most.
    pub capacity_bytes: u64,
    /// Lifetime of a document.
    pub ttl: Duration,
    /// Lifetime of an absence (an unknown id, a page past the end).
    pub not_found_ttl: Duration,
    /// Whether documents are also kept in gzip form.
    pub compress: bool,
}

/// The hash of cache keys: keys are small values of our own making, so a fast hash
/// serves better than the default SipHash.
type KeyHasher = foldhash::fast::RandomState;

/// Documents by key, loaded from the store on a miss.
pub struct DocumentCache {
    documents: Cache<Key, Document, KeyHasher>,
    /// Keys the store holds nothing under. They live much shorter than documents, and
    /// one lifetime per cache keeps moka's read path cheap.
    absent: Cache<Key, (), KeyHasher>,
    store: Store,
    compress: bool,
    /// Bumped before every invalidation, so a load that raced one can tell.
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Rough bytes of a cache entry beyond its bodies and validators (key, value, moka's
/// bookkeeping), so that many tiny entries still count against the bound.
const ENTRY_OVERHEAD: u64 = 160;

/// The share of the byte budget that remembered absences may take: 1/16.
const ABSENT_SHARE: u64 = 16;

/// Why a load put nothing in the document cache.
#[derive(Debug)]
enum Miss {
    /// The store holds nothing under the key.
    Absent,
    /// The store could not answer.
    Failed(Arc<StoreError>),
}

impl DocumentCache {
    /// An empty cache in front of `store`.
    pub fn new(store: Store, settings: CacheSettings) -> DocumentCache {
        let absent_bytes = settings.capacity_bytes / ABSENT_SHARE;
        let documents = Cache::builder()
            .max_capacity(settings.capacity_bytes - absent_bytes)
            .weigher(|_key: &Key, document: &Document| {
                u32::try_from(document.weight() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_live(settings.ttl)
            .support_invalidation_closures()
            .build_with_hasher(KeyHasher::default());
        let absent = Cache::builder()
            .max_capacity((absent_bytes / ENTRY_OVERHEAD).max(1))
            .time_to_live(settings.not_found_ttl)
            .build_with_hasher(KeyHasher::default());
        DocumentCache {
            documents,
            absent,
            store,
            compress: settings.compress,
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The document under `key` (`None`: there is none), read from the store if it is
    /// not cached. Concurrent misses on one key share a single read and its outcome;
    /// failures are not cached.
    pub async fn get(&self, key: Key) -> Result<Option<Document>, Arc<StoreError>> {
        if let Some(document) = self.documents.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(document));
        }
        // Boxed, so that every request's future stays small and only misses carry the
        // load's much larger state.
        Box::pin(self.get_uncached(key)).await
    }

    async fn get_uncached(&self, key: Key) -> Result<Option<Document>, Arc<StoreError>> {
        if self.absent.contains_key(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let loaded = self
            .documents
            .entry(key)
            .or_try_insert_with(self.load(key))
            .await;
        // An invalidation that ran while the store was read may have passed before the
        // outcome was cached: the outcome may predate the change, so it is not kept.
        // This request still gets it, as any request racing a change may.
        let raced = self.epoch.load(Ordering::SeqCst) != epoch;
        match loaded {
            Ok(entry) => {
                if !entry.is_fresh() {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                } else if raced {
                    self.documents.invalidate(&key).await;
                }
                Ok(Some(entry.into_value()))
            }
            Err(miss) => match &*miss {
                Miss::Absent => {
                    if !raced {
                        self.absent.insert(key, ()).await;
                    }
                    Ok(None)
                }
                Miss::Failed(error) => Err(error.clone()),
            },
        }
    }

    async fn load(&self, key: Key) -> Result<Document, Miss> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        match self.store.read(key).await {
            // Compressed here, once per document entering the cache: every request that
            // hits it afterwards sends the bytes as they are.
            Ok(Some(body)) => Ok(Document::new(body, self.compress)),
            Ok(None) => Err(Miss::Absent),
            Err(error) => Err(Miss::Failed(Arc::new(error))),
        }
    }

    /// Drops what a materialize of `scope` changed: a product's three documents and
    /// every list page (pages hold entries of many products), or everything. Remembered
    /// absences all go: products may have been added anywhere.
    pub async fn invalidate(&self, scope: &Scope) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.absent.invalidate_all();
        match scope {
            Scope::All => self.documents.invalidate_all(),
            Scope::Products(ids) => {
                self.documents
                    .invalidate_entries_if(|key, _| matches!(key, Key::Page { .. }))
                    .expect("the cache is built with invalidation closures");
                for &id in ids {
                    self.documents.invalidate(&Key::Product(id)).await;
                    self.documents.invalidate(&Key::Styles(id)).await;
                    self.documents.invalidate(&Key::Related(id)).await;
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
        self.documents.run_pending_tasks().await;
        self.absent.run_pending_tasks().await;
        (
            self.documents.entry_count() + self.absent.entry_count(),
            self.documents.weighted_size() + self.absent.entry_count() * ENTRY_OVERHEAD,
        )
    }
}
