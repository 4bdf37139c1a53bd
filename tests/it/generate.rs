//! Tests of `generate`: determinism, the real formats of both layouts, the dataset's
//! shape, the genuine rows of products 1–11, and the dirt: absent from a clean catalog,
//! present at plausible rates otherwise, and such that repairing and rejecting it by
//! the rules of docs/data.md gives back the clean catalog.

use std::collections::{HashMap, HashSet};

use atelier::catalog::FILE_NAMES;
use atelier::catalog::Variant;
use atelier::generate::Spec;
use atelier::generate::generate;

use crate::support;

const PRODUCT: usize = 0;
const STYLES: usize = 1;
const FEATURES: usize = 2;
const PHOTOS: usize = 3;
const SKUS: usize = 4;
const RELATED: usize = 5;

const COMPACT_HEADERS: [&str; 6] = [
    "id,name,slogan,description,category,default_price",
    "id,productId,name,sale_price,original_price,default_style",
    "id,product_id,feature,value",
    "id,styleId,url,thumbnail_url",
    "id,styleId,size,quantity",
    "id,current_product_id,related_product_id",
];

const SPACED_HEADERS: [&str; 6] = [
    "id, name, slogan, description, category, default_price",
    "id, product_id, name, sale_price, original_price, default_style",
    "id, product_id, feature, value",
    "id,style_id,url,thumbnail_url",
    "id, style_id, size, quantity",
    "id, current_product_id, related_product_id",
];

/// What a field may hold.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    IntOrNull,
    TextOrNull,
    Flag,
}

const SCHEMAS: [&[Kind]; 6] = [
    &[
        Kind::Int,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Int,
    ],
    &[
        Kind::Int,
        Kind::Int,
        Kind::Text,
        Kind::IntOrNull,
        Kind::Int,
        Kind::Flag,
    ],
    &[Kind::Int, Kind::Int, Kind::Text, Kind::TextOrNull],
    &[Kind::Int, Kind::Int, Kind::Text, Kind::Text],
    &[Kind::Int, Kind::Int, Kind::Text, Kind::Int],
    &[Kind::Int, Kind::Int, Kind::Int],
];

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(u64),
    Text(String),
    Null,
}

impl Value {
    fn int(&self) -> u64 {
        match self {
            Value::Int(value) => *value,
            other => panic!("{other:?} is not an integer"),
        }
    }

    fn text(&self) -> &str {
        match self {
            Value::Text(text) => text,
            other => panic!("{other:?} is not text"),
        }
    }
}

/// A generated catalog, read back.
struct Catalog {
    files: Vec<String>,
    spaced: bool,
    _dir: tempfile::TempDir,
}

impl Catalog {
    fn generate(products: u32, seed: u64, clean: bool, variant: Variant) -> Catalog {
        let dir = tempfile::tempdir().unwrap();
        let args = Spec {
            products,
            seed,
            out: dir.path().to_path_buf(),
            clean,
            variant,
        };
        let report = generate(&args, false).unwrap();
        assert_eq!(report.files.len(), 6);
        let files = FILE_NAMES
            .iter()
            .map(|name| std::fs::read_to_string(dir.path().join(name)).unwrap())
            .collect();
        Catalog {
            files,
            spaced: variant == Variant::Spaced,
            _dir: dir,
        }
    }

    fn separator(&self, file: usize) -> &'static str {
        if self.spaced && file != PHOTOS {
            ", "
        } else {
            ","
        }
    }

    fn header(&self, file: usize) -> &str {
        self.files[file].split('\n').next().unwrap()
    }

    /// The lines after the header.
    fn lines(&self, file: usize) -> Vec<&str> {
        self.files[file].split('\n').skip(1).collect()
    }

    /// Every row of `file`, which must all be well formed.
    fn rows(&self, file: usize) -> Vec<Vec<Value>> {
        self.lines(file)
            .into_iter()
            .map(|line| {
                parse(line, self.separator(file), SCHEMAS[file])
                    .unwrap_or_else(|| panic!("{}: malformed line {line:?}", FILE_NAMES[file]))
            })
            .collect()
    }
}

