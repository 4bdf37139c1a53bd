//! A small table of documents the cache answered recently, read before the cache
//! itself: a hit here takes one uncontended lock and a reference count, where moka's
//! read also records the access for its eviction policy, about 1,000 instructions, the
//! largest single part of a hit beyond what bare hyper does (bench/README.md).
//!
//! It holds nothing the cache does not: an entry is made only from a cache hit, and the
//! cache's eviction listener forgets whatever the cache lets go (evicted, expired,
//! replaced or invalidated). So it adds no document to the byte budget, and with a
//! cache too small to keep anything it holds nothing. Every 16th hit of an entry goes
//! through the cache again, so that its policy still sees which documents are read.
//! One slot per key hash (direct-mapped): keys that share a slot take turns, each
//! falling back to the cache as before.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Hits an entry answers before one goes through the cache again.
const HITS_PER_RECORDED_READ: u8 = 16;

/// Recently read values by key, in front of a cache that holds them all.
pub struct Front<K, V> {
    slots: Box<[Slot<K, V>]>,
    /// 64 less log2 of the slots: the slot of a hash is its high bits.
    shift: u32,
}

/// One slot: empty, or the entry of the last key hashed to it that was filled.
type Slot<K, V> = Mutex<Option<Entry<K, V>>>;

struct Entry<K, V> {
    key: K,
    value: V,
    /// The end of the value's lifetime in the cache.
    expires: Instant,
    /// Hits left before the next goes through the cache.
    hits_left: u8,
}

impl<K: Hash + Eq + Copy, V: Clone> Front<K, V> {
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
        let index = hash.0.checked_shr(self.shift).unwrap_or(0);
        &self.slots[index as usize]
    }

    /// The value held under `key`, unless it has expired by `now` or this hit is due to
    /// go through the cache (then `None`, and the cache's answer refills the slot).
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        // A slot busy elsewhere is passed over: the cache answers instead.
        let mut slot = self.slot(key).try_lock().ok()?;
        let entry = slot.as_mut().filter(|entry| entry.key == *key)?;
        if entry.hits_left == 0 || now >= entry.expires {
            return None;
        }
        entry.hits_left -= 1;
        Some(entry.value.clone())
    }

    /// Holds `value`, just answered by the cache under `key`, unless an invalidation
    /// began since `epoch_before` was read from `epoch` (before the cache was asked):
    /// the value may then be one the invalidation removes, and checking under the slot's
    /// lock orders this against the listener's [`Front::forget`].
    pub fn fill(&self, key: K, value: V, expires: Instant, epoch: &AtomicU64, epoch_before: u64) {
        let Ok(mut slot) = self.slot(&key).lock() else {
            return;
        };
        if epoch.load(Ordering::SeqCst) != epoch_before {
            return;
        }
        *slot = Some(Entry {
            key,
            value,
            expires,
            hits_left: HITS_PER_RECORDED_READ,
        });
    }

    /// Forgets the value under `key` if `is_it` says it is the one the cache let go.
    pub fn forget(&self, key: &K, is_it: impl Fn(&V) -> bool) {
        let Ok(mut slot) = self.slot(key).lock() else {
            return;
        };
        if slot
            .as_ref()
            .is_some_and(|entry| entry.key == *key && is_it(&entry.value))
        {
            *slot = None;
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for slot in &self.slots {
            if let Ok(mut slot) = slot.lock() {
                *slot = None;
            }
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

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_answer_until_they_expire_or_are_forgotten() {
        let front: Front<u32, &str> = Front::new(8);
        let epoch = AtomicU64::new(0);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        assert_eq!(front.get(&1, now), None);
        front.fill(1, "one", later, &epoch, 0);
        assert_eq!(front.get(&1, now), Some("one"));
        assert_eq!(front.get(&2, now), None);
        assert_eq!(front.get(&1, later), None, "expired");
        front.forget(&1, |value| *value == "another");
        assert_eq!(front.get(&1, now), Some("one"), "a different value stays");
        front.forget(&1, |value| *value == "one");
        assert_eq!(front.get(&1, now), None);
        front.fill(3, "three", later, &epoch, 0);
        front.clear();
        assert_eq!(front.len(), 0);
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_kept() {
        let front: Front<u32, &str> = Front::new(8);
        let epoch = AtomicU64::new(5);
        let later = Instant::now() + Duration::from_secs(60);
        front.fill(1, "stale", later, &epoch, 4);
        assert_eq!(front.len(), 0);
    }

    #[test]
    fn every_sixteenth_hit_goes_through_the_cache() {
        let front: Front<u32, u32> = Front::new(1);
        let epoch = AtomicU64::new(0);
        let now = Instant::now();
        front.fill(7, 70, now + Duration::from_secs(60), &epoch, 0);
        let answered = (0..100)
            .take_while(|_| front.get(&7, now).is_some())
            .count();
        assert_eq!(answered, usize::from(HITS_PER_RECORDED_READ));
        // One slot: another key takes it over.
        front.fill(8, 80, now + Duration::from_secs(60), &epoch, 0);
        assert_eq!((front.get(&7, now), front.get(&8, now)), (None, Some(80)));
    }

    #[test]
    fn keys_spread_over_the_slots() {
        let front: Front<(u8, i32), ()> = Front::new(1024);
        let used: std::collections::HashSet<usize> = (1..=3000)
            .flat_map(|id| [(0, id), (1, id), (2, id)])
            .map(|key| std::ptr::from_ref(front.slot(&key)) as usize)
            .collect();
        // 9,000 keys over 1,024 slots leave almost none empty.
        assert!(used.len() > 1000, "{} slots used", used.len());
    }
}
