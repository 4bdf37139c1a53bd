//! The structure of a chunk of products: how many styles, skus, photos, features and
//! related rows each product has, and which dirt rows are added among them. The plan
//! decides every id a chunk uses, so a first pass over all plans gives each chunk its
//! first ids before any row is written.
//!
//! A plan depends on the seed, the catalog size and the chunk, never on `--clean`:
//! dirt rows use their ids in a clean catalog too, which leaves gaps there.

use std::ops::{Add, Range};

use super::genuine::{self, Genuine};
use super::rng::{Rand, Stream};
use super::text;

/// Products per chunk: the unit of parallel work and of each random stream.
pub(super) const CHUNK_PRODUCTS: u32 = 1024;

/// The sizes of the skus of a style.
pub(super) const APPAREL_SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "XXL"];
pub(super) const SHOE_SIZES: &[&str] = &[
    "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "11.5", "12",
];

/// Products without styles, and the most styles a product has, early in the catalog
/// (its first tenth) and later. Rates are per million.
const EARLY_NO_STYLE: u32 = 200_000;
const EARLY_MAX_STYLES: u32 = 5;
const LATE_NO_STYLE: u32 = 20_000;
const LATE_MAX_STYLES: u32 = 9;

/// Styles without skus, and styles whose sku (and photo) ids have two neighbours
/// swapped, per million.
const NO_SKUS: u32 = 128_000;
const SWAPPED_IDS: u32 = 100_000;

/// Relative frequencies of 0, 1, 2, 3 and 4 features per product.
const FEATURE_COUNTS: [u32; 5] = [60, 200, 360, 240, 140];

/// The most related rows a product has (the count is uniform from zero).
pub(super) const MAX_RELATED: u32 = 9;

/// Dirt rows added after a group of rows, each kind at a rate per million rows of
/// the group.
const STYLE_EXTRAS: &[(Extra, u32)] = &[(Extra::Orphan, 300), (Extra::WrongFields, 100)];
const FEATURE_EXTRAS: &[(Extra, u32)] = &[(Extra::Orphan, 300), (Extra::WrongFields, 100)];
const SKU_EXTRAS: &[(Extra, u32)] = &[(Extra::Orphan, 200), (Extra::WrongFields, 50)];
const PHOTO_EXTRAS: &[(Extra, u32)] = &[(Extra::Orphan, 200), (Extra::WrongFields, 50)];
const RELATED_EXTRAS: &[(Extra, u32)] = &[
    (Extra::ZeroRelated, 400),
    (Extra::Orphan, 200),
    (Extra::WrongFields, 50),
];
/// Products followed by a malformed product row, per million.
const PRODUCT_WRONG_FIELDS: u32 = 50;

/// A dirt row added to a file: the loader rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extra {
    /// Its parent id names no row.
    Orphan,
    /// It has one field too few or too many.
    WrongFields,
    /// A related row pointing at product 0.
    ZeroRelated,
}

/// The next id of each id sequence: the ids a chunk uses, or, added up, the first ids
/// of a chunk. Photos take their ids from their style's sku ids, as in the dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Ids {
    /// Ids of malformed product rows, past the last product.
    pub extra_product: u64,
    pub style: u64,
    pub feature: u64,
    pub sku: u64,
    pub related: u64,
}

impl Add for Ids {
    type Output = Ids;

    fn add(self, other: Ids) -> Ids {
        Ids {
            extra_product: self.extra_product + other.extra_product,
            style: self.style + other.style,
            feature: self.feature + other.feature,
            sku: self.sku + other.sku,
            related: self.related + other.related,
        }
    }
}

impl Ids {
    /// The first ids of the first chunk: after the genuine rows, and past the last
    /// product for malformed product rows.
    pub(super) fn first(genuine: &Genuine, products: u32) -> Ids {
        let next = |ids: &mut dyn Iterator<Item = u32>| u64::from(ids.max().unwrap_or(0)) + 1;
        Ids {
            extra_product: u64::from(products) + 1,
            style: next(&mut genuine.styles.iter().map(|row| row.id)),
            feature: next(&mut genuine.features.iter().map(|row| row.id)),
            sku: next(&mut genuine.skus.iter().map(|row| row.id)),
            related: next(&mut genuine.related.iter().map(|row| row.id)),
        }
    }
}

