//! One load per key however many ask at once: the first to ask loads, and those who
//! ask while it loads wait for its outcome instead of loading again.
//!
//! The cache's misses go through this rather than moka's entry API, whose single-flight
//! keeps a concurrent map of waiters and flushes the garbage of its epochs after every
//! load. Replacing it saved about 3,700 instructions a miss, 8 % of an identity
//! client's and 14 % of a browser's (bench/README.md, "a single-flight of our own").

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// The loads in flight, by key.
pub struct SingleFlight<K, V, S> {
    loading: Mutex<HashMap<K, Arc<OnceCell<V>>, S>>,
}

impl<K, V, S> SingleFlight<K, V, S>
where
    K: Hash + Eq + Copy,
    V: Clone,
    S: BuildHasher + Default,
{
    /// No loads in flight.
    pub fn new() -> SingleFlight<K, V, S> {
        SingleFlight {
            loading: Mutex::new(HashMap::default()),
        }
    }

    /// The outcome of the load of `key` in flight, or of `load` if none is; and whether
    /// it was this call that loaded. If the caller that loads gives up before the
    /// outcome, one of those waiting loads in its place.
    pub async fn run<F, L>(&self, key: K, load: L) -> (V, bool)
    where
        L: FnOnce() -> F,
        F: Future<Output = V>,
    {
        let cell = self.lock().entry(key).or_default().clone();
        let mut loaded = false;
        let value = cell
            .get_or_init(|| {
                loaded = true;
                async {
                    // Leaves the map however the load ends, finished or given up:
                    // whoever asks afterwards finds the outcome in the cache, or loads.
                    let _leave = Leave {
                        flight: self,
                        key,
                        cell: &cell,
                    };
                    load().await
                }
            })
            .await
            .clone();
        (value, loaded)
    }

    /// Forgets the load of `key` in flight, if any: whoever asks next loads anew rather
    /// than wait for an outcome that may predate a change.
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Forgets the loads in flight of the keys `forget` names.
    pub fn forget_if(&self, forget: impl Fn(&K) -> bool) {
        self.lock().retain(|key, _| !forget(key));
    }

    /// Loads in flight now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>, S>> {
        // The map is left consistent at every step, so a panic elsewhere while it was
        // held does not make it unusable.
        self.loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes a load's cell from the map when the load ends, unless the key has been
/// forgotten and loaded anew since.
struct Leave<'a, K, V, S>
where
    K: Hash + Eq + Copy,
    V: Clone,
    S: BuildHasher + Default,
{
    flight: &'a SingleFlight<K, V, S>,
    key: K,
    cell: &'a Arc<OnceCell<V>>,
}

impl<K, V, S> Drop for Leave<'_, K, V, S>
where
    K: Hash + Eq + Copy,
    V: Clone,
    S: BuildHasher + Default,
{
    fn drop(&mut self) {
        let mut loading = self.flight.lock();
        if loading
            .get(&self.key)
            .is_some_and(|cell| Arc::ptr_eq(cell, self.cell))
        {
            loading.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    type Flight = SingleFlight<u32, u32, std::hash::RandomState>;

    /// Asks `flight` for `key` in a task of its own, with `load` as the load.
    fn ask<F>(flight: &Arc<Flight>, key: u32, load: F) -> JoinHandle<(u32, bool)>
    where
        F: Future<Output = u32> + Send + 'static,
    {
        let flight = flight.clone();
        tokio::spawn(async move { flight.run(key, || load).await })
    }

    /// Waits until a load is in flight.
    async fn until_loading(flight: &Flight) {
        while flight.len() == 0 {
            tokio::task::yield_now().await;
        }
    }

    /// A load of `value` that ends once `released` says so.
    async fn released_then(mut released: watch::Receiver<bool>, value: u32) -> u32 {
        released.wait_for(|&go| go).await.unwrap();
        value
    }

    #[tokio::test]
    async fn concurrent_asks_share_one_load() {
        let flight = Arc::new(Flight::new());
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let asks: Vec<_> = (0..16)
            .map(|_| {
                let (loads, released) = (loads.clone(), released.clone());
                ask(&flight, 7, async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    released_then(released, 42).await
                })
            })
            .collect();
        // Every ask has joined by the time the sleep ends: the runtime of a test runs
        // one task at a time, each of them until it waits.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!((flight.len(), loads.load(Ordering::SeqCst)), (1, 1));
        release.send(true).unwrap();
        let mut loaders = 0;
        for ask in asks {
            let (value, loaded) = ask.await.unwrap();
            assert_eq!(value, 42);
            loaders += usize::from(loaded);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(loaders, 1);
        assert_eq!(flight.len(), 0, "a finished load leaves the map");
    }

    #[tokio::test]
    async fn a_waiter_loads_when_the_loader_gives_up() {
        let flight = Arc::new(Flight::new());
        let loader = ask(&flight, 1, std::future::pending());
        until_loading(&flight).await;
        let waiter = ask(&flight, 1, async { 5 });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the waiter waits for the loader");
        loader.abort();
        assert_eq!(waiter.await.unwrap(), (5, true));
        assert_eq!(flight.len(), 0);
    }

    #[tokio::test]
    async fn a_forgotten_load_is_not_joined() {
        let flight = Arc::new(Flight::new());
        let first = ask(&flight, 3, async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            1
        });
        until_loading(&flight).await;
        flight.forget(&3);
        assert_eq!(flight.run(3, || async { 2 }).await, (2, true));
        assert_eq!(first.await.unwrap(), (1, true));
        flight.forget_if(|_| true);
        assert_eq!(flight.len(), 0);
    }

    #[tokio::test]
    async fn a_forgotten_load_ending_leaves_the_new_one_in_place() {
        let flight = Arc::new(Flight::new());
        let (release, released) = watch::channel(false);
        let old = ask(&flight, 9, released_then(released.clone(), 1));
        until_loading(&flight).await;
        flight.forget(&9);
        let new = ask(&flight, 9, async move {
            let value = released_then(released, 2).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            value
        });
        until_loading(&flight).await;
        release.send(true).unwrap();
        assert_eq!(old.await.unwrap(), (1, true));
        assert_eq!(flight.len(), 1, "the new load is still in flight");
        assert_eq!(flight.run(9, || async { 3 }).await, (2, false));
        assert_eq!(new.await.unwrap(), (2, true));
    }
}
