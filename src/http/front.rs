//! A small table of documents the cache answered recently, read before the cache
//! itself: a hit here takes one uncontended lock and a reference count, where moka's
//! read also records the access for its eviction policy, about 1,000 instructions, the
//! largest single part of a hit beyond what bare hyper does (bench/README.md).
//!
//! It holds nothing alive that nobody else does: an entry is made only from a cache
//! hit and holds its value weakly, so a document the cache has let go (evicted or
//! replaced) is gone from here too once the answers sending it are, and the byte
//! budget holds. The cache forgets invalidated keys here itself, and the entries keep
//! their lifetime in the cache. With a cache too small to keep anything it holds
//! nothing. Every 16th hit of an entry goes through the cache again, so that its policy
//! still sees which documents are read. One slot per key hash (direct-mapped): keys that
//! share a slot take turns, each falling back to the cache as before.
//!
//! Not moka's eviction listener: with one, moka locks each key it inserts or removes,
//! and a cache miss took 2,700 more instructions (bench/README.md).
//!
//! Its own memory, beside the budget: the slots (some 50 bytes each, 3.5 MiB at most),
//! and a weak reference keeps the small shared part of a document let go (not its
//! body) until its slot is reused.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

/// Hits an entry answers before one goes through the cache again.
const HITS_PER_RECORDED_READ: u8 = 16;

/// Recently read values by key, in front of a cache that holds them.
pub struct Front<K, V> {
    slots: Box<[Slot<K, V>]>,
    /// 64 less log2 of the slots: the slot of a hash is its high bits.
    shift: u32,
}

/// One slot: empty, or the entry of the last key hashed to it that was filled.
type Slot<K, V> = Mutex<Option<Entry<K, V>>>;

struct Entry<K, V> {
    key: K,
    value: Weak<V>,
    /// The end of the value's lifetime in the cache.
    expires: Instant,
    /// Hits left before the next goes through the cache.
    hits_left: u8,
}

impl<K: Hash + Eq + Copy, V> Front<K, V> {
    /// A table of at least `slots` slots (a power of two).
    pub fn new(slots: usize) -> Front<K, V> {
        let slots = slots.max(1).next_power_of_two();
        Front {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            shift: 64 - slots.trailing_zeros(),
        }
    }

    fn slot(&self, key: &K) -> &Slot<K, V> {
        let mut hash = Mix(0);
        key.hash(&mut hash);
        // `checked_shr`: a table of one slot shifts by 64.
        let index = hash.finish().checked_shr(self.shift).unwrap_or(0);
        &self.slots[index as usize]
    }

    /// The value held under `key`, unless it has expired by `now`, nothing else holds it
    /// any more, or this hit is due to go through the cache (then `None`, and the
    /// cache's answer refills the slot).
    pub fn get(&self, key: &K, now: Instant) -> Option<Arc<V>> {
        // A slot busy elsewhere is passed over: the cache answers instead.
        let mut slot = self.slot(key).try_lock().ok()?;
        let entry = slot.as_mut().filter(|entry| entry.key == *key)?;
        if entry.hits_left == 0 || now >= entry.expires {
            return None;
        }
        let value = entry.value.upgrade()?;
        entry.hits_left -= 1;
        Some(value)
    }

    /// Holds `value`, just answered by the cache under `key`, unless `epoch` moved
    /// since `epoch_before` was read (before the cache was asked): the cache may have
    /// dropped the value since. The cache moves the epoch after dropping a key and before
    /// [`Front::forget`]ting it, and checking under the slot's lock orders the two.
    pub fn fill(
        &self,
        key: K,
        value: &Arc<V>,
        expires: Instant,
        epoch: &AtomicU64,
        epoch_before: u64,
    ) {
        let Ok(mut slot) = self.slot(&key).lock() else {
            return;
        };
        if epoch.load(Ordering::SeqCst) != epoch_before {
            return;
        }
        *slot = Some(Entry {
            key,
            value: Arc::downgrade(value),
            expires,
            hits_left: HITS_PER_RECORDED_READ,
        });
    }

