//! The document cache in front of the store: bounded in bytes, one database read per
//! key however many requests miss at once, unknown ids remembered briefly, a TTL
//! backstop, and invalidation driven by materialize's notifications.
//!
//! A document is cached in the coding its clients ask for: its JSON for clients that do
//! not take gzip, its gzip form for those that do, each an entry of its own made by its
//! own read of the store. Materialize stores the gzip forms beside the documents and
//! the store reads them for every client (inflating them for the first kind), so a miss
//! compresses nothing, except a gzip client's for a document whose form is not made
//! yet; and the cache holds only the forms somebody asked for.
//!
//! Hits are answered first from a small table of the documents hit recently
//! (`front`), held weakly; every drop from moka is forgotten there too.
//!
//! List pages are indexed by the ranks they hold (`PageIndex`), so that a change drops
//! only the pages it moved: a product changed in place moves the one page per `count`
//! that holds its rank; a product added or removed moves every entry after it, so every
//! page from its rank on goes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;
use moka::future::Cache;

use super::encoding::Coding;
use super::front::Front;
use super::single_flight::SingleFlight;
use super::store::{Body, Key, Store, StoreError};
use crate::documents::gzip;
use crate::documents::{Kind, MAX_PAGE_COUNT, Notice, Pages};

/// A document ready to send in one coding: the body and its strong validator. Cloning
/// shares it.
#[derive(Debug, Clone)]
pub struct Document(Arc<Representation>);

#[derive(Debug)]
struct Representation {
    body: Bytes,
    etag: HeaderValue,
    coding: Coding,
    /// When it was read or made: its cache lifetime counts from here.
    made: Instant,
}

impl Document {
    /// The stored bytes as they are.
    pub fn identity(body: Bytes) -> Document {
        Document::with_coding(body, Coding::Identity, "")
    }

    /// The gzip form of the stored bytes `body`, or the bytes themselves when gzip does
    /// not gain (`coding()` then says identity).
    pub fn gzip(body: Bytes) -> Document {
        match gzip::gzip(&body) {
            Some(compressed) => Document::compressed(compressed),
            None => Document::identity(body),
        }
    }

    /// A gzip form made already, by [`gzip::gzip`].
    pub fn compressed(form: Bytes) -> Document {
        Document::with_coding(form, Coding::Gzip, "-gzip")
    }

    /// `body` as a store read for `coding` found it, ready to send in `coding`: its
    /// stored gzip form, or the JSON text compressed now (or kept as it is, where gzip
    /// does not gain).
    fn stored(body: Body, coding: Coding) -> Document {
        match (body, coding) {
            (Body::Gzip(form), Coding::Gzip) => Document::compressed(form),
            (Body::Json(json), Coding::Gzip) => Document::gzip(json),
            (Body::Json(json) | Body::JsonOnly(json), _) => Document::identity(json),
            (Body::Gzip(_), Coding::Identity) => {
                unreachable!("the store answers a read for identity with the JSON text")
            }
        }
    }

    /// An answer joined from documents, already in `coding`.
    pub fn joined(body: Bytes, coding: Coding) -> Document {
        let suffix = match coding {
            Coding::Identity => "",
            Coding::Gzip => "-gzip",
        };
        Document::with_coding(body, coding, suffix)
    }

    /// `body` in `coding` with its ETag: the xxh3 hash of the bytes, computed once here,
    /// with `suffix` after it.
    fn with_coding(body: Bytes, coding: Coding, suffix: &str) -> Document {
        let etag = etag(xxhash_rust::xxh3::xxh3_64(&body), suffix);
        Document(Arc::new(Representation {
            body,
            etag,
            coding,
            made: Instant::now(),
        }))
    }

    /// The bytes to send.
    pub fn body(&self) -> &Bytes {
        &self.0.body
    }

    /// The strong validator of these bytes.
    pub fn etag(&self) -> &HeaderValue {
        &self.0.etag
    }

    /// The coding the bytes are in.
    pub fn coding(&self) -> Coding {
        self.0.coding
    }

    /// Bytes held for this document: the body, its validator, and the shared allocation
    /// that holds them.
    pub fn weight(&self) -> usize {
        const SHARED: usize = size_of::<Representation>() + 2 * size_of::<usize>();
        SHARED + self.0.body.len() + self.0.etag.len()
    }
}