/// The fields of `line` if it is exactly a row of `schema`: fields joined by
/// `separator`, each an unsigned integer, a bare `null`, or quoted text without quotes
/// inside.
fn parse(line: &str, separator: &str, schema: &[Kind]) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    let mut rest = line;
    loop {
        let (value, after) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (Value::Text(quoted[..end].to_string()), &quoted[end + 1..])
            }
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                let token = &rest[..end];
                let value = if token == "null" {
                    Value::Null
                } else if !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_digit()) {
                    Value::Int(token.parse().ok()?)
                } else {
                    return None;
                };
                (value, &rest[end..])
            }
        };
        values.push(value);
        if after.is_empty() {
            break;
        }
        rest = after.strip_prefix(separator)?;
    }
    let fits = values.len() == schema.len()
        && values
            .iter()
            .zip(schema)
            .all(|(value, kind)| match (kind, value) {
                (Kind::Int, Value::Int(_)) | (Kind::Text, Value::Text(_)) => true,
                (Kind::IntOrNull, Value::Int(_) | Value::Null) => true,
                (Kind::TextOrNull, Value::Text(_) | Value::Null) => true,
                (Kind::Flag, Value::Int(flag)) => *flag <= 1,
                _ => false,
            });
    fits.then_some(values)
}

fn mean(values: impl IntoIterator<Item = usize>) -> f64 {
    let values: Vec<usize> = values.into_iter().collect();
    values.iter().sum::<usize>() as f64 / values.len() as f64
}

fn counts_by<K: std::hash::Hash + Eq>(keys: impl IntoIterator<Item = K>) -> HashMap<K, usize> {
    let mut counts = HashMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let first = Catalog::generate(2100, 7, false, Variant::Compact);
    let again = Catalog::generate(2100, 7, false, Variant::Compact);
    let other = Catalog::generate(2100, 8, false, Variant::Compact);
    assert!(
        first.files == again.files,
        "same arguments, different bytes"
    );
    for file in [PRODUCT, STYLES, FEATURES, PHOTOS, SKUS, RELATED] {
        assert_ne!(first.files[file], other.files[file], "{}", FILE_NAMES[file]);
    }
}

#[test]
fn both_layouts_have_the_real_headers_and_row_formats() {
    for (variant, headers) in [
        (Variant::Compact, COMPACT_HEADERS),
        (Variant::Spaced, SPACED_HEADERS),
    ] {
        let catalog = Catalog::generate(1500, 1, true, variant);
        for file in 0..6 {
            assert_eq!(catalog.header(file), headers[file]);
            let text = &catalog.files[file];
            assert!(
                !text.ends_with('\n'),
                "{} ends without a newline",
                FILE_NAMES[file]
            );
            assert!(!text.contains('\r') && !text.starts_with('\u{feff}'));
            assert!(catalog.lines(file).len() > 1000, "{}", FILE_NAMES[file]);
            // Every line matches its file's format (rows() panics on one that does not).
            catalog.rows(file);
        }
        assert_eq!(catalog.rows(PRODUCT).len(), 1500);
        let sku = catalog.lines(SKUS)[3000];
        assert_eq!(sku.contains(", "), variant == Variant::Spaced, "{sku}");
        assert!(
            !catalog.lines(PHOTOS)[500].contains(", "),
            "photos.csv stays compact"
        );
    }
}

