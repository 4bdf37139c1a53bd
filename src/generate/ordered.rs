//! Numbered jobs run on a few threads, their results handed over in job order. A job
//! starts only when fewer than `window` results are ahead of the one awaited, so
//! memory stays bounded however the threads are scheduled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

use crate::Result;

/// Runs `make(0..jobs)` on `threads` threads and calls `consume` with each result in
/// job order, on the calling thread. Stops at the first error of `consume`.
pub(super) fn run<T: Send>(
    jobs: usize,
    threads: usize,
    window: usize,
    make: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> Result<()>,
) -> Result<()> {
    let gate = Gate::new();
    let next_job = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        for _ in 0..threads.max(1) {
            let sender = sender.clone();
            let (gate, next_job, make) = (&gate, &next_job, &make);
            scope.spawn(move || {
                loop {
                    let job = next_job.fetch_add(1, Ordering::Relaxed);
                    if job >= jobs || !gate.wait_until_within(job, window) {
                        break;
                    }
                    if sender.send((job, make(job))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut waiting = BTreeMap::new();
        let mut awaited = 0;
        let outcome = receiver.iter().try_for_each(|(job, result)| {
            waiting.insert(job, result);
            while let Some(result) = waiting.remove(&awaited) {
                consume(awaited, result)?;
                awaited += 1;
                gate.advance(awaited);
            }
            Ok(())
        });
        // Whatever happened, let every waiting thread go.
        gate.stop();
        outcome
    })
}

/// How far the consumer has got, for threads waiting to start a job.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

struct GateState {
    consumed: usize,
    stopped: bool,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            state: Mutex::new(GateState {
                consumed: 0,
                stopped: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Waits until `job` is fewer than `window` jobs ahead of the consumer; false if
    /// the run stopped meanwhile.
    fn wait_until_within(&self, job: usize, window: usize) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while !state.stopped && job >= state.consumed + window {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        !state.stopped
    }

    fn advance(&self, consumed: usize) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.consumed = consumed;
        self.changed.notify_all();
    }

    fn stop(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.stopped = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_job_order_whatever_the_threads() {
        for threads in [1, 2, 5] {
            let mut seen = Vec::new();
            run(
                200,
                threads,
                3,
                |job| {
                    // Uneven work, so that threads finish out of order.
                    std::thread::sleep(std::time::Duration::from_micros((job % 7) as u64 * 50));
                    job * 2
                },
                |job, result| {
                    assert_eq!(result, job * 2);
                    seen.push(job);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, (0..200).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_error_stops_the_run() {
        let mut consumed = 0;
        let outcome = run(
            1000,
            2,
            4,
            |job| job,
            |job, _| {
                consumed += 1;
                if job == 10 {
                    Err(crate::Error::InvalidInput("stop".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(outcome.is_err());
        assert_eq!(consumed, 11);
    }
}