/// `"<hash as 16 hex digits><suffix>"`, written without the formatting machinery: it is
/// made on every cache miss.
fn etag(hash: u64, suffix: &str) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(18 + suffix.len());
    text.push(b'"');
    text.extend(
        (0..16)
            .rev()
            .map(|digit| HEX[(hash >> (digit * 4)) as usize & 0xf]),
    );
    text.extend_from_slice(suffix.as_bytes());
    text.push(b'"');
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .expect("a quoted hex string is a valid header value")
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
}

/// What a cache entry is held under: a document and the coding it is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot {
    key: Key,
    coding: Coding,
}

/// Every coding a document may be cached in, for invalidation.
const CODINGS: [Coding; 2] = [Coding::Identity, Coding::Gzip];

/// The hash of cache keys: keys are small values of our own making, so a fast hash
/// serves better than the default SipHash.
type KeyHasher = foldhash::fast::RandomState;

/// Documents by key and coding, loaded from the store on a miss.
pub struct DocumentCache {
    documents: Cache<Slot, Document, KeyHasher>,
    /// Keys the store holds nothing under. They live much shorter than documents, and
    /// one lifetime per cache keeps moka's read path cheap.
    absent: Cache<Key, (), KeyHasher>,
    /// The documents hit most recently, answered before `documents` is asked.
    front: Front<Slot, Representation>,
    /// The reads of the store in flight, shared by every miss on their slot.
    loading: SingleFlight<Slot, Result<Document, Arc<Miss>>, KeyHasher>,
    /// The lifetime of a document in the cache.
    ttl: Duration,
    store: Store,
    /// The cached list pages by the ranks they hold.
    pages: PageIndex,
    /// Bumped before every invalidation, so a load that raced one can tell.
    epoch: AtomicU64,
    /// Bumped after each key dropped, so that a fill of `front` that raced it can tell.
    /// Apart from `epoch`, so that loads never take a drop for an invalidation: a load
    /// that raced one drops what it read, and that would fail every load in flight.
    front_epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Bytes of a cache entry beyond its body and validator (key, value, moka's bookkeeping,
/// the allocator's share), so that many small entries still count against the bound.
/// Measured with the cache full (`bench/run fill`, full catalog, 256 MiB): 348,297 gzip
/// forms took 347 bytes each of RSS more than 160 accounted for, so with 160 the process
/// outgrew its budget by 106 MiB, against 42 MiB for 152,625 stored forms.
const ENTRY_OVERHEAD: u64 = 512;

/// The share of the byte budget that remembered absences may take: 1/16.
const ABSENT_SHARE: u64 = 16;

/// Budget bytes per slot of the front: documents are a few KiB, so a front this size
/// has room for about as many keys as the cache holds documents, up to [`MAX_FRONT`].
const BYTES_PER_FRONT_SLOT: u64 = 4096;

/// The most slots a front has (about 3 MiB of slots, whatever the budget).
const MAX_FRONT: u64 = 65_536;

/// Slots of the front for a cache of `capacity_bytes`.
fn front_slots(capacity_bytes: u64) -> usize {
    (capacity_bytes / BYTES_PER_FRONT_SLOT).clamp(1, MAX_FRONT) as usize
}

/// Why a load put nothing in the document cache.
#[derive(Debug)]
enum Miss {
    /// The key is remembered as absent: the store was not asked.
    Remembered,
    /// The store holds nothing under the key.
    Absent,
    /// The store could not answer.
    Failed(Arc<StoreError>),
}

impl DocumentCache {
    /// An empty cache in front of `store`.
    pub fn new(store: Store, settings: CacheSettings) -> DocumentCache {
        let absent_bytes = settings.capacity_bytes / ABSENT_SHARE;
        let front = Front::new(front_slots(settings.capacity_bytes));
        let documents = Cache::builder()
            .max_capacity(settings.capacity_bytes - absent_bytes)
            .weigher(|_slot: &Slot, document: &Document| {
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
            front,
            loading: SingleFlight::new(),
            ttl: settings.ttl,
            store,
            pages: PageIndex::default(),
            epoch: AtomicU64::new(0),
            front_epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The document under `key` in `coding` (`None`: there is none), read from the
    /// store if it is not cached in that coding. A document asked for in gzip whose
    /// gzip form would not gain comes as its stored bytes. Concurrent misses on one key
    /// and coding share a single read and its outcome; failures are not cached. `now`:
    /// the request's start, against which lifetimes are judged.
    pub async fn get(
        &self,
        key: Key,
        coding: Coding,
        now: Instant,
    ) -> Result<Option<Document>, Arc<StoreError>> {
        let slot = Slot { key, coding };
        if let Some(document) = self.front.get(&slot, now) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Document(document)));
        }
        // Boxed, so that every request's future stays small (it is moved whole into
        // hyper's connection) and only what the front does not hold carries moka's read
        // and a load's much larger state.
        Box::pin(self.get_behind_front(slot)).await
    }

    /// The document under `slot` from moka, read from the store on a miss.
    async fn get_behind_front(&self, slot: Slot) -> Result<Option<Document>, Arc<StoreError>> {
        let front_epoch = self.front_epoch.load(Ordering::SeqCst);
        if let Some(document) = self.documents.get(&slot).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.fill_front(slot, &document, front_epoch);
            return Ok(Some(document));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (loaded, read_here) = self
            .loading
            .run(slot, || self.load_and_keep(slot, epoch))
            .await;
        match loaded {
            Ok(document) if !read_here => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.fill_front(slot, &document, front_epoch);
                Ok(Some(document))
            }
            Ok(document) => Ok(Some(document)),
            Err(miss) => match &*miss {
                Miss::Remembered => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Ok(None)
                }
                Miss::Absent => {
                    self.remember_absent(slot.key, epoch).await;
                    Ok(None)
                }
                Miss::Failed(error) => Err(error.clone()),
            },
        }
    }