#[test]
fn a_catalog_has_the_shape_of_the_dataset() {
    let products = 5000;
    let catalog = Catalog::generate(products, 1, true, Variant::Compact);
    let product_rows = catalog.rows(PRODUCT);
    let style_rows = catalog.rows(STYLES);
    let feature_rows = catalog.rows(FEATURES);
    let photo_rows = catalog.rows(PHOTOS);
    let sku_rows = catalog.rows(SKUS);
    let related_rows = catalog.rows(RELATED);
    let generated = |id: u64| id > 11;

    // Products: ids 1..=N in order; texts, categories and prices as in the dataset.
    let ids: Vec<u64> = product_rows.iter().map(|row| row[0].int()).collect();
    assert_eq!(ids, (1..=u64::from(products)).collect::<Vec<_>>());
    let categories = [
        "Pants",
        "Sweatpants",
        "Suit",
        "Shirt",
        "Tank Top",
        "Skirt",
        "Shorts",
        "Coat",
        "Trousers",
        "Backpack",
        "Dress",
        "Socks",
        "Romper",
        "Boots",
        "Shoes",
        "Sweater",
        "Sunglasses",
        "Jacket",
        "Heels",
        "Hat",
        "Cap",
        "Hoodie",
        "Slacks",
    ];
    let mut descriptions = Vec::new();
    for row in product_rows.iter().filter(|row| generated(row[0].int())) {
        let (name, slogan, description) = (row[1].text(), row[2].text(), row[3].text());
        assert!((9..=24).contains(&name.len()), "name {name:?}");
        assert!((11..=85).contains(&slogan.len()), "slogan {slogan:?}");
        assert!(
            (55..=381).contains(&description.len()),
            "description {description:?}"
        );
        assert!(categories.contains(&row[4].text()) && name.ends_with(row[4].text()));
        assert!((1..=1000).contains(&row[5].int()));
        descriptions.push(description.len());
    }
    descriptions.sort_unstable();
    let median = descriptions[descriptions.len() / 2];
    assert!((170..=230).contains(&median), "median description {median}");
    let double_spaced = product_rows
        .iter()
        .filter(|row| row[3].text().contains("  "))
        .count();
    assert!(double_spaced > 10, "double spaces occur ({double_spaced})");

    // Styles: about 4.66 per product, up to 9; a fifth of early products without any.
    let styles_of = counts_by(style_rows.iter().map(|row| row[1].int()));
    let per_product: Vec<usize> = (1..=u64::from(products))
        .map(|id| styles_of.get(&id).copied().unwrap_or(0))
        .collect();
    let styles_mean = mean(per_product.iter().copied());
    assert!(
        (4.3..=5.0).contains(&styles_mean),
        "styles per product {styles_mean}"
    );
    assert!(per_product.iter().all(|&count| count <= 9));
    let early = &per_product[11..(products / 10) as usize];
    let early_without =
        early.iter().filter(|&&count| count == 0).count() as f64 / early.len() as f64;
    assert!(
        (0.14..=0.26).contains(&early_without),
        "early products without styles {early_without}"
    );
    // Exactly one default style for most products with styles, none for a few.
    let defaults = counts_by(
        style_rows
            .iter()
            .filter(|row| row[5].int() == 1)
            .map(|row| row[1].int()),
    );
    let with_styles: Vec<u64> = styles_of.keys().copied().collect();
    let without_default = with_styles
        .iter()
        .filter(|id| !defaults.contains_key(id))
        .count();
    assert!(defaults.values().all(|&count| count == 1));
    let share = without_default as f64 / with_styles.len() as f64;
    assert!(
        without_default > 0 && share < 0.1,
        "products without a default style {share}"
    );
    // Sale prices on about 11% of styles, always below the original price.
    let on_sale: Vec<_> = style_rows
        .iter()
        .filter(|row| row[3] != Value::Null)
        .collect();
    let sale_share = on_sale.len() as f64 / style_rows.len() as f64;
    assert!(
        (0.09..=0.13).contains(&sale_share),
        "styles on sale {sale_share}"
    );
    assert!(on_sale.iter().all(|row| row[3].int() < row[4].int()));

    // Skus: apparel or shoe sizes or none, about 5.8 per style; quantities 2–59.
    let apparel = ["XS", "S", "M", "L", "XL", "XXL"];
    let shoes = [
        "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "11.5", "12",
    ];
    let style_ids: HashSet<u64> = style_rows.iter().map(|row| row[0].int()).collect();
    let mut sizes_of: HashMap<u64, Vec<&str>> = HashMap::new();
    for row in &sku_rows {
        sizes_of
            .entry(row[1].int())
            .or_default()
            .push(row[2].text());
        assert!((2..=59).contains(&row[3].int()));
    }
    let skus_mean = sku_rows.len() as f64 / style_ids.len() as f64;
    assert!(
        (5.5..=6.1).contains(&skus_mean),
        "skus per style {skus_mean}"
    );
    let mut duplicate_sizes = 0;
    // The genuine styles (1–52) aside, a style has every size of one set.
    for sizes in sizes_of
        .iter()
        .filter(|(id, _)| **id > 52)
        .map(|(_, sizes)| sizes)
    {
        let set: &[&str] = if sizes.len() == 6 { &apparel } else { &shoes };
        assert_eq!(sizes.len(), set.len(), "sizes {sizes:?}");
        assert!(sizes.iter().all(|size| set.contains(size)));
        duplicate_sizes += usize::from(sizes.iter().collect::<HashSet<_>>().len() < sizes.len());
    }
    assert!(duplicate_sizes > 0, "duplicate sizes occur");
    let without_skus = style_ids
        .iter()
        .filter(|id| !sizes_of.contains_key(id))
        .count();
    assert!(without_skus > 0, "styles without skus occur");
    let swapped = sku_rows
        .windows(2)
        .filter(|pair| pair[0][0].int() > pair[1][0].int())
        .count();
    assert!(swapped > 100, "neighbouring sku ids swapped ({swapped})");

    // Photos: about 2.9 per style (0–11), Unsplash URLs and their w=300 thumbnails.
    let photos_of = counts_by(photo_rows.iter().map(|row| row[1].int()));
    let photos_mean = photo_rows.len() as f64 / style_ids.len() as f64;
    assert!(
        (2.6..=3.2).contains(&photos_mean),
        "photos per style {photos_mean}"
    );
    assert!(photos_of.values().all(|&count| count <= 11));
    assert!(
        style_ids.iter().any(|id| !photos_of.contains_key(id)),
        "styles without photos"
    );
    for row in photo_rows.iter().filter(|row| row[0].int() > 350) {
        let (url, thumbnail) = (row[2].text(), row[3].text());
        assert!(
            url.starts_with("https://images.unsplash.com/photo-"),
            "{url}"
        );
        assert!((100..=140).contains(&url.len()), "{url}");
        assert!(url.ends_with("&q=80") && thumbnail.ends_with("&w=300&q=80"));
        let image = |url: &str| url[..url.rfind("&w=").unwrap()].to_string();
        assert_eq!(image(url), image(thumbnail));
    }
    let photo_ids: Vec<u64> = photo_rows.iter().map(|row| row[0].int()).collect();
    let gaps = photo_ids
        .windows(2)
        .filter(|pair| pair[1] > pair[0] + 1)
        .count();
    assert!(gaps > 1000, "photo ids have gaps ({gaps})");

    // Features: about 2.2 per product (0–4), 46% of values null.
    let features_of = counts_by(feature_rows.iter().map(|row| row[1].int()));
    let features_mean = feature_rows.len() as f64 / f64::from(products);
    assert!(
        (2.0..=2.4).contains(&features_mean),
        "features per product {features_mean}"
    );
    assert!(features_of.values().all(|&count| count <= 4));
    let nulls = feature_rows
        .iter()
        .filter(|row| row[3] == Value::Null)
        .count();
    let null_share = nulls as f64 / feature_rows.len() as f64;
    assert!(
        (0.40..=0.52).contains(&null_share),
        "null feature values {null_share}"
    );

    // Related: about 4.5 per product, with self-references and duplicate pairs.
    let related_mean = related_rows.len() as f64 / f64::from(products);
    assert!(
        (4.2..=4.8).contains(&related_mean),
        "related per product {related_mean}"
    );
    let selves = related_rows.iter().filter(|row| row[1] == row[2]).count();
    let pairs = counts_by(related_rows.iter().map(|row| (row[1].int(), row[2].int())));
    assert!(selves > 0 && pairs.values().any(|&count| count > 1));
}

