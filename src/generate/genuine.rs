//! The genuine first rows of the original dataset (products 1–11 and what belongs to
//! them), copied from the public samples into `genuine/`. A generated catalog starts
//! with them, so products 1–11 answer exactly as the original API did.
//!
//! The copies keep their source's layout: product, styles, features and skus in the
//! spaced layout of beck-2021, photos (with its ten lines missing their closing quote)
//! from beck-2021, related from sara-2023.

use std::sync::OnceLock;

/// The products written from the genuine rows rather than generated.
pub(super) const PRODUCTS: u32 = 11;

/// A genuine product row.
pub(super) struct Product {
    pub id: u32,
    pub name: &'static str,
    pub slogan: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub default_price: u64,
}

/// A genuine style row.
pub(super) struct Style {
    pub id: u32,
    pub product_id: u32,
    pub name: &'static str,
    pub sale_price: Option<u64>,
    pub original_price: u64,
    pub default_style: bool,
}

/// A genuine feature row.
pub(super) struct Feature {
    pub id: u32,
    pub product_id: u32,
    pub feature: &'static str,
    pub value: Option<&'static str>,
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
    pub size: &'static str,
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
            products: rows(include_str!("genuine/product.csv"), 6)
                .map(|f| Product {
                    id: int(&f[0]),
                    name: f[1].text,
                    slogan: f[2].text,
                    description: f[3].text,
                    category: f[4].text,
                    default_price: int(&f[5]),
                })
                .collect(),
            styles: rows(include_str!("genuine/styles.csv"), 6)
                .map(|f| Style {
                    id: int(&f[0]),
                    product_id: int(&f[1]),
                    name: f[2].text,
                    sale_price: f[3].nullable().map(|_| int(&f[3])),
                    original_price: int(&f[4]),
                    default_style: f[5].text == "1",
                })
                .collect(),
            features: rows(include_str!("genuine/features.csv"), 4)
                .map(|f| Feature {
                    id: int(&f[0]),
                    product_id: int(&f[1]),
                    feature: f[2].text,
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
            skus: rows(include_str!("genuine/skus.csv"), 4)
                .map(|f| Sku {
                    id: int(&f[0]),
                    style_id: int(&f[1]),
                    size: f[2].text,
                    quantity: int(&f[3]),
                })
                .collect(),
            related: rows(include_str!("genuine/related.csv"), 3)
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
    text: &'static str,
    quoted: bool,
}

impl Field {
    /// The text, or `None` for a bare `null`.
    fn nullable(&self) -> Option<&'static str> {
        (self.quoted || self.text != "null").then_some(self.text)
    }
}

fn int<T: std::str::FromStr>(field: &Field) -> T {
    field
        .text
        .parse()
        .unwrap_or_else(|_| panic!("genuine field {:?} is an integer", field.text))
}

/// The data rows of an embedded CSV file (either layout), each split into `width`
/// fields. The embedded files are fixed and well formed, so a malformed one is a
/// build mistake, not an input error.
fn rows(file: &'static str, width: usize) -> impl Iterator<Item = Vec<Field>> {
    file.split('\n').skip(1).map(move |line| {
        let fields = split(line);
        assert_eq!(fields.len(), width, "genuine row {line:?}");
        fields
    })
}

fn split(line: &'static str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (field, after) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').expect("a quoted genuine field is closed");
                let field = Field {
                    text: &quoted[..end],
                    quoted: true,
                };
                (field, &quoted[end + 1..])
            }
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                let field = Field {
                    text: &rest[..end],
                    quoted: false,
                };
                (field, &rest[end..])
            }
        };
        fields.push(field);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return fields,
        }
    }
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
        assert_eq!(genuine.features[9].value, Some("Rubber"));
        assert_eq!(genuine.photos.len(), 287);
        assert_eq!(genuine.skus.len(), 350);
        assert_eq!(genuine.related.len(), 50);
        assert_eq!(genuine.last_style_with_children(), 46);
        assert_eq!(genuine.last_product_with_related(), 9);
    }

    #[test]
    fn fields_split_in_both_layouts() {
        let spaced = split(r#"40, 17, "Fabric", "95% Cotton, 5% Elastic""#);
        let texts: Vec<_> = spaced.iter().map(|f| f.text).collect();
        assert_eq!(texts, ["40", "17", "Fabric", "95% Cotton, 5% Elastic"]);
        let compact = split("4,2,\"UV Protection\",null");
        assert_eq!(compact[3].nullable(), None);
        assert_eq!(compact[2].nullable(), Some("UV Protection"));
    }
}