    /// The documents under `wanted` (each a [`Key::Document`] and its coding), in order
    /// (`None` where there is none): those in memory as they are, all the others read
    /// from the store in one round trip and cached as [`DocumentCache::get`] caches
    /// them. The reads of several keys are not shared with concurrent misses.
    pub async fn get_documents(
        &self,
        wanted: &[(Key, Coding)],
        now: Instant,
    ) -> Result<Vec<Option<Document>>, Arc<StoreError>> {
        let mut found = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for (index, &(key, coding)) in wanted.iter().enumerate() {
            let slot = Slot { key, coding };
            let cached = match self.front.get(&slot, now) {
                Some(document) => Some(Document(document)),
                None => self.cached(slot).await,
            };
            if let Some(document) = cached {
                found.push(Some(document));
            } else {
                if !self.absent.contains_key(&key) {
                    missing.push(index);
                }
                found.push(None);
            }
        }
        self.hits
            .fetch_add((wanted.len() - missing.len()) as u64, Ordering::Relaxed);
        if missing.is_empty() {
            return Ok(found);
        }
        Box::pin(self.load_documents(wanted, &missing, &mut found)).await?;
        Ok(found)
    }

    /// The document the cache holds under `slot`; the front holds it from now on.
    async fn cached(&self, slot: Slot) -> Option<Document> {
        let front_epoch = self.front_epoch.load(Ordering::SeqCst);
        let document = self.documents.get(&slot).await?;
        self.fill_front(slot, &document, front_epoch);
        Some(document)
    }

    /// Puts `document`, read from moka under `slot` after the front's epoch was
    /// `front_epoch`, in the front for the rest of its lifetime.
    fn fill_front(&self, slot: Slot, document: &Document, front_epoch: u64) {
        let expires = document.0.made + self.ttl;
        self.front
            .fill(slot, &document.0, expires, &self.front_epoch, front_epoch);
    }

    /// Reads the documents under `wanted[missing]` from the store into `found` and the
    /// cache.
    async fn load_documents(
        &self,
        wanted: &[(Key, Coding)],
        missing: &[usize],
        found: &mut [Option<Document>],
    ) -> Result<(), Arc<StoreError>> {
        let id_of = |index: usize| match wanted[index].0 {
            Key::Document { id, .. } => id,
            Key::Page { .. } => unreachable!("pages are read one at a time"),
        };
        self.misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let mut ids: Vec<i32> = missing.iter().map(|&index| id_of(index)).collect();
        ids.sort_unstable();
        ids.dedup();
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut rows = self.store.read_products(&ids).await.map_err(Arc::new)?;
        rows.sort_unstable_by_key(|row| row.id);
        for &index in missing {
            let (key, coding) = wanted[index];
            let Key::Document { kind, id } = key else {
                continue;
            };
            let slot = Slot { key, coding };
            let body = match rows.binary_search_by_key(&id, |row| row.id) {
                Ok(row) => {
                    let body = rows[row].body(kind).clone();
                    self.store
                        .for_coding(kind, id, body, coding)
                        .await
                        .map_err(Arc::new)?
                }
                Err(_) => None,
            };
            match body {
                Some(body) => {
                    let document = Document::stored(body, coding);
                    self.keep(slot, &document, epoch).await;
                    found[index] = Some(document);
                }
                None => self.remember_absent(key, epoch).await,
            }
        }
        Ok(())
    }