#[test]
fn products_1_to_11_are_the_genuine_rows() {
    let sample_lines = |dir: &str, file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(support::sample(dir).join(file)).unwrap();
        text.split('\n').map(str::to_string).collect()
    };
    // Compact: the sara-2023 files, header included, are where the catalog starts.
    let compact = Catalog::generate(1200, 3, false, Variant::Compact);
    for (file, name) in FILE_NAMES.iter().enumerate() {
        let sample = sample_lines("sara-2023", name);
        let generated: Vec<&str> = compact.files[file].split('\n').take(sample.len()).collect();
        assert_eq!(generated, sample, "{name} starts with sara-2023's rows");
    }
    // Spaced: the beck-2021 files, up to their rows of products 1–11.
    let spaced = Catalog::generate(1200, 3, false, Variant::Spaced);
    let clean_spaced = Catalog::generate(1200, 3, true, Variant::Spaced);
    for (file, rows) in [
        (PRODUCT, 11),
        (STYLES, 52),
        (FEATURES, 30),
        (PHOTOS, 287),
        (SKUS, 350),
    ] {
        let sample = &sample_lines("beck-2021", FILE_NAMES[file])[..=rows];
        let generated: Vec<&str> = spaced.files[file].split('\n').take(rows + 1).collect();
        assert_eq!(
            generated, sample,
            "{} starts with beck-2021's rows",
            FILE_NAMES[file]
        );
        // A clean catalog closes the genuine photo lines' missing quotes, nothing else.
        let clean: Vec<&str> = clean_spaced.files[file]
            .split('\n')
            .take(rows + 1)
            .collect();
        for (clean, genuine) in clean.iter().zip(sample).skip(1) {
            let closed = if file == PHOTOS && !genuine.ends_with('"') {
                format!("{genuine}\"")
            } else {
                genuine.clone()
            };
            assert_eq!(*clean, closed);
        }
    }
    // Product 11 has no styles, and product 1's related rows are the known answer.
    let styles = clean_spaced.rows(STYLES);
    assert!(styles.iter().all(|row| row[1].int() != 11));
    let related_of_1: Vec<u64> = clean_spaced
        .rows(RELATED)
        .iter()
        .filter(|row| row[1].int() == 1)
        .map(|row| row[2].int())
        .collect();
    assert_eq!(related_of_1, [2, 3, 8, 7]);
}

