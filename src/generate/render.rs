//! The rows of one chunk, file by file, from its plan: generated text and numbers, the
//! genuine rows of products 1–11, and the dirt.
//!
//! Every dirt decision is drawn whether the catalog is clean or not, and a clean
//! catalog only leaves the dirt out. So the clean catalog is exactly what a loader
//! should make of the dirty one: repaired rows equal their clean rows, and rejected
//! rows are absent from it (their ids are gaps).

use super::genuine::Genuine;
use super::images::{Image, Images};
use super::plan::{ChunkPlan, Extra, Ids, MAX_RELATED, ProductPlan, StylePlan};
use super::rng::{Rand, Stream};
use super::row::{Junk, Row, push_int};
use super::text;
use crate::catalog::{FileKind, PerFile, Variant};

/// Junk around numbers comes in cohorts of neighbouring products: in a few cohorts
/// (per million), a share of the rows (per million) carry it.
const COHORT_PRODUCTS: u32 = 64;
const JUNK_COHORTS: u32 = 20_000;
const JUNK_ROWS_IN_COHORT: u32 = 250_000;

/// Shares of generated rows, per million.
const HAS_DEFAULT_STYLE: u32 = 970_000;
const OTHER_ORIGINAL_PRICE: u32 = 100_000;
const ON_SALE: u32 = 110_000;
const DUPLICATE_SIZE: u32 = 20_000;
const DUPLICATE_RELATED: u32 = 30_000;
const SELF_RELATED: u32 = 15_000;

/// Dirt of photo lines, per million lines.
const MISSING_QUOTE: u32 = 35_000;
const STRAY_QUOTE: u32 = 1_000;
const NEWLINE_IN_URL: u32 = 500;
const DUPLICATE_PHOTO: u32 = 2_000;

/// What every chunk of one catalog shares.
pub(super) struct Catalog<'a> {
    pub seed: u64,
    pub products: u32,
    pub clean: bool,
    /// The field layout of the files.
    pub variant: Variant,
    pub genuine: &'static Genuine,
    pub images: &'a Images,
    /// The first ids past every row: ids from there on name no row.
    pub ends: Ids,
}

impl Catalog<'_> {
    fn missing_product(&self, rng: &mut Rand) -> u64 {
        self.ends.extra_product + u64::from(rng.below(1000))
    }

    fn missing_style(&self, rng: &mut Rand) -> u64 {
        self.ends.style + u64::from(rng.below(1000))
    }

    fn rng(&self, chunk: u32, stream: Stream) -> Rand {
        Rand::new(self.seed, chunk, stream)
    }
}

/// The rows of one chunk: the bytes and the number of rows for each file, in the
/// order product, styles, features, photos, skus, related.
pub(super) struct Rendered {
    pub files: PerFile<Vec<u8>>,
    pub rows: PerFile<u64>,
}

/// Renders chunk `chunk` from its plan, its ids starting at `starts`.
pub(super) fn chunk(catalog: &Catalog, plan: &ChunkPlan, chunk: u32, starts: Ids) -> Rendered {
    let products = plan.products.len();
    let skus: usize = plan.styles.iter().map(|style| style.sizes.len()).sum();
    let photos: usize = plan.styles.iter().map(|style| style.photos).sum();
    let mut files = [
        Vec::with_capacity(products * 300),
        Vec::with_capacity(plan.styles.len() * 45),
        Vec::with_capacity(products * 100),
        Vec::with_capacity(photos * 280),
        Vec::with_capacity(skus * 30),
        Vec::with_capacity(products * 120),
    ];
    let [
        product_out,
        styles_out,
        features_out,
        photos_out,
        skus_out,
        related_out,
    ] = &mut files;
    let rows = PerFile([
        product_rows(catalog, plan, chunk, starts, product_out),
        style_rows(catalog, plan, chunk, starts, styles_out),
        feature_rows(catalog, plan, chunk, starts, features_out),
        photo_rows(catalog, plan, chunk, starts, photos_out),
        sku_rows(catalog, plan, chunk, starts, skus_out),
        related_rows(catalog, plan, chunk, starts, related_out),
    ]);
    Rendered {
        files: PerFile(files),
        rows,
    }
}