    /// Forgets the value under `key`. (Nothing panics holding a slot's lock; were one
    /// poisoned, forgetting would still have to happen.)
    pub fn forget(&self, key: &K) {
        let mut slot = self
            .slot(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|entry| entry.key == *key) {
            *slot = None;
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for slot in &self.slots {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Entries held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.lock().unwrap().is_some())
            .count()
    }
}

/// A multiplicative hash of a few machine words (as rustc's `FxHasher`): keys are small
/// values of the service's own making, and a slot shared by two keys only costs a trip
/// to the cache, so a fast hash serves better than a keyed one.
struct Mix(u64);

impl Hasher for Mix {
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u8(&mut self, word: u8) {
        self.write_u64(u64::from(word));
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_i32(&mut self, word: i32) {
        self.write_u64(word as u32 as u64);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }

    /// The words mixed once more (splitmix64's finalizer), so that the high bits, which
    /// pick the slot, depend on every bit of the key.
    fn finish(&self) -> u64 {
        let mut hash = self.0;
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^ (hash >> 31)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_answer_until_they_expire_are_forgotten_or_held_by_nobody_else() {
        let front: Front<u32, &str> = Front::new(8);
        let epoch = AtomicU64::new(0);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let one = Arc::new("one");
        assert_eq!(front.get(&1, now), None);
        front.fill(1, &one, later, &epoch, 0);
        assert_eq!(front.get(&1, now).as_deref(), Some(&"one"));
        assert_eq!(front.get(&2, now), None);
        assert_eq!(front.get(&1, later), None, "expired");
        front.forget(&2);
        assert!(front.get(&1, now).is_some(), "another key's forgetting");
        front.forget(&1);
        assert_eq!(front.get(&1, now), None);
        front.fill(1, &one, later, &epoch, 0);
        drop(one);
        assert_eq!(front.get(&1, now), None, "the cache let it go");
        let three = Arc::new("three");
        front.fill(3, &three, later, &epoch, 0);
        front.clear();
        assert_eq!(front.len(), 0);
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_kept() {
        let front: Front<u32, &str> = Front::new(8);
        let epoch = AtomicU64::new(5);
        let later = Instant::now() + Duration::from_secs(60);
        front.fill(1, &Arc::new("stale"), later, &epoch, 4);
        assert_eq!(front.len(), 0);
    }

    #[test]
    fn every_sixteenth_hit_goes_through_the_cache() {
        let front: Front<u32, u32> = Front::new(1);
        let epoch = AtomicU64::new(0);
        let now = Instant::now();
        let (seventy, eighty) = (Arc::new(70), Arc::new(80));
        front.fill(7, &seventy, now + Duration::from_secs(60), &epoch, 0);
        let answered = (0..100)
            .take_while(|_| front.get(&7, now).is_some())
            .count();
        assert_eq!(answered, usize::from(HITS_PER_RECORDED_READ));
        // One slot: another key takes it over.
        front.fill(8, &eighty, now + Duration::from_secs(60), &epoch, 0);
        assert_eq!(front.get(&7, now), None);
        assert_eq!(front.get(&8, now).as_deref(), Some(&80));
    }

    #[test]
    fn keys_spread_over_the_slots() {
        let front: Front<(u8, i32), ()> = Front::new(1024);
        let used: std::collections::HashSet<usize> = (1..=3000)
            .flat_map(|id| [(0, id), (1, id), (2, id)])
            .map(|key| std::ptr::from_ref(front.slot(&key)) as usize)
            .collect();
        // 9,000 keys over 1,024 slots leave almost none empty (1,023.8 expected of a
        // random hash).
        assert!(used.len() >= 1020, "{} slots used", used.len());
    }
}
