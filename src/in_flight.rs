//! Counting work in flight (requests being answered, reads on the database) with a guard
//! that leaves the count when dropped, so work abandoned half-way (a request cut off at
//! the drain limit, a read past its timeout) is never counted on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A count of work in flight, shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct InFlightCount(Arc<AtomicUsize>);

impl InFlightCount {
    /// Counts one piece of work until the guard is dropped.
    pub fn enter(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlight(self.0.clone())
    }

    /// The work in flight now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One piece of work, counted while it lives; it may move to another task.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_leaves_the_count_when_its_guard_goes() {
        let count = InFlightCount::default();
        let first = count.enter();
        let second = count.clone().enter();
        assert_eq!(count.count(), 2);
        drop(first);
        assert_eq!(count.count(), 1);
        drop(second);
        assert_eq!(count.count(), 0);
    }
}