fn product_rows(
    catalog: &Catalog,
    plan: &ChunkPlan,
    chunk: u32,
    starts: Ids,
    out: &mut Vec<u8>,
) -> u64 {
    let rng = &mut catalog.rng(chunk, Stream::Product);
    let separator = FileKind::Product.separator(catalog.variant);
    let mut cohorts = Cohorts::new();
    let mut extra_id = starts.extra_product;
    let mut rows = 0;
    for product in &plan.products {
        rows += 1;
        if product.genuine() {
            let row = &catalog.genuine.products[(product.id - 1) as usize];
            Row::start(out, separator)
                .int(u64::from(row.id))
                .text(&row.name)
                .text(&row.slogan)
                .text(&row.description)
                .text(&row.category)
                .int(row.default_price);
            continue;
        }
        let junk = cohorts.junk(rng, product.id).filter(|_| !catalog.clean);
        Row::start(out, separator)
            .int(u64::from(product.id))
            .text_with(|out| text::product_name(rng, product.category, out))
            .text_with(|out| text::slogan(rng, out))
            .text_with(|out| text::description(rng, out))
            .text(product.category)
            .number(product.default_price, "default_price", junk);
        if product.wrong_fields {
            dirt_row(out, catalog.clean, &mut rows, |out| {
                let mut row = Row::start(out, separator);
                row.int(extra_id)
                    .text_with(|out| text::product_name(rng, product.category, out))
                    .text_with(|out| text::slogan(rng, out))
                    .text_with(|out| text::description(rng, out))
                    .text(product.category);
                // Either the price is missing, or it comes twice.
                if rng.chance(500_000) {
                    row.int(product.default_price).int(product.default_price);
                }
            });
            extra_id += 1;
        }
    }
    rows
}

fn style_rows(
    catalog: &Catalog,
    plan: &ChunkPlan,
    chunk: u32,
    starts: Ids,
    out: &mut Vec<u8>,
) -> u64 {
    let rng = &mut catalog.rng(chunk, Stream::Styles);
    let separator = FileKind::Styles.separator(catalog.variant);
    let mut cohorts = Cohorts::new();
    let mut next_id = starts.style;
    let mut rows = 0;
    for product in &plan.products {
        if product.genuine() {
            for row in catalog
                .genuine
                .styles
                .iter()
                .filter(|row| row.product_id == product.id)
            {
                Row::start(out, separator)
                    .int(u64::from(row.id))
                    .int(u64::from(row.product_id))
                    .text(&row.name)
                    .int_or_null(row.sale_price)
                    .int(row.original_price)
                    .int(u64::from(row.default_style));
                rows += 1;
            }
            continue;
        }
        let price = product.default_price;
        let has_default = rng.chance(HAS_DEFAULT_STYLE);
        for position in 0..product.styles.len() {
            let name = text::color(rng);
            let original = if rng.chance(OTHER_ORIGINAL_PRICE) {
                u64::from(rng.range((price / 2).max(1) as u32, (price + price / 2) as u32))
            } else {
                price
            };
            let sale = (original >= 2 && rng.chance(ON_SALE))
                .then(|| u64::from(rng.range(1, original as u32 - 1)));
            let junk = cohorts.junk(rng, product.id);
            let junk_on_sale = junk.is_some() && sale.is_some() && rng.chance(500_000);
            let junk = junk.filter(|_| !catalog.clean);
            let mut row = Row::start(out, separator);
            row.int(next_id).int(u64::from(product.id)).text(name);
            match sale {
                Some(sale) if junk_on_sale => {
                    row.number(sale, "sale_price", junk)
                        .number(original, "original_price", None)
                }
                _ => row
                    .int_or_null(sale)
                    .number(original, "original_price", junk),
            };
            row.int(u64::from(has_default && position == 0));
            next_id += 1;
            rows += 1;
        }
        if let Some(extra) = product.style_extra {
            dirt_row(out, catalog.clean, &mut rows, |out| {
                let name = text::color(rng);
                let mut row = Row::start(out, separator);
                row.int(next_id);
                match extra {
                    Extra::WrongFields => {
                        row.int(u64::from(product.id))
                            .text(name)
                            .raw(b"null")
                            .int(price);
                        if rng.chance(500_000) {
                            row.int(0).int(0);
                        }
                    }
                    _ => {
                        row.int(catalog.missing_product(rng))
                            .text(name)
                            .raw(b"null")
                            .int(price)
                            .int(0);
                    }
                }
            });
            next_id += 1;
        }
    }
    rows
}