/// One product of a plan.
pub(super) struct ProductPlan {
    pub id: u32,
    pub category: &'static str,
    pub default_price: u64,
    /// Its styles, as a range of [`ChunkPlan::styles`].
    pub styles: Range<usize>,
    pub style_extra: Option<Extra>,
    /// Generated features (a genuine product has its genuine ones instead).
    pub features: u32,
    pub feature_extra: Option<Extra>,
    /// Generated related rows (products with genuine related rows have none).
    pub related: u32,
    pub related_extra: Option<Extra>,
    /// Whether a malformed product row follows this one.
    pub wrong_fields: bool,
}

impl ProductPlan {
    /// Whether this is one of the genuine products 1–11.
    pub(super) fn genuine(&self) -> bool {
        self.id <= genuine::PRODUCTS
    }
}

/// One style of a plan.
pub(super) struct StylePlan {
    /// The genuine style's id; generated styles take the next style id.
    pub genuine: Option<u32>,
    /// Whether its skus and photos are genuine rows rather than generated ones.
    pub genuine_children: bool,
    pub sizes: &'static [&'static str],
    /// Position of the first of two neighbouring sku ids written in swapped order.
    pub swap: Option<usize>,
    /// How many photos: they take the style's first sku ids.
    pub photos: usize,
    pub sku_extra: Option<Extra>,
    pub photo_extra: Option<Extra>,
}

impl StylePlan {
    /// The id of the sku (and photo) at `position`, the style's sku ids starting at
    /// `first`.
    pub(super) fn sku_id(&self, first: u64, position: usize) -> u64 {
        let slot = match self.swap {
            Some(swap) if position == swap => swap + 1,
            Some(swap) if position == swap + 1 => swap,
            _ => position,
        };
        first + slot as u64
    }
}

/// The structure of one chunk.
pub(super) struct ChunkPlan {
    pub products: Vec<ProductPlan>,
    pub styles: Vec<StylePlan>,
    /// The ids the chunk uses from each sequence.
    pub ids: Ids,
}

/// How many chunks a catalog of `products` products has.
pub(super) fn chunks(products: u32) -> u32 {
    products.div_ceil(CHUNK_PRODUCTS)
}

/// The plan of chunk `chunk` of a catalog of `products` products.
pub(super) fn plan(seed: u64, products: u32, chunk: u32) -> ChunkPlan {
    let genuine = Genuine::get();
    let mut rng = Rand::new(seed, chunk, Stream::Plan);
    let first = chunk * CHUNK_PRODUCTS + 1;
    let last = products.min(first + CHUNK_PRODUCTS - 1);
    let mut plan = ChunkPlan {
        products: Vec::with_capacity((last - first + 1) as usize),
        styles: Vec::with_capacity((last - first + 1) as usize * 5),
        ids: Ids::default(),
    };
    for id in first..=last {
        let product = if id <= genuine::PRODUCTS {
            genuine_product(&mut rng, genuine, id, &mut plan)
        } else {
            generated_product(&mut rng, id, products, &mut plan)
        };
        plan.ids.extra_product += u64::from(product.wrong_fields);
        plan.ids.style += u64::from(product.style_extra.is_some());
        plan.ids.feature +=
            u64::from(product.features) + u64::from(product.feature_extra.is_some());
        plan.ids.related += u64::from(product.related) + u64::from(product.related_extra.is_some());
        plan.products.push(product);
    }
    plan
}

fn generated_product(rng: &mut Rand, id: u32, products: u32, plan: &mut ChunkPlan) -> ProductPlan {
    let category = *rng.pick(text::CATEGORIES);
    let default_price = u64::from(rng.range(1, 1000));
    let (no_style, max_styles) = if id <= products / 10 {
        (EARLY_NO_STYLE, EARLY_MAX_STYLES)
    } else {
        (LATE_NO_STYLE, LATE_MAX_STYLES)
    };
    let style_count = if rng.chance(no_style) {
        0
    } else {
        rng.range(1, max_styles)
    };
    let first_style = plan.styles.len();
    for _ in 0..style_count {
        let style = generated_style(rng, category, true, None);
        plan.ids.style += 1;
        plan.ids.sku += style.sizes.len() as u64 + u64::from(style.sku_extra.is_some());
        plan.styles.push(style);
    }
    let features = rng.weighted(&FEATURE_COUNTS) as u32;
    let related = rng.range(0, MAX_RELATED);
    ProductPlan {
        id,
        category,
        default_price,
        styles: first_style..plan.styles.len(),
        style_extra: extra(rng, style_count, STYLE_EXTRAS),
        features,
        feature_extra: extra(rng, features, FEATURE_EXTRAS),
        related,
        related_extra: extra(rng, related, RELATED_EXTRAS),
        wrong_fields: rng.chance(PRODUCT_WRONG_FIELDS),
    }
}