#[test]
fn a_clean_catalog_loads_without_repairs_or_rejects() {
    for variant in [Variant::Compact, Variant::Spaced] {
        let catalog = Catalog::generate(6000, 5, true, variant);
        let loaded = load(&catalog);
        assert!(
            loaded.repaired.is_empty(),
            "{variant:?} repairs: {:?}",
            loaded.repaired
        );
        assert!(
            loaded.rejected.is_empty(),
            "{variant:?} rejects: {:?}",
            loaded.rejected
        );
        for (file, name) in FILE_NAMES.iter().enumerate() {
            assert_eq!(loaded.rows[file].len(), catalog.lines(file).len(), "{name}");
        }
    }
}

#[test]
fn a_dirty_catalog_has_each_kind_of_dirt_at_plausible_rates() {
    let catalog = Catalog::generate(8000, 5, false, Variant::Compact);
    let loaded = load(&catalog);
    let (repaired, rejected) = (&loaded.repaired, &loaded.rejected);
    let rate = |found: usize, of: usize| found as f64 / of as f64;
    let photo_lines = catalog.lines(PHOTOS).len();

    let missing_quotes = rate(
        Loaded::count(repaired, "photos.csv: closing quote"),
        photo_lines,
    );
    assert!(
        (0.025..=0.045).contains(&missing_quotes),
        "missing closing quotes {missing_quotes}"
    );
    let newlines = Loaded::count(repaired, "photos.csv: newline in url");
    assert!((5..=200).contains(&newlines), "newlines in urls {newlines}");
    let stray_quotes = Loaded::count(repaired, "photos.csv: stray quote");
    assert!(
        (10..=300).contains(&stray_quotes),
        "stray quotes {stray_quotes}"
    );
    let duplicates = rate(
        Loaded::count(rejected, "photos.csv: duplicate id"),
        photo_lines,
    );
    assert!(
        (0.0005..=0.005).contains(&duplicates),
        "duplicate photo rows {duplicates}"
    );

    let zeros = rate(
        Loaded::count(rejected, "related.csv: related id 0"),
        catalog.lines(RELATED).len(),
    );
    assert!(
        (0.0001..=0.001).contains(&zeros),
        "related rows pointing at 0 {zeros}"
    );

    let all_rows: usize = (0..6).map(|file| catalog.lines(file).len()).sum();
    let orphans = Loaded::total(rejected, "orphan");
    assert!(
        (0.00005..=0.001).contains(&rate(orphans, all_rows)),
        "{orphans} orphans"
    );
    let malformed = Loaded::total(rejected, "wrong fields");
    assert!(
        (3..=200).contains(&malformed),
        "{malformed} rows with a wrong field count"
    );

    let junk = Loaded::total(repaired, "junk");
    let with_numbers = [PRODUCT, STYLES, SKUS]
        .iter()
        .map(|&file| catalog.lines(file).len())
        .sum();
    assert!(
        (0.0005..=0.02).contains(&rate(junk, with_numbers)),
        "{junk} numbers with junk"
    );
    let labels = catalog.files[PRODUCT].matches(",default_price:").count()
        + catalog.files[STYLES].matches("_price:").count()
        + catalog.files[SKUS].matches(",quantity:").count();
    assert!(labels > 0, "junk like default_price:140 occurs");
}