    /// What the store holds under `slot`, read after the epoch was `epoch`, and kept.
    async fn load_and_keep(&self, slot: Slot, epoch: u64) -> Result<Document, Arc<Miss>> {
        let document = self.load(slot).await.map_err(Arc::new)?;
        self.keep(slot, &document, epoch).await;
        Ok(document)
    }

    /// Caches `document`, read under `slot` after the epoch was `epoch`, unless an
    /// invalidation has run since: the read may predate the change. One that runs while
    /// it is cached is caught by a second look, and the document dropped again. The
    /// requests that read it still get it, as any request racing a change may.
    async fn keep(&self, slot: Slot, document: &Document, epoch: u64) {
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        self.documents.insert(slot, document.clone()).await;
        if let Key::Page { .. } = slot.key {
            // Indexed before the second look: an invalidation that looked at the index
            // too early bumped the epoch first.
            self.pages.insert(slot.key, |key| self.holds(key));
        }
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.drop_slot(slot).await;
        }
    }

    /// Remembers that the store holds nothing under `key`, as read after the epoch was
    /// `epoch`, unless an invalidation has run since (the key may have been added).
    async fn remember_absent(&self, key: Key, epoch: u64) {
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.absent.insert(key, ()).await;
        }
    }

    /// What the store holds under `slot`, unless the key is remembered as absent.
    async fn load(&self, slot: Slot) -> Result<Document, Miss> {
        if self.absent.contains_key(&slot.key) {
            return Err(Miss::Remembered);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        match self.store.read(slot.key, slot.coding).await {
            // A gzip form not stored is made here, once per document entering the cache
            // in gzip form: every request that hits it afterwards sends the bytes as they
            // are.
            Ok(Some(body)) => Ok(Document::stored(body, slot.coding)),
            Ok(None) => Err(Miss::Absent),
            Err(error) => Err(Miss::Failed(Arc::new(error))),
        }
    }

    /// Whether `key` is cached in some coding.
    fn holds(&self, key: &Key) -> bool {
        CODINGS
            .iter()
            .any(|&coding| self.documents.contains_key(&Slot { key: *key, coding }))
    }

    /// Drops `key` in every coding.
    async fn drop_key(&self, key: Key) {
        for coding in CODINGS {
            self.drop_slot(Slot { key, coding }).await;
        }
    }

    /// Drops `slot` from the cache, then from the front. The front's epoch moves in
    /// between: a request that read the dropped document from the cache read that epoch
    /// before, so its fill of the front is refused, or comes before the front forgets.
    /// A read of it in flight is forgotten first, so that no request that comes after
    /// waits for an outcome that may predate the change.
    async fn drop_slot(&self, slot: Slot) {
        self.loading.forget(&slot);
        self.documents.invalidate(&slot).await;
        self.front_epoch.fetch_add(1, Ordering::SeqCst);
        self.front.forget(&slot);
    }

    /// Empties the front after the cache dropped many entries at once.
    fn forget_all(&self) {
        self.front_epoch.fetch_add(1, Ordering::SeqCst);
        self.front.clear();
    }

    /// Drops what a materialize announced in `notice`: the named products' documents
    /// of the kinds that changed and the list pages it moved,
    /// or everything. Remembered absences all go:
    /// products may have been added anywhere.
    pub async fn invalidate(&self, notice: &Notice) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.absent.invalidate_all();
        let (ids, pages) = match notice {
            Notice::Everything => {
                self.pages.clear();
                self.loading.forget_if(|_| true);
                self.documents.invalidate_all();
                self.forget_all();
                return;
            }
            Notice::Products { ids, pages, .. } => (ids, pages),
        };
        // A page read in flight is not indexed yet, and may hold a rank that moved:
        // requests that come after read pages anew.
        self.loading
            .forget_if(|slot| matches!(slot.key, Key::Page { .. }));
        match pages {
            Pages::Every => {
                self.pages.clear();
                self.documents
                    .invalidate_entries_if(|slot, _| matches!(slot.key, Key::Page { .. }))
                    .expect("the cache is built with invalidation closures");
                self.forget_all();
            }
            Pages::Ranks { ranks, shift } => {
                for key in self.pages.take(ranks, *shift) {
                    self.drop_key(key).await;
                }
            }
        }
        for &id in ids {
            let changed = notice.changed_kinds(id);
            for kind in Kind::BY_ID
                .into_iter()
                .filter(|&kind| changed.contains(kind))
            {
                self.drop_key(Key::Document { kind, id }).await;
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

/// The list pages that may be cached, ordered by the last rank each holds, so that the
/// pages holding a rank, or every page from a rank on, are found without looking at the
/// others. Every cached page is indexed: a page is indexed right after it is cached, and
/// pruning removes only pages the cache no longer holds.
#[derive(Default)]
struct PageIndex {
    inner: Mutex<PageSet>,
}

#[derive(Default)]
struct PageSet {
    /// (last rank, page, count) of every indexed page.
    pages: BTreeSet<(u64, u32, u32)>,
    /// Size past which the index is pruned of pages no longer cached.
    prune_at: usize,
}

/// The fewest indexed pages at which pruning starts.
const MIN_PRUNE: usize = 4096;

impl PageIndex {
    /// Indexes `key`, a page already in the cache; `cached` says whether a page still is,
    /// for pruning the index when it has grown.
    fn insert(&self, key: Key, cached: impl Fn(&Key) -> bool) {
        let Key::Page { page, count } = key else {
            return;
        };
        let mut set = self.inner.lock().expect("page index lock");
        set.pages
            .insert((u64::from(page) * u64::from(count), page, count));
        if set.pages.len() > set.prune_at.max(MIN_PRUNE) {
            set.pages
                .retain(|&(_, page, count)| cached(&Key::Page { page, count }));
            set.prune_at = set.pages.len() * 2;
        }
    }

    /// Removes and returns the pages holding one of `ranks`, and every page holding a
    /// rank from `shift` on.
    fn take(&self, ranks: &[i64], shift: Option<i64>) -> Vec<Key> {
        let mut set = self.inner.lock().expect("page index lock");
        let mut taken: BTreeSet<(u64, u32, u32)> = BTreeSet::new();
        if let Some(shift) = shift {
            let shift = u64::try_from(shift).unwrap_or(0);
            taken.extend(set.pages.range((shift, 0, 0)..));
        }
        for &rank in ranks {
            let Ok(rank) = u64::try_from(rank) else {
                continue;
            };
            // A page holding `rank` ends at it or at most MAX_PAGE_COUNT - 1 after it.
            let end = rank.saturating_add(u64::from(MAX_PAGE_COUNT));
            taken.extend(
                set.pages
                    .range((rank, 0, 0)..(end, 0, 0))
                    .filter(|&&(last, _, count)| last + 1 - u64::from(count) <= rank),
            );
        }
        for page in &taken {
            set.pages.remove(page);
        }
        taken
            .into_iter()
            .map(|(_, page, count)| Key::Page { page, count })
            .collect()
    }

    fn clear(&self) {
        self.inner.lock().expect("page index lock").pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_the_quoted_hash_in_hex_with_the_suffix() {
        for hash in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            for suffix in ["", "-gzip"] {
                assert_eq!(
                    etag(hash, suffix),
                    format!("\"{hash:016x}{suffix}\"").as_str()
                );
            }
        }
    }

    fn page(page: u32, count: u32) -> Key {
        Key::Page { page, count }
    }

    #[test]
    fn pages_are_found_by_the_ranks_they_hold() {
        let index = PageIndex::default();
        for key in [
            page(1, 5),
            page(2, 5),
            page(3, 5),
            page(1, 10),
            page(2, 1000),
        ] {
            index.insert(key, |_| true);
        }
        // Rank 7 is on page 2 of 5 (6..=10) and page 1 of 10 (1..=10).
        let mut taken = index.take(&[7], None);
        taken.sort_by_key(|key| format!("{key:?}"));
        assert_eq!(taken, [page(1, 10), page(2, 5)]);
        assert_eq!(index.take(&[7], None), []);
        // From rank 11 on: page 3 of 5 and page 2 of 1000 (1001..=2000).
        let mut taken = index.take(&[], Some(11));
        taken.sort_by_key(|key| format!("{key:?}"));
        assert_eq!(taken, [page(2, 1000), page(3, 5)]);
        assert_eq!(index.take(&[1], None), [page(1, 5)]);
        assert_eq!(index.take(&[1, 2, 3], Some(1)), []);
    }

    #[test]
    fn pruning_keeps_every_cached_page() {
        let index = PageIndex::default();
        for n in 1..=(MIN_PRUNE as u32 + 1) {
            index.insert(
                page(n, 1),
                |key| matches!(key, Key::Page { page, .. } if page % 2 == 0),
            );
        }
        let left = index.inner.lock().unwrap().pages.len();
        assert_eq!(left, MIN_PRUNE / 2);
        assert_eq!(index.take(&[2], None), [page(2, 1)]);
        assert_eq!(index.take(&[3], None), []);
    }
}
