//! What a materialize tells servers on the `atelier_documents` channel: which products'
//! documents changed, and which list pages that moves.
//!
//! A payload is JSON under PostgreSQL's 8000-byte NOTIFY limit:
//!
//! - `{"all":true}`: everything may have changed (a full rebuild);
//! - `{"products":[ids]}`: these products' documents, and every list page;
//! - `{"products":[ids],"ranks":[r…],"shift":s}`: these products' documents, the pages
//!   holding the list ranks `r` (the products' ranks after the change), and, when `shift`
//!   is present, every page from rank `s` on: a product added or removed there moved
//!   every entry after it by one;
//! - any of these with `"styles":[ids]`: of the products, those whose styles document
//!   alone changed (a price, a stock level, a photo). They are listed under `products`
//!   too, so a server that does not know this key drops all three of their documents,
//!   which is safe, only wasteful.
//!
//! A long change is split over several payloads sent in one transaction; each stands on
//! its own, and servers receive them together at commit.

use super::{Kind, Kinds};

/// What a server must drop from its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Everything.
    Everything,
    /// Some products' documents, and list pages.
    Products {
        /// The products whose documents changed (or went).
        ids: Vec<i32>,
        /// Those of `ids` whose styles document alone was rebuilt (the one kind rebuilt
        /// alone, [`Kind::rebuilt_alone`]), sorted; the others may have changed every
        /// kind.
        styles_only: Vec<i32>,
        /// Which list pages changed.
        pages: Pages,
    },
}

/// The list pages a change of some products moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pages {
    /// Every page (the sender did not say which).
    Every,
    /// The pages holding these ranks, and every page from `shift` on.
    Ranks {
        /// 1-based ranks in the list whose entries changed in place.
        ranks: Vec<i64>,
        /// The first rank whose entry moved, when products were added or removed.
        shift: Option<i64>,
    },
}

/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// Past this many products a change is announced as "everything": dropping the whole
/// cache once is cheaper for servers than dropping that many entries one by one.
pub const MAX_NAMED_PRODUCTS: usize = 100_000;

impl Notice {
    /// The kinds of documents that may have changed for `id`, a product this notice
    /// names (or any, for [`Notice::Everything`]).
    pub fn changed_kinds(&self, id: i32) -> Kinds {
        match self {
            Notice::Products { styles_only, .. } if styles_only.binary_search(&id).is_ok() => {
                Kinds::of(Kind::Styles)
            }
            _ => Kinds::ALL,
        }
    }