fn feature_rows(
    catalog: &Catalog,
    plan: &ChunkPlan,
    chunk: u32,
    starts: Ids,
    out: &mut Vec<u8>,
) -> u64 {
    let rng = &mut catalog.rng(chunk, Stream::Features);
    let separator = FileKind::Features.separator(catalog.variant);
    let mut next_id = starts.feature;
    let mut rows = 0;
    for product in &plan.products {
        if product.genuine() {
            for row in catalog
                .genuine
                .features
                .iter()
                .filter(|row| row.product_id == product.id)
            {
                Row::start(out, separator)
                    .int(u64::from(row.id))
                    .int(u64::from(row.product_id))
                    .text(&row.feature)
                    .text_or_null(row.value.as_deref());
                rows += 1;
            }
            continue;
        }
        for _ in 0..product.features {
            let (name, value) = text::feature(rng);
            Row::start(out, separator)
                .int(next_id)
                .int(u64::from(product.id))
                .text(name)
                .text_or_null(value);
            next_id += 1;
            rows += 1;
        }
        if let Some(extra) = product.feature_extra {
            dirt_row(out, catalog.clean, &mut rows, |out| {
                let (name, value) = text::feature(rng);
                let mut row = Row::start(out, separator);
                row.int(next_id);
                match extra {
                    Extra::WrongFields => {
                        row.int(u64::from(product.id)).text(name);
                        if rng.chance(500_000) {
                            row.text_or_null(value).text_or_null(value);
                        }
                    }
                    _ => {
                        row.int(catalog.missing_product(rng))
                            .text(name)
                            .text_or_null(value);
                    }
                }
            });
            next_id += 1;
        }
    }
    rows
}

fn photo_rows(
    catalog: &Catalog,
    plan: &ChunkPlan,
    chunk: u32,
    starts: Ids,
    out: &mut Vec<u8>,
) -> u64 {
    let rng = &mut catalog.rng(chunk, Stream::Photos);
    let mut rows = 0;
    walk_styles(plan, starts, |_, style, ids| {
        if style.genuine_children {
            for photo in catalog
                .genuine
                .photos
                .iter()
                .filter(|photo| u64::from(photo.style_id) == ids.style)
            {
                out.push(b'\n');
                out.extend_from_slice(photo.line.as_bytes());
                if catalog.clean && !photo.line.ends_with('"') {
                    out.push(b'"');
                }
                rows += 1;
            }
            return;
        }
        for position in 0..style.photos {
            let image = catalog.images.pick(rng);
            let dirt = PhotoDirt::draw(rng, image).filter(|_| !catalog.clean);
            let id = style.sku_id(ids.first_sku, position);
            write_photo(out, id, ids.style, image, dirt);
            rows += 1 + u64::from(dirt == Some(PhotoDirt::Duplicate));
        }
        if let Some(extra) = style.photo_extra {
            let id = style.sku_id(ids.first_sku, style.photos);
            dirt_row(out, catalog.clean, &mut rows, |out| {
                let image = catalog.images.pick(rng);
                match extra {
                    Extra::WrongFields => {
                        out.push(b'\n');
                        push_int(out, id);
                        out.push(b',');
                        push_int(out, ids.style);
                        out.push(b',');
                        // Either the thumbnail is missing, or the url comes twice.
                        let url = &image.fields[..image.urls[0].end + 1];
                        out.extend_from_slice(url);
                        if rng.chance(500_000) {
                            out.push(b',');
                            out.extend_from_slice(&image.fields);
                        }
                    }
                    _ => write_photo(out, id, catalog.missing_style(rng), image, None),
                }
            });
        }
    });
    rows
}

