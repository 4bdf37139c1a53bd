//! Concurrent reads of documents by id, gathered: while the database works on a batch,
//! the reads that arrive wait together and go out as the next one. A read that finds a
//! free slot goes out at once, so a read never waits for company; under load one
//! statement carries many reads, and PostgreSQL's per-statement work (bind, snapshot,
//! executor start, the round trip) and the client's (encoding, the row stream) are paid
//! once per batch instead of once per read.
//!
//! This module is the queue and its slots; the store runs the batches.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::store::{Body, StoreError};
use crate::documents::Kind;

/// Reads one batch carries at most: a batch's answer is held whole in memory, and 64
/// styles documents of the full catalog are a few hundred kilobytes.
pub const MAX_BATCH: usize = 64;

/// A read waiting for its batch: the body stored under (`kind`, `id`), to be sent to
/// `answer`.
pub struct Pending {
    pub kind: Kind,
    pub id: i32,
    pub answer: oneshot::Sender<Result<Option<Body>, StoreError>>,
}

impl Pending {
    /// Sends the outcome; a reader that gave up (its request was dropped or timed out)
    /// no longer listens, which is no error.
    pub fn answer(self, outcome: Result<Option<Body>, StoreError>) {
        let _ = self.answer.send(outcome);
    }
}

/// The reads waiting for a batch, and the slots batches run in.
pub struct ReadQueue {
    waiting: Mutex<Vec<Pending>>,
    /// One permit per batch allowed on the database at once.
    slots: Arc<Semaphore>,
}

/// What [`ReadQueue::push`] hands back: the reader's answer to come, and a slot to run
/// batches in when one was free.
pub struct Queued {
    pub answer: oneshot::Receiver<Result<Option<Body>, StoreError>>,
    pub slot: Option<OwnedSemaphorePermit>,
}

impl ReadQueue {
    /// A queue whose batches run at most `slots` at a time.
    pub fn new(slots: usize) -> ReadQueue {
        ReadQueue {
            waiting: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// Queues a read of (`kind`, `id`). When the returned `slot` is `Some`, the caller
    /// must run batches in it (see [`ReadQueue::next_batch`]) until none is left;
    /// otherwise a batch already running will take this read.
    pub fn push(&self, kind: Kind, id: i32) -> Queued {
        let (answer, receiver) = oneshot::channel();
        self.waiting
            .lock()
            .expect("read queue lock")
            .push(Pending { kind, id, answer });
        Queued {
            answer: receiver,
            slot: Arc::clone(&self.slots).try_acquire_owned().ok(),
        }
    }

    /// The next batch to run in `slot`, or `None` once the queue is empty and the slot
    /// is given back.
    ///
    /// Every holder of a slot looks at the queue after its last batch and again after
    /// giving the slot back, so a read queued while every slot was taken is always
    /// taken by one of them.
    pub fn next_batch(&self, slot: &mut Option<OwnedSemaphorePermit>) -> Option<Vec<Pending>> {
        loop {
            let batch = self.take();
            if !batch.is_empty() {
                return Some(batch);
            }
            *slot = None;
            if self.is_empty() {
                return None;
            }
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => *slot = Some(permit),
                // Another holder will look at the queue after it.
                Err(_) => return None,
            }
        }
    }

    /// Up to [`MAX_BATCH`] of the reads waiting, leaving out those whose readers gave up
    /// (their request timed out or was dropped): nobody would read their answer.
    fn take(&self) -> Vec<Pending> {
        let mut waiting = self.waiting.lock().expect("read queue lock");
        waiting.retain(|pending| !pending.answer.is_closed());
        if waiting.len() <= MAX_BATCH {
            std::mem::take(&mut *waiting)
        } else {
            waiting.drain(..MAX_BATCH).collect()
        }
    }

    fn is_empty(&self) -> bool {
        self.waiting.lock().expect("read queue lock").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(batch: &[Pending]) -> Vec<i32> {
        batch.iter().map(|pending| pending.id).collect()
    }

    #[test]
    fn a_read_that_finds_a_free_slot_runs_and_later_ones_join_the_next_batch() {
        let queue = ReadQueue::new(1);
        let first = queue.push(Kind::Product, 1);
        let mut slot = first.slot;
        assert!(slot.is_some(), "the only slot was free");
        assert_eq!(ids(&queue.next_batch(&mut slot).unwrap()), [1]);
        // While that batch runs, two more arrive and find no slot.
        let second = queue.push(Kind::Styles, 2);
        let third = queue.push(Kind::Product, 3);
        assert!(second.slot.is_none() && third.slot.is_none());
        assert_eq!(ids(&queue.next_batch(&mut slot).unwrap()), [2, 3]);
        assert!(queue.next_batch(&mut slot).is_none());
        assert!(slot.is_none(), "the slot was given back");
        assert!(queue.push(Kind::Product, 4).slot.is_some());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_reads() {
        let queue = ReadQueue::new(1);
        let mut slot = None;
        let mut answers = Vec::new();
        for id in 0..(MAX_BATCH as i32 + 3) {
            let queued = queue.push(Kind::Related, id);
            slot = slot.or(queued.slot);
            answers.push(queued.answer);
        }
        assert_eq!(queue.next_batch(&mut slot).unwrap().len(), MAX_BATCH);
        assert_eq!(
            ids(&queue.next_batch(&mut slot).unwrap()),
            [MAX_BATCH as i32, MAX_BATCH as i32 + 1, MAX_BATCH as i32 + 2]
        );
    }

    #[test]
    fn reads_whose_readers_gave_up_are_left_out() {
        let queue = ReadQueue::new(1);
        let first = queue.push(Kind::Product, 1);
        let mut slot = first.slot;
        let abandoned = queue.push(Kind::Product, 2);
        let kept = queue.push(Kind::Product, 3);
        drop(abandoned.answer);
        assert_eq!(ids(&queue.next_batch(&mut slot).unwrap()), [1, 3]);
        drop(kept);
    }

    #[test]
    fn a_slot_given_back_is_taken_again_for_a_read_queued_meanwhile() {
        let queue = ReadQueue::new(1);
        let first = queue.push(Kind::Product, 1);
        let mut slot = first.slot;
        queue.next_batch(&mut slot).unwrap();
        // Queued while the slot was held, after the holder's last look: the holder
        // must see it when it gives the slot back.
        let late = queue.push(Kind::Product, 2);
        assert!(late.slot.is_none());
        let batch = queue.next_batch(&mut slot).unwrap();
        assert_eq!(ids(&batch), [2]);
        assert!(slot.is_some());
    }
}
