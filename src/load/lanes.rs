//! What the load's lanes tell each other while they run: the product and style ids
//! their children are checked against, the milestones the scheduler waits for (a file
//! copied, the products built, a table's keys built), and whether to stop because one
//! of them failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

use super::ids::{IdMap, IdSet};
use crate::catalog::FileKind;
use crate::{Error, Result};

/// What the lanes tell each other: the product and style ids, published by the lane
/// that reads them; the milestones reached; whether to stop.
pub struct Shared {
    published: Mutex<Published>,
    changed: Condvar,
    aborted: AtomicBool,
    /// One bit per milestone reached, and [`ABORTED_BIT`].
    milestones: watch::Sender<u16>,
}

/// A point of a load another lane may wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// The staging table of a file is committed.
    Copied(FileKind),
    /// The staging product table is built.
    ProductsBuilt,
    /// Every primary and unique key of a file's staging table is built.
    Keyed(FileKind),
}

impl Milestone {
    fn bit(self) -> u16 {
        match self {
            Milestone::Copied(kind) => 1 << (kind as u16),
            Milestone::ProductsBuilt => 1 << 6,
            Milestone::Keyed(kind) => 1 << (7 + kind as u16),
        }
    }
}

/// The milestones reached at some moment.
#[derive(Debug, Clone, Copy)]
pub struct Reached(u16);

impl Reached {
    /// Whether `milestone` was reached.
    pub fn has(self, milestone: Milestone) -> bool {
        self.0 & milestone.bit() != 0
    }
}

const ABORTED_BIT: u16 = 1 << 15;

impl Default for Shared {
    fn default() -> Self {
        Shared {
            published: Mutex::default(),
            changed: Condvar::new(),
            aborted: AtomicBool::new(false),
            milestones: watch::Sender::new(0),
        }
    }
}

/// The ids a lane publishes for the others.
#[derive(Default)]
pub struct Published {
    pub products: Option<Arc<IdSet>>,
    pub styles: Option<Arc<IdMap<u32>>>,
}

impl Shared {
    /// Stops every lane at its next chunk or wait.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.milestones.send_modify(|bits| *bits |= ABORTED_BIT);
        let _guard = self.published.lock().expect("lane lock");
        self.changed.notify_all();
    }

    /// Tells the other lanes that `milestone` is reached.
    pub fn reach(&self, milestone: Milestone) {
        self.milestones.send_modify(|bits| *bits |= milestone.bit());
    }

    /// Waits until `ready` finds what it needs in the milestones reached; an error if
    /// the load is stopped first.
    pub async fn wait_until<T>(&self, mut ready: impl FnMut(Reached) -> Option<T>) -> Result<T> {
        let mut bits = self.milestones.subscribe();
        loop {
            let reached = *bits.borrow_and_update();
            if reached & ABORTED_BIT != 0 {
                return Err(Error::LoadAborted);
            }
            if let Some(found) = ready(Reached(reached)) {
                return Ok(found);
            }
            bits.changed().await.map_err(|_| Error::LoadAborted)?;
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// The loaded product ids, once product.csv has been read.
    pub fn products(&self) -> Option<Arc<IdSet>> {
        self.published.lock().expect("lane lock").products.clone()
    }

    pub fn wait<T>(&self, pick: impl Fn(&Published) -> Option<T>) -> Result<T> {
        let mut published = self.published.lock().expect("lane lock");
        loop {
            if self.is_aborted() {
                return Err(Error::LoadAborted);
            }
            if let Some(value) = pick(&published) {
                return Ok(value);
            }
            published = self.changed.wait(published).expect("lane lock");
        }
    }

    pub fn publish(&self, update: impl FnOnce(&mut Published)) {
        update(&mut self.published.lock().expect("lane lock"));
        self.changed.notify_all();
    }
}