#[test]
fn a_repaired_dirty_catalog_is_the_clean_catalog() {
    for variant in [Variant::Compact, Variant::Spaced] {
        let dirty = load(&Catalog::generate(6000, 11, false, variant));
        let clean = Catalog::generate(6000, 11, true, variant);
        assert!(!dirty.repaired.is_empty() && !dirty.rejected.is_empty());
        for (file, name) in FILE_NAMES.iter().enumerate() {
            let expected = clean.lines(file);
            assert_eq!(dirty.rows[file].len(), expected.len(), "{variant:?} {name}");
            for (row, line) in dirty.rows[file].iter().zip(expected) {
                assert_eq!(row, line, "{variant:?} {name}");
            }
        }
    }
}

/// What loading a catalog by the rules of docs/data.md keeps, repairs and rejects.
struct Loaded {
    /// The rows kept, as lines of the catalog's layout.
    rows: Vec<Vec<String>>,
    /// Repairs and rejects by kind: `"<file>: <what>"`.
    repaired: HashMap<String, usize>,
    rejected: HashMap<String, usize>,
}

impl Loaded {
    fn count(counts: &HashMap<String, usize>, kind: &str) -> usize {
        counts.get(kind).copied().unwrap_or(0)
    }

    /// The number of rejects or repairs whose kind ends with `what`, over all files.
    fn total(counts: &HashMap<String, usize>, what: &str) -> usize {
        counts
            .iter()
            .filter(|(kind, _)| kind.ends_with(what))
            .map(|(_, count)| count)
            .sum()
    }
}

fn tally(counts: &mut HashMap<String, usize>, file: usize, what: &str) {
    *counts
        .entry(format!("{}: {what}", FILE_NAMES[file]))
        .or_insert(0) += 1;
}

