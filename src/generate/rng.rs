//! The seeded random source of the generator: one independent ChaCha8 stream per
//! (seed, chunk, stream), so what a chunk contains never depends on which thread made
//! it, in which order, or on which machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random streams of one chunk: its plan, then one per file. Each file drawing from
/// its own stream keeps a change in one file's rows from reshuffling the others.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stream {
    Plan = 0,
    Product = 1,
    Styles = 2,
    Features = 3,
    Photos = 4,
    Skus = 5,
    Related = 6,
    /// The pool of photo images, drawn once per catalog (under chunk 0).
    Images = 7,
}

const STREAMS_PER_CHUNK: u64 = 8;

/// A seeded generator with the few draws the catalog needs, all in integers so that
/// no floating-point rounding can differ between machines.
pub(super) struct Rand(ChaCha8Rng);

impl Rand {
    /// The stream `stream` of chunk `chunk` under `seed`.
    pub(super) fn new(seed: u64, chunk: u32, stream: Stream) -> Rand {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(chunk) * STREAMS_PER_CHUNK + stream as u64);
        Rand(rng)
    }

    /// A uniform integer in `0..n` (`n > 0`). Multiply-and-shift: its bias, at most
    /// n / 2³², is far below anything the catalog's statistics can show.
    pub(super) fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.0.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// A uniform integer in `low..=high`.
    pub(super) fn range(&mut self, low: u32, high: u32) -> u32 {
        low + self.below(high - low + 1)
    }

    /// True with probability `per_million` / 1,000,000.
    pub(super) fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < per_million
    }

    /// A uniform element of `items` (not empty).
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u32) as usize]
    }

    /// An index into `weights`, each chosen in proportion to its weight.
    pub(super) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut draw = self.below(total);
        for (index, &weight) in weights.iter().enumerate() {
            if draw < weight {
                return index;
            }
            draw -= weight;
        }
        weights.len() - 1
    }

    /// An element of `items` (not empty), each chosen in proportion to `weight`.
    pub(super) fn pick_weighted<'a, T>(
        &mut self,
        items: &'a [T],
        weight: impl Fn(&T) -> u32,
    ) -> &'a T {
        let total: u32 = items.iter().map(&weight).sum();
        let mut draw = self.below(total);
        for item in items {
            if draw < weight(item) {
                return item;
            }
            draw -= weight(item);
        }
        &items[items.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draws = |seed, chunk, stream| {
            let mut rng = Rand::new(seed, chunk, stream);
            (0..8).map(|_| rng.below(1_000_000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1, 3, Stream::Photos), draws(1, 3, Stream::Photos));
        assert_ne!(draws(1, 3, Stream::Photos), draws(1, 3, Stream::Skus));
        assert_ne!(draws(1, 3, Stream::Photos), draws(1, 4, Stream::Photos));
        assert_ne!(draws(1, 3, Stream::Photos), draws(2, 3, Stream::Photos));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rand::new(7, 0, Stream::Plan);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let value = rng.range(2, 6);
            assert!((2..=6).contains(&value));
            seen[(value - 2) as usize] = true;
        }
        assert!(
            seen.iter().all(|&hit| hit),
            "every value of a small range appears"
        );
        let heavy = (0..10_000).filter(|_| rng.weighted(&[1, 9]) == 1).count();
        assert!(
            (8_500..9_500).contains(&heavy),
            "weight 9 of 10 drawn {heavy} times"
        );
        let hits = (0..100_000).filter(|_| rng.chance(35_000)).count();
        assert!(
            (3_000..4_000).contains(&hits),
            "3.5% chance hit {hits} times"
        );
    }
}