    /// The payloads announcing this notice, each under the NOTIFY limit.
    pub fn payloads(&self) -> Vec<String> {
        let (ids, styles_only, pages) = match self {
            Notice::Everything => return vec![r#"{"all":true}"#.to_string()],
            Notice::Products {
                ids,
                styles_only,
                pages,
            } if ids.len() <= MAX_NAMED_PRODUCTS => (ids, styles_only, pages),
            Notice::Products { .. } => return Notice::Everything.payloads(),
        };
        let mut payloads = Vec::new();
        let mut products: Vec<i32> = Vec::new();
        let mut styles: Vec<i32> = Vec::new();
        let mut ranks: Vec<i64> = Vec::new();
        let shift = match pages {
            Pages::Ranks { shift, .. } => *shift,
            Pages::Every => None,
        };
        let render = |products: &[i32], styles: &[i32], ranks: &[i64]| {
            let mut value = serde_json::json!({ "products": products });
            if !styles.is_empty() {
                value["styles"] = serde_json::json!(styles);
            }
            if let Pages::Ranks { .. } = pages {
                value["ranks"] = serde_json::json!(ranks);
                if let Some(shift) = shift {
                    value["shift"] = serde_json::json!(shift);
                }
            }
            value.to_string()
        };
        // Ids and ranks are at most 11 and 20 characters with their commas; the pairing of
        // ids and ranks within one payload does not matter, only that all are sent. A
        // styles-only id travels in the payload that names it under `products`.
        let rank_list: &[i64] = match pages {
            Pages::Ranks { ranks, .. } => ranks,
            Pages::Every => &[],
        };
        let (mut next_id, mut next_rank) = (0, 0);
        while next_id < ids.len() || next_rank < rank_list.len() || payloads.is_empty() {
            let mut room = MAX_PAYLOAD - 80;
            while room >= 48 && (next_id < ids.len() || next_rank < rank_list.len()) {
                if next_id < ids.len() {
                    let id = ids[next_id];
                    products.push(id);
                    next_id += 1;
                    room -= 12;
                    if styles_only.binary_search(&id).is_ok() {
                        styles.push(id);
                        room -= 12;
                    }
                }
                if next_rank < rank_list.len() {
                    ranks.push(rank_list[next_rank]);
                    next_rank += 1;
                    room -= 21;
                }
            }
            payloads.push(render(&products, &styles, &ranks));
            products.clear();
            styles.clear();
            ranks.clear();
        }
        payloads
    }

    /// Reads a payload; anything not understood means everything, `{"all":true}`
    /// included, so a server never keeps a document it was told about.
    pub fn parse(payload: &str) -> Notice {
        let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
        let Some(ids): Option<Vec<i32>> = integers(value.get("products"))
            .and_then(|ids| ids.into_iter().map(|id| i32::try_from(id).ok()).collect())
        else {
            return Notice::Everything;
        };
        let pages = match (value.get("ranks"), value.get("shift")) {
            (None, _) => Pages::Every,
            (Some(ranks), shift) => match (integers(Some(ranks)), shift) {
                (Some(ranks), None) => Pages::Ranks { ranks, shift: None },
                (Some(ranks), Some(shift)) => match shift.as_i64() {
                    Some(shift) => Pages::Ranks {
                        ranks,
                        shift: Some(shift),
                    },
                    None => Pages::Every,
                },
                (None, _) => Pages::Every,
            },
        };
        // `styles` must be ids named under `products`; anything else is not understood.
        let styles_only = match value.get("styles") {
            None => Vec::new(),
            styles => {
                let mut named = ids.clone();
                named.sort_unstable();
                let styles: Option<Vec<i32>> = integers(styles).and_then(|styles| {
                    styles
                        .into_iter()
                        .map(|id| {
                            i32::try_from(id)
                                .ok()
                                .filter(|id| named.binary_search(id).is_ok())
                        })
                        .collect()
                });
                match styles {
                    Some(mut styles) => {
                        styles.sort_unstable();
                        styles
                    }
                    None => return Notice::Everything,
                }
            }
        };
        Notice::Products {
            ids,
            styles_only,
            pages,
        }
    }
}

/// An array of integers, or `None` for anything else.
fn integers(value: Option<&serde_json::Value>) -> Option<Vec<i64>> {
    value?
        .as_array()?
        .iter()
        .map(serde_json::Value::as_i64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(ids: Vec<i32>, ranks: Vec<i64>, shift: Option<i64>) -> Notice {
        Notice::Products {
            ids,
            styles_only: Vec::new(),
            pages: Pages::Ranks { ranks, shift },
        }
    }

    #[test]
    fn payloads_name_products_ranks_and_the_shift() {
        let notice = ranked(vec![3, 1], vec![2, 1], Some(7));
        assert_eq!(
            notice.payloads(),
            [r#"{"products":[3,1],"ranks":[2,1],"shift":7}"#]
        );
        assert_eq!(Notice::parse(&notice.payloads()[0]), notice);
        let unranked = Notice::Products {
            ids: vec![5],
            styles_only: Vec::new(),
            pages: Pages::Every,
        };
        assert_eq!(unranked.payloads(), [r#"{"products":[5]}"#]);
        assert_eq!(Notice::parse(r#"{"products":[5]}"#), unranked);
        assert_eq!(Notice::Everything.payloads(), [r#"{"all":true}"#]);
        let nothing = ranked(vec![], vec![], None);
        assert_eq!(nothing.payloads(), [r#"{"products":[],"ranks":[]}"#]);
    }

    #[test]
    fn long_changes_are_split_under_the_limit_and_lose_nothing() {
        let ids: Vec<i32> = (2_000_000_000..2_000_003_000).collect();
        let ranks: Vec<i64> = (1_000_000..1_002_500).collect();
        let notice = ranked(ids.clone(), ranks.clone(), Some(42));
        let payloads = notice.payloads();
        assert!(payloads.len() > 1);
        let (mut seen_ids, mut seen_ranks) = (Vec::new(), Vec::new());
        for payload in &payloads {
            assert!(payload.len() < 8000, "{} bytes", payload.len());
            match Notice::parse(payload) {
                Notice::Products {
                    ids,
                    styles_only: _,
                    pages:
                        Pages::Ranks {
                            ranks,
                            shift: Some(42),
                        },
                } => {
                    seen_ids.extend(ids);
                    seen_ranks.extend(ranks);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((seen_ids, seen_ranks), (ids, ranks));
        let huge = ranked((1..=200_000).collect(), vec![], None);
        assert_eq!(huge.payloads(), [r#"{"all":true}"#]);
    }

    #[test]
    fn anything_not_understood_means_everything() {
        assert_eq!(Notice::parse(r#"{"all":true}"#), Notice::Everything);
        assert_eq!(Notice::parse("garbage"), Notice::Everything);
        assert_eq!(Notice::parse(r#"{"products":["x"]}"#), Notice::Everything);
        assert_eq!(
            Notice::parse(r#"{"products":[99999999999]}"#),
            Notice::Everything
        );
        assert_eq!(
            Notice::parse(r#"{"products":[1],"ranks":["x"]}"#),
            Notice::Products {
                ids: vec![1],
                styles_only: Vec::new(),
                pages: Pages::Every
            }
        );
        assert_eq!(
            Notice::parse(r#"{"products":[1],"ranks":[1],"shift":"x"}"#),
            Notice::Products {
                ids: vec![1],
                styles_only: Vec::new(),
                pages: Pages::Every
            }
        );
    }

    #[test]
    fn styles_only_products_travel_with_their_ids_and_stay_among_the_products() {
        let notice = Notice::Products {
            ids: vec![1, 2, 3],
            styles_only: vec![1, 3],
            pages: Pages::Ranks {
                ranks: vec![2],
                shift: None,
            },
        };
        assert_eq!(
            notice.payloads(),
            [r#"{"products":[1,2,3],"ranks":[2],"styles":[1,3]}"#]
        );
        assert_eq!(Notice::parse(&notice.payloads()[0]), notice);

        // Split over payloads, each names its styles-only ids among its own products.
        let ids: Vec<i32> = (1_000_000_000..1_000_002_000).collect();
        let styles_only: Vec<i32> = ids.iter().copied().filter(|id| id % 3 == 0).collect();
        let long = Notice::Products {
            ids: ids.clone(),
            styles_only: styles_only.clone(),
            pages: Pages::Every,
        };
        let payloads = long.payloads();
        assert!(payloads.len() > 1);
        let (mut seen_ids, mut seen_styles) = (Vec::new(), Vec::new());
        for payload in &payloads {
            assert!(payload.len() < 8000, "{} bytes", payload.len());
            let Notice::Products {
                ids, styles_only, ..
            } = Notice::parse(payload)
            else {
                panic!("{payload}")
            };
            assert!(styles_only.iter().all(|id| ids.contains(id)));
            seen_ids.extend(ids);
            seen_styles.extend(styles_only);
        }
        assert_eq!((seen_ids, seen_styles), (ids, styles_only));
    }

    #[test]
    fn styles_ids_outside_the_products_are_not_understood() {
        assert_eq!(
            Notice::parse(r#"{"products":[1],"styles":[2]}"#),
            Notice::Everything
        );
        assert_eq!(
            Notice::parse(r#"{"products":[1],"styles":"x"}"#),
            Notice::Everything
        );
        assert_eq!(
            Notice::parse(r#"{"products":[2,1],"styles":[1]}"#),
            Notice::Products {
                ids: vec![2, 1],
                styles_only: vec![1],
                pages: Pages::Every
            }
        );
    }
}