/// Loads `catalog` the way docs/data.md tells the loader to: photo records end at a newline
/// when the next line starts a record, stray quotes and newlines in URLs go, junk
/// around a number goes when one integer remains; duplicate ids, orphans, related id
/// 0 and rows with the wrong number of fields are rejected.
fn load(catalog: &Catalog) -> Loaded {
    let mut loaded = Loaded {
        rows: vec![Vec::new(); 6],
        repaired: HashMap::new(),
        rejected: HashMap::new(),
    };
    let mut kept_ids: Vec<HashSet<u64>> = vec![HashSet::new(); 6];
    for file in [PRODUCT, STYLES, FEATURES, SKUS, RELATED, PHOTOS] {
        let separator = catalog.separator(file);
        let records = if file == PHOTOS {
            photo_records(catalog, &mut loaded.repaired)
        } else {
            catalog
                .lines(file)
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        for record in records {
            let line = if file == PHOTOS {
                record
            } else {
                let line = without_junk(&record, separator);
                if line != record {
                    tally(&mut loaded.repaired, file, "junk");
                }
                line
            };
            let Some(row) = parse(&line, separator, SCHEMAS[file]) else {
                tally(&mut loaded.rejected, file, "wrong fields");
                continue;
            };
            let id = row[0].int();
            let parent = if file == PRODUCT { 0 } else { row[1].int() };
            if file == RELATED && row[2].int() == 0 {
                tally(&mut loaded.rejected, file, "related id 0");
                continue;
            }
            let orphan = match file {
                STYLES | FEATURES => !kept_ids[PRODUCT].contains(&parent),
                SKUS | PHOTOS => !kept_ids[STYLES].contains(&parent),
                RELATED => {
                    !kept_ids[PRODUCT].contains(&parent)
                        || !kept_ids[PRODUCT].contains(&row[2].int())
                }
                _ => false,
            };
            if orphan {
                tally(&mut loaded.rejected, file, "orphan");
            } else if !kept_ids[file].insert(id) {
                tally(&mut loaded.rejected, file, "duplicate id");
            } else {
                loaded.rows[file].push(line);
            }
        }
    }
    loaded
}

/// `line` with the junk around its numbers removed: spaces around fields, a
/// `column:` label before a number.
fn without_junk(line: &str, separator: &str) -> String {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let start = rest.trim_start_matches(' ');
        let end = if let Some(quoted) = start.strip_prefix('"') {
            quoted.find('"').map_or(start.len(), |end| end + 2)
        } else {
            start.find(',').unwrap_or(start.len())
        };
        let (field, after) = start.split_at(end);
        let mut value = field.trim_end_matches(' ');
        if let Some((label, number)) = value.split_once(':')
            && !value.starts_with('"')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
        {
            value = number;
        }
        fields.push(value);
        match after.trim_start_matches(' ').strip_prefix(',') {
            Some(next) => rest = next,
            None => break,
        }
    }
    fields.join(separator)
}

/// The records of photos.csv, repaired: a line ending inside an open quote ends the
/// record when the next line starts a record, else the next line continues it (the
/// newline goes); stray quotes inside URLs are removed.
fn photo_records(catalog: &Catalog, repaired: &mut HashMap<String, usize>) -> Vec<String> {
    let lines = catalog.lines(PHOTOS);
    let starts_record = |line: &str| {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && line.as_bytes().get(digits) == Some(&b',')
    };
    let mut records = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let mut record = lines[index].to_string();
        index += 1;
        while record.matches('"').count() % 2 == 1
            && index < lines.len()
            && !starts_record(lines[index])
        {
            record.push_str(lines[index]);
            index += 1;
            tally(repaired, PHOTOS, "newline in url");
        }
        let quotes = record.matches('"').count();
        if quotes == 3 && !record.ends_with('"') {
            tally(repaired, PHOTOS, "closing quote");
        } else if quotes == 5 {
            tally(repaired, PHOTOS, "stray quote");
        }
        let unquoted = record.replace('"', "");
        let fields: Vec<&str> = unquoted.split(',').collect();
        records.push(match fields.as_slice() {
            [id, style, url, thumbnail] => format!("{id},{style},\"{url}\",\"{thumbnail}\""),
            _ => record,
        });
    }
    records
}

#[test]
fn the_loader_of_these_tests_repairs_junk_as_data_md_says() {
    assert_eq!(
        without_junk("1,2,\"Red\",null,original_price:140,1", ","),
        "1,2,\"Red\",null,140,1"
    );
    assert_eq!(
        without_junk("1, 2, \"Red, Blue\", null,  140 , 1", ", "),
        "1, 2, \"Red, Blue\", null, 140, 1"
    );
    let clean = "1, 2, \"Red: Blue\", null, 140, 1";
    assert_eq!(without_junk(clean, ", "), clean);
    assert_eq!(without_junk("5,1,\"XL\",4 ", ","), "5,1,\"XL\",4");
}