fn sku_rows(
    catalog: &Catalog,
    plan: &ChunkPlan,
    chunk: u32,
    starts: Ids,
    out: &mut Vec<u8>,
) -> u64 {
    let rng = &mut catalog.rng(chunk, Stream::Skus);
    let separator = FileKind::Skus.separator(catalog.variant);
    let mut cohorts = Cohorts::new();
    let mut rows = 0;
    walk_styles(plan, starts, |product, style, ids| {
        if style.genuine_children {
            for row in catalog
                .genuine
                .skus
                .iter()
                .filter(|row| u64::from(row.style_id) == ids.style)
            {
                Row::start(out, separator)
                    .int(u64::from(row.id))
                    .int(u64::from(row.style_id))
                    .text(&row.size)
                    .int(row.quantity);
                rows += 1;
            }
            return;
        }
        let sizes = style.sizes;
        let duplicate = (sizes.len() >= 2 && rng.chance(DUPLICATE_SIZE))
            .then(|| rng.range(1, sizes.len() as u32 - 1) as usize);
        for position in 0..sizes.len() {
            // A duplicated size repeats the one before it, as style 1's two "XL".
            let size = sizes[position - usize::from(duplicate == Some(position))];
            let quantity = u64::from(rng.range(2, 59));
            let junk = cohorts.junk(rng, product.id).filter(|_| !catalog.clean);
            Row::start(out, separator)
                .int(style.sku_id(ids.first_sku, position))
                .int(ids.style)
                .text(size)
                .number(quantity, "quantity", junk);
            rows += 1;
        }
        if let Some(extra) = style.sku_extra {
            dirt_row(out, catalog.clean, &mut rows, |out| {
                let size = rng.pick(sizes);
                let quantity = u64::from(rng.range(2, 59));
                let mut row = Row::start(out, separator);
                row.int(ids.first_sku + sizes.len() as u64);
                match extra {
                    Extra::WrongFields => {
                        row.int(ids.style).text(size);
                        if rng.chance(500_000) {
                            row.int(quantity).int(quantity);
                        }
                    }
                    _ => {
                        row.int(catalog.missing_style(rng)).text(size).int(quantity);
                    }
                }
            });
        }
    });
    rows
}

fn related_rows(
    catalog: &Catalog,
    plan: &ChunkPlan,
    chunk: u32,
    starts: Ids,
    out: &mut Vec<u8>,
) -> u64 {
    let rng = &mut catalog.rng(chunk, Stream::Related);
    let separator = FileKind::Related.separator(catalog.variant);
    let products = u64::from(catalog.products);
    let mut next_id = starts.related;
    let mut rows = 0;
    for product in &plan.products {
        let id = u64::from(product.id);
        if product.genuine() {
            // Related rows pointing past a small catalog would be orphans: left out.
            for row in catalog
                .genuine
                .related
                .iter()
                .filter(|row| row.current == product.id && u64::from(row.related) <= products)
            {
                Row::start(out, separator)
                    .int(u64::from(row.id))
                    .int(u64::from(row.current))
                    .int(u64::from(row.related));
                rows += 1;
            }
        }
        let mut targets = [0u64; MAX_RELATED as usize];
        for index in 0..product.related as usize {
            let target = if index > 0 && rng.chance(DUPLICATE_RELATED) {
                targets[rng.below(index as u32) as usize]
            } else if rng.chance(SELF_RELATED) {
                id
            } else {
                u64::from(rng.range(1, catalog.products))
            };
            targets[index] = target;
            Row::start(out, separator).int(next_id).int(id).int(target);
            next_id += 1;
            rows += 1;
        }
        if let Some(extra) = product.related_extra {
            dirt_row(out, catalog.clean, &mut rows, |out| {
                let target = u64::from(rng.range(1, catalog.products));
                let mut row = Row::start(out, separator);
                row.int(next_id);
                match extra {
                    Extra::ZeroRelated => {
                        row.int(id).int(0);
                    }
                    Extra::Orphan => {
                        let missing = catalog.missing_product(rng);
                        // Either side of the pair may name no product.
                        if rng.chance(500_000) {
                            row.int(missing).int(target);
                        } else {
                            row.int(id).int(missing);
                        }
                    }
                    Extra::WrongFields => {
                        row.int(id);
                        if rng.chance(500_000) {
                            row.int(target).int(target);
                        }
                    }
                }
            });
            next_id += 1;
        }
    }
    rows
}

/// The ids of one style as the files use them.
#[derive(Clone, Copy)]
struct StyleIds {
    style: u64,
    /// The first of the style's sku ids; its photos take their ids from them too.
    first_sku: u64,
}