/// A genuine product: its rows come from the genuine ones, and only what those lack
/// (skus and photos of its last styles, related rows of products 10 and 11) is
/// generated, without dirt.
fn genuine_product(
    rng: &mut Rand,
    genuine: &'static Genuine,
    id: u32,
    plan: &mut ChunkPlan,
) -> ProductPlan {
    let row = &genuine.products[(id - 1) as usize];
    let first_style = plan.styles.len();
    for style in genuine.styles.iter().filter(|style| style.product_id == id) {
        let planned = generated_style(rng, &row.category, false, Some(style.id));
        if !planned.genuine_children {
            plan.ids.sku += planned.sizes.len() as u64;
        }
        plan.styles.push(planned);
    }
    let related = if id <= genuine.last_product_with_related() {
        0
    } else {
        rng.range(0, MAX_RELATED)
    };
    ProductPlan {
        id,
        category: &row.category,
        default_price: row.default_price,
        styles: first_style..plan.styles.len(),
        style_extra: None,
        features: 0,
        feature_extra: None,
        related,
        related_extra: None,
        wrong_fields: false,
    }
}

fn generated_style(
    rng: &mut Rand,
    category: &str,
    with_dirt: bool,
    genuine_id: Option<u32>,
) -> StylePlan {
    let genuine_children =
        genuine_id.is_some_and(|id| id <= Genuine::get().last_style_with_children());
    let sizes = if genuine_children || rng.chance(NO_SKUS) {
        &[][..]
    } else if text::is_footwear(category) {
        SHOE_SIZES
    } else {
        APPAREL_SIZES
    };
    let skus = sizes.len();
    let swap = (skus >= 2 && rng.chance(SWAPPED_IDS)).then(|| rng.below(skus as u32 - 1) as usize);
    let photos = rng.range(0, skus as u32) as usize;
    let (sku_extra, photo_extra) = if with_dirt {
        let sku_extra = extra(rng, skus as u32, SKU_EXTRAS);
        // A dirt photo takes the next unused id of the style's sku ids.
        let photo_extra = extra(rng, photos as u32, PHOTO_EXTRAS).filter(|_| photos < skus);
        (sku_extra, photo_extra)
    } else {
        (None, None)
    };
    StylePlan {
        genuine: genuine_id,
        genuine_children,
        sizes,
        swap,
        photos,
        sku_extra,
        photo_extra,
    }
}

/// The dirt row, if any, added after a group of `rows` rows.
fn extra(rng: &mut Rand, rows: u32, rates: &[(Extra, u32)]) -> Option<Extra> {
    let draw = rng.below(1_000_000);
    let mut bound = 0;
    for &(kind, rate) in rates {
        bound += rate * rows;
        if draw < bound {
            return Some(kind);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_reproducible() {
        let first = plan(5, 5000, 2);
        let again = plan(5, 5000, 2);
        assert_eq!(first.ids, again.ids);
        assert_eq!(first.products.len(), CHUNK_PRODUCTS as usize);
        assert_ne!(first.ids, plan(6, 5000, 2).ids);
    }

    #[test]
    fn the_first_chunk_holds_the_genuine_products() {
        let plan = plan(1, 3000, 0);
        let product = |id: u32| &plan.products[(id - 1) as usize];
        assert_eq!(product(1).styles.len(), 6);
        assert_eq!(product(11).styles.len(), 0, "product 11 has no styles");
        assert_eq!(
            product(1).related,
            0,
            "product 1 has its genuine related rows"
        );
        let styles_of_10 = &plan.styles[product(10).styles.clone()];
        assert!(styles_of_10.iter().all(|style| !style.genuine_children));
        assert!(plan.styles[0].genuine_children);
        assert_eq!(plan.styles[0].genuine, Some(1));
    }

    #[test]
    fn swapped_ids_stay_a_permutation() {
        let style = StylePlan {
            genuine: None,
            genuine_children: false,
            sizes: APPAREL_SIZES,
            swap: Some(0),
            photos: 2,
            sku_extra: None,
            photo_extra: None,
        };
        let ids: Vec<u64> = (0..6).map(|position| style.sku_id(7, position)).collect();
        assert_eq!(ids, [8, 7, 9, 10, 11, 12]);
    }
}
