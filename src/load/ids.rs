//! Id-indexed sets and maps whose memory follows the ids actually seen: storage comes
//! in pages of 65,536 ids allocated on first use, so a dense range of millions of ids
//! costs a few megabytes and one stray id near `i32::MAX` costs one page, not gigabytes.

const PAGE_BITS: u32 = 16;
const PAGE_LEN: usize = 1 << PAGE_BITS;

/// A map from id to a `Copy` value, `T::default()` where nothing was stored.
#[derive(Debug, Clone)]
pub struct IdMap<T> {
    pages: Vec<Option<Box<[T]>>>,
}

impl<T: Copy + Default> Default for IdMap<T> {
    fn default() -> Self {
        IdMap { pages: Vec::new() }
    }
}

impl<T: Copy + Default> IdMap<T> {
    /// The value stored for `id`, or the default.
    pub fn get(&self, id: u32) -> T {
        let (page, slot) = split(id);
        match self.pages.get(page) {
            Some(Some(values)) => values[slot],
            _ => T::default(),
        }
    }

    /// The value for `id`, creating its page if needed.
    pub fn get_mut(&mut self, id: u32) -> &mut T {
        let (page, slot) = split(id);
        if self.pages.len() <= page {
            self.pages.resize_with(page + 1, || None);
        }
        let values = self.pages[page].get_or_insert_with(|| vec![T::default(); PAGE_LEN].into());
        &mut values[slot]
    }

    /// Every id whose page exists, with its value (defaults included), in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, T)> + '_ {
        self.pages.iter().enumerate().flat_map(|(page, values)| {
            values.iter().flat_map(move |values| {
                values
                    .iter()
                    .enumerate()
                    .map(move |(slot, value)| (((page as u32) << PAGE_BITS) | slot as u32, *value))
            })
        })
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

fn split(id: u32) -> (usize, usize) {
    ((id >> PAGE_BITS) as usize, (id as usize) & (PAGE_LEN - 1))
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
        // One stray large id allocates one page of words, not the whole range.
        assert_eq!(set.words.pages.iter().flatten().count(), 2);
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
