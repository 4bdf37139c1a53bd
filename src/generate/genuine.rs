//! The genuine first rows of the original dataset (products 1–11 and what belongs to
//! them), copied from the public samples into `genuine/`. A generated catalog starts
//! with them, so products 1–11 answer exactly as the original API did.
//!
//! The copies keep their source's layout: product, styles, features and skus in the
//! spaced layout of beck-2021, photos (with its ten lines missing their closing quote)
//! from beck-2021, related from sara-2023.

use std::sync::OnceLock;

use crate::catalog::FileKind;
use crate::catalog::reader::RecordReader;

/// The products written from the genuine rows rather than generated.
pub(super) const PRODUCTS: u32 = 11;

/// A genuine product row.
pub(super) struct Product {
    pub id: u32,
    pub name: String,
    pub slogan: String,
    pub description: String,
    pub category: String,
    pub default_price: u64,
}

/// A genuine style row.
pub(super) struct Style {
    pub id: u32,
    pub product_id: u32,
    pub name: String,
    pub sale_price: Option<u64>,
    pub original_price: u64,
    pub default_style: bool,
}

/// A genuine feature row.
pub(super) struct Feature {
    pub id: u32,
    pub product_id: u32,
    pub feature: String,
    pub value: Option<String>,
}

/// A genuine photo line, kept as written (it is compact in every layout).
pub(super) struct Photo {
    pub style_id: u32,
    pub line: &'static str,
}

/// A genuine sku row.
pub(super) struct Sku {
    pub id: u32,
    pub style_id: u32,
    pub size: String,
    pub quantity: u64,
}

/// A genuine related row.
pub(super) struct Related {
    pub id: u32,
    pub current: u32,
    pub related: u32,
}

/// All genuine rows, in file order.
pub(super) struct Genuine {
    pub products: Vec<Product>,
    pub styles: Vec<Style>,
    pub features: Vec<Feature>,
    pub photos: Vec<Photo>,
    pub skus: Vec<Sku>,
    pub related: Vec<Related>,
}

impl Genuine {
    /// The parsed genuine rows (parsed once per process).
    pub(super) fn get() -> &'static Genuine {
        static GENUINE: OnceLock<Genuine> = OnceLock::new();
        GENUINE.get_or_init(Genuine::parse)
    }

    fn parse() -> Genuine {
        Genuine {
            products: rows(FileKind::Product, include_str!("genuine/product.csv"))
                .map(|f| Product {
                    id: int(&f[0]),
                    name: f[1].text.clone(),
                    slogan: f[2].text.clone(),
                    description: f[3].text.clone(),
                    category: f[4].text.clone(),
                    default_price: int(&f[5]),
                })
                .collect(),
            styles: rows(FileKind::Styles, include_str!("genuine/styles.csv"))
                .map(|f| Style {
                    id: int(&f[0]),
                    product_id: int(&f[1]),
                    name: f[2].text.clone(),
                    sale_price: f[3].nullable().map(|_| int(&f[3])),
                    original_price: int(&f[4]),
                    default_style: f[5].text == "1",
                })
                .collect(),
            features: rows(FileKind::Features, include_str!("genuine/features.csv"))
                .map(|f| Feature {
                    id: int(&f[0]),
                    product_id: int(&f[1]),
                    feature: f[2].text.clone(),
                    value: f[3].nullable(),
                })
                .collect(),
            photos: include_str!("genuine/photos.csv")
                .split('\n')
                .skip(1)
                .map(|line| Photo {
                    style_id: line
                        .split(',')
                        .nth(1)
                        .and_then(|id| id.parse().ok())
                        .expect("a genuine photo line names its style"),
                    line,
                })
                .collect(),
            skus: rows(FileKind::Skus, include_str!("genuine/skus.csv"))
                .map(|f| Sku {
                    id: int(&f[0]),
                    style_id: int(&f[1]),
                    size: f[2].text.clone(),
                    quantity: int(&f[3]),
                })
                .collect(),
            related: rows(FileKind::Related, include_str!("genuine/related.csv"))
                .map(|f| Related {
                    id: int(&f[0]),
                    current: int(&f[1]),
                    related: int(&f[2]),
                })
                .collect(),
        }
    }

    /// The last style whose skus and photos the genuine rows hold; later genuine styles
    /// get generated ones.
    pub(super) fn last_style_with_children(&self) -> u32 {
        self.skus.iter().map(|sku| sku.style_id).max().unwrap_or(0)
    }

    /// The last product whose related rows the genuine rows hold.
    pub(super) fn last_product_with_related(&self) -> u32 {
        self.related
            .iter()
            .map(|row| row.current)
            .max()
            .unwrap_or(0)
    }
}

/// One field of a genuine row: its text without quotes, and whether it was quoted.
struct Field {
    text: String,
    quoted: bool,
}

impl Field {
    /// The text, or `None` for a bare `null`.
    fn nullable(&self) -> Option<String> {
        (self.quoted || self.text != "null").then(|| self.text.clone())
    }
}

fn int<T: std::str::FromStr>(field: &Field) -> T {
    field
        .text
        .parse()
        .unwrap_or_else(|_| panic!("genuine field {:?} is an integer", field.text))
}

/// The data rows of an embedded `kind` file (either variant), read by the loader's own
/// record reader. The embedded files are fixed and well formed, so a malformed one is
/// a build mistake, not an input error.
fn rows(kind: FileKind, file: &'static str) -> impl Iterator<Item = Vec<Field>> {
    let mut reader = RecordReader::new(file.as_bytes());
    let header = reader.header().expect("reading memory cannot fail");
    let variant = kind
        .parse_header(header.expect("a genuine file has a header"))
        .expect("a genuine file has its catalog header");
    reader.set_variant(variant);
    let mut rows = Vec::new();
    while reader.next_record().expect("reading memory cannot fail") {
        assert!(
            reader.field_count() == kind.header().len() && !reader.missing_close(),
            "genuine row {:?}",
            String::from_utf8_lossy(reader.raw())
        );
        let fields = (0..reader.field_count())
            .map(|index| Field {
                text: String::from_utf8(reader.field(index).to_vec())
                    .expect("genuine rows are UTF-8"),
                quoted: reader.info(index).quoted,
            })
            .collect();
        rows.push(fields);
    }
    rows.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genuine_rows_parse_with_their_known_counts() {
        let genuine = Genuine::get();
        assert_eq!(genuine.products.len(), PRODUCTS as usize);
        assert_eq!(genuine.products[10].name, "Air Minis 250");
        assert_eq!(genuine.styles.len(), 52);
        assert_eq!(genuine.styles[2].sale_price, Some(100));
        assert_eq!(genuine.styles[0].sale_price, None);
        assert_eq!(genuine.features.len(), 30);
        assert_eq!(genuine.features[3].value, None);
        assert_eq!(genuine.features[9].value.as_deref(), Some("Rubber"));
        assert_eq!(genuine.photos.len(), 287);
        assert_eq!(genuine.skus.len(), 350);
        assert_eq!(genuine.related.len(), 50);
        assert_eq!(genuine.last_style_with_children(), 46);
        assert_eq!(genuine.last_product_with_related(), 9);
    }

    #[test]
    fn quoted_commas_and_nulls_are_read_as_the_loader_reads_them() {
        let genuine = Genuine::get();
        assert_eq!(genuine.products[1].slogan, "You've got to wear shades");
        assert!(genuine.products[1].description.contains("roads, but"));
        assert_eq!(genuine.features[3].feature, "UV Protection");
        assert_eq!(genuine.features[3].value, None);
        assert_eq!(genuine.styles[0].name, "Forest Green & Black");
    }
}