/// Visits the styles of a chunk in file order, with their ids.
fn walk_styles(
    plan: &ChunkPlan,
    starts: Ids,
    mut visit: impl FnMut(&ProductPlan, &StylePlan, StyleIds),
) {
    let mut next_style = starts.style;
    let mut next_sku = starts.sku;
    for product in &plan.products {
        for style in &plan.styles[product.styles.clone()] {
            let id = match style.genuine {
                Some(id) => u64::from(id),
                None => {
                    next_style += 1;
                    next_style - 1
                }
            };
            visit(
                product,
                style,
                StyleIds {
                    style: id,
                    first_sku: next_sku,
                },
            );
            if !style.genuine_children {
                next_sku += style.sizes.len() as u64 + u64::from(style.sku_extra.is_some());
            }
        }
        next_style += u64::from(product.style_extra.is_some());
    }
}

/// Appends a dirt row made by `write` and counts it, or, in a clean catalog, leaves
/// it out; the random draws it makes happen either way.
fn dirt_row(out: &mut Vec<u8>, clean: bool, rows: &mut u64, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    write(out);
    if clean {
        out.truncate(start);
    } else {
        *rows += 1;
    }
}

/// Whether the rows of a product, in the order a file visits them, get junk around a
/// number; each file keeps its own.
struct Cohorts {
    cohort: u32,
    active: bool,
}

impl Cohorts {
    fn new() -> Cohorts {
        Cohorts {
            cohort: u32::MAX,
            active: false,
        }
    }

    /// The junk, if any, around the next number of a row of product `product`.
    fn junk(&mut self, rng: &mut Rand, product: u32) -> Option<Junk> {
        let cohort = (product - 1) / COHORT_PRODUCTS;
        if cohort != self.cohort {
            self.cohort = cohort;
            self.active = rng.chance(JUNK_COHORTS);
        }
        (self.active && rng.chance(JUNK_ROWS_IN_COHORT)).then(|| *rng.pick(&Junk::ALL))
    }
}

/// What can be wrong with a photo line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhotoDirt {
    /// The thumbnail's closing quote is missing.
    MissingQuote,
    /// A stray byte (`"` or a newline) inside one of the URLs, at this offset of the
    /// image's fields.
    Inserted { at: usize, byte: u8 },
    /// The line comes twice.
    Duplicate,
}

impl PhotoDirt {
    fn draw(rng: &mut Rand, image: &Image) -> Option<PhotoDirt> {
        let inserted = |rng: &mut Rand, byte| {
            let url = &image.urls[rng.below(2) as usize];
            let at = rng.range(url.start as u32 + 1, url.end as u32 - 1) as usize;
            PhotoDirt::Inserted { at, byte }
        };
        let draw = rng.below(1_000_000);
        if draw < MISSING_QUOTE {
            Some(PhotoDirt::MissingQuote)
        } else if draw < MISSING_QUOTE + STRAY_QUOTE {
            Some(inserted(rng, b'"'))
        } else if draw < MISSING_QUOTE + STRAY_QUOTE + NEWLINE_IN_URL {
            Some(inserted(rng, b'\n'))
        } else if draw < MISSING_QUOTE + STRAY_QUOTE + NEWLINE_IN_URL + DUPLICATE_PHOTO {
            Some(PhotoDirt::Duplicate)
        } else {
            None
        }
    }
}

fn write_photo(out: &mut Vec<u8>, id: u64, style: u64, image: &Image, dirt: Option<PhotoDirt>) {
    let start = out.len();
    out.push(b'\n');
    push_int(out, id);
    out.push(b',');
    push_int(out, style);
    out.push(b',');
    let fields = &image.fields;
    match dirt {
        Some(PhotoDirt::MissingQuote) => out.extend_from_slice(&fields[..fields.len() - 1]),
        Some(PhotoDirt::Inserted { at, byte }) => {
            out.extend_from_slice(&fields[..at]);
            out.push(byte);
            out.extend_from_slice(&fields[at..]);
        }
        None | Some(PhotoDirt::Duplicate) => out.extend_from_slice(fields),
    }
    if dirt == Some(PhotoDirt::Duplicate) {
        out.extend_from_within(start..);
    }
}
