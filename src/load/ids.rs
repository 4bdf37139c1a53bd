//! Id-indexed sets and maps whose memory follows the rows actually seen: a hash map
//! from id to value (for sets, from id/64 to a word of 64 bits), so a dense range of
//! millions of ids costs tens of megabytes and ids scattered over the whole `i32` range
//! cost one entry per row, never a page per id.

use std::collections::HashMap;

/// A map from id to a `Copy` value, `T::default()` where nothing was stored.
#[derive(Debug, Clone)]
pub struct IdMap<T> {
    values: HashMap<u32, T>,
}

impl<T: Copy + Default> Default for IdMap<T> {
    fn default() -> Self {
        IdMap {
            values: HashMap::new(),
        }
    }
}

impl<T: Copy + Default> IdMap<T> {
    /// The value stored for `id`, or the default.
    pub fn get(&self, id: u32) -> T {
        self.values.get(&id).copied().unwrap_or_default()
    }

    /// The value for `id`, stored as the default first if absent.
    pub fn get_mut(&mut self, id: u32) -> &mut T {
        self.values.entry(id).or_default()
    }

    /// Every stored id with its value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, T)> + '_ {
        let mut entries: Vec<(u32, T)> = self.values.iter().map(|(&id, &v)| (id, v)).collect();
        entries.sort_unstable_by_key(|&(id, _)| id);
        entries.into_iter()
    }
}

/// A set of ids, one bit each.
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    words: IdMap<u64>,
}

impl IdSet {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.words.get(id / 64) & (1 << (id % 64)) != 0
    }

    /// Adds `id`; returns false if it was already there.
    pub fn insert(&mut self, id: u32) -> bool {
        let word = self.words.get_mut(id / 64);
        let bit = 1 << (id % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }

    /// The ids in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().flat_map(|(index, mut word)| {
            std::iter::from_fn(move || {
                (word != 0).then(|| {
                    let bit = word.trailing_zeros();
                    word &= word - 1;
                    index * 64 + bit
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_holds_sparse_ids_and_lists_them_in_order() {
        let mut set = IdSet::default();
        for id in [5, 1, i32::MAX as u32, 64, 65_536, 5] {
            set.insert(id);
        }
        assert!(set.contains(1) && set.contains(64) && set.contains(i32::MAX as u32));
        assert!(!set.contains(2) && !set.contains(63) && !set.contains(1 << 30));
        assert!(!set.insert(5));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [1, 5, 64, 65_536, i32::MAX as u32]
        );
        // A stray large id costs one word, not the range below it.
        assert_eq!(set.words.values.len(), 4);
    }

    #[test]
    fn map_defaults_where_unset() {
        let mut map = IdMap::<u32>::default();
        *map.get_mut(70_000) = 9;
        assert_eq!(map.get(70_000), 9);
        assert_eq!(map.get(69_999), 0);
        assert_eq!(map.get(3), 0);
        assert_eq!(
            map.iter().filter(|(_, v)| *v != 0).collect::<Vec<_>>(),
            [(70_000, 9)]
        );
    }
}
