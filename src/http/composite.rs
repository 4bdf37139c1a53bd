//! Answers joined from several cached documents, so that a storefront draws a product
//! page with one request instead of 3 + 2N:
//!
//! - `GET /products/:id/page`: `{"product":P,"styles":S,"related":[R…]}`, where each
//!   entry of the product's related list, in its order (duplicates and the product
//!   itself included, since they are data), is `{"id":r,"product":Pr,"styles":Sr}`,
//!   both `null` when the catalog has no product `r`;
//! - `GET /products?ids=1,2,3`: those products' documents in the order asked, `null`
//!   for an id that names no product; with `include=styles`, entries as above.
//!
//! The body is the documents' bytes with the JSON punctuation between them. For a
//! client that takes gzip it is one gzip member made of the documents' gzip forms'
//! deflate segments ([`GzipJoiner`]): nothing is parsed, serialized or compressed
//! again, save the related list's ids, read to know which products to fetch. Every
//! part comes from the document cache, which a change invalidates, and the joined
//! answer itself is never cached: it is as fresh as its parts.

use std::time::Instant;

use bytes::Bytes;

use super::AppState;
use super::cache::Document;
use super::encoding::{Coding, GzipJoiner, Segment};
use super::error::HttpError;
use super::store::Key;
use crate::documents::Kind;

/// The most ids one `GET /products?ids=` may name.
pub const MAX_IDS: usize = 100;

/// `GET /products/:id/page` in `coding`.
pub async fn product_page(
    state: &AppState,
    id: i32,
    coding: Coding,
    now: Instant,
) -> Result<Document, HttpError> {
    // The related list is read in its stored bytes whatever the coding: its ids are
    // needed, and it is small.
    let first = [
        (
            Key::Document {
                kind: Kind::Product,
                id,
            },
            coding,
        ),
        (
            Key::Document {
                kind: Kind::Styles,
                id,
            },
            coding,
        ),
        (
            Key::Document {
                kind: Kind::Related,
                id,
            },
            Coding::Identity,
        ),
    ];
    let [product, styles, related]: [Option<Document>; 3] = state
        .cache
        .get_documents(&first, now)
        .await?
        .try_into()
        .expect("three keys, three answers");
    let (Some(product), Some(related)) = (product, related) else {
        return Err(HttpError::NoSuchProduct(id));
    };
    let related_ids = related_ids(related.body());
    let wanted: Vec<(Key, Coding)> = related_ids
        .iter()
        .flat_map(|&id| {
            [Kind::Product, Kind::Styles].map(|kind| (Key::Document { kind, id }, coding))
        })
        .collect();
    let cards = state.cache.get_documents(&wanted, now).await?;
    let size = product.body().len()
        + styles.as_ref().map_or(0, |styles| styles.body().len())
        + cards
            .iter()
            .flatten()
            .map(|card| card.body().len() + 40)
            .sum::<usize>();
    let mut body = Joiner::new(coding, size);
    body.literal(b"{\"product\":");
    body.document(Some(&product));
    body.literal(b",\"styles\":");
    body.document(styles.as_ref());
    body.literal(b",\"related\":[");
    for (index, (id, card)) in related_ids.iter().zip(cards.chunks(2)).enumerate() {
        if index > 0 {
            body.literal(b",");
        }
        body.entry(*id, card[0].as_ref(), card[1].as_ref());
    }
    body.literal(b"]}");
    Ok(body.finish())
}

/// `GET /products?ids=…` in `coding`, with each product's styles when `with_styles`.
pub async fn products(
    state: &AppState,
    ids: &[i32],
    with_styles: bool,
    coding: Coding,
    now: Instant,
) -> Result<Document, HttpError> {
    let kinds: &[Kind] = if with_styles {
        &[Kind::Product, Kind::Styles]
    } else {
        &[Kind::Product]
    };
    let wanted: Vec<(Key, Coding)> = ids
        .iter()
        .flat_map(|&id| {
            kinds
                .iter()
                .map(move |&kind| (Key::Document { kind, id }, coding))
        })
        .collect();
    let documents = state.cache.get_documents(&wanted, now).await?;
    let size = documents
        .iter()
        .flatten()
        .map(|d| d.body().len() + 40)
        .sum();
    let mut body = Joiner::new(coding, size);
    body.literal(b"[");
    for (index, (id, parts)) in ids.iter().zip(documents.chunks(kinds.len())).enumerate() {
        if index > 0 {
            body.literal(b",");
        }
        match with_styles {
            true => body.entry(*id, parts[0].as_ref(), parts[1].as_ref()),
            false => body.document(parts[0].as_ref()),
        }
    }
    body.literal(b"]");
    Ok(body.finish())
}

/// The ids of a stored related list (`[1,2,3]`); anything else reads as none.
fn related_ids(body: &[u8]) -> Vec<i32> {
    serde_json::from_slice(body).unwrap_or_default()
}

/// Why an `ids` list is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdsError {
    Empty,
    /// Not a canonical integer from 1 to 2147483647.
    Malformed(String),
    Duplicate(i32),
    TooMany(usize),
}

impl std::fmt::Display for IdsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdsError::Empty => f.write_str("ids must name at least one product id"),
            IdsError::Malformed(id) => write!(
                f,
                "ids must be product ids (integers from 1 to 2147483647) separated by \
                 commas, got \"{id}\""
            ),
            IdsError::Duplicate(id) => write!(f, "ids names product {id} twice"),
            IdsError::TooMany(count) => {
                write!(f, "ids may name at most {MAX_IDS} products, got {count}")
            }
        }
    }
}

/// The ids of an `ids` query value: product ids separated by commas (`,` or `%2C`, as
/// a browser's `URLSearchParams` writes it), each canonical, none twice, at most
/// [`MAX_IDS`].
pub fn parse_ids(value: &str) -> Result<Vec<i32>, IdsError> {
    if value.is_empty() {
        return Err(IdsError::Empty);
    }
    let mut ids = Vec::new();
    let mut count = 0;
    for item in value
        .split(',')
        .flat_map(|part| part.split("%2C"))
        .flat_map(|part| part.split("%2c"))
    {
        count += 1;
        if count > MAX_IDS {
            continue;
        }
        let id = super::handlers::product_id(item)
            .map_err(|_| IdsError::Malformed(item.chars().take(32).collect()))?;
        ids.push(id);
    }
    if count > MAX_IDS {
        return Err(IdsError::TooMany(count));
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(IdsError::Duplicate(pair[0]));
    }
    Ok(ids)
}

/// An answer being joined in one coding.
enum Joiner {
    Identity(Vec<u8>),
    Gzip(GzipJoiner),
}

impl Joiner {
    fn new(coding: Coding, size: usize) -> Joiner {
        match coding {
            Coding::Identity => Joiner::Identity(Vec::with_capacity(size + 64)),
            // Compressed parts take about a fifth of their stored size.
            Coding::Gzip => Joiner::Gzip(GzipJoiner::with_capacity(size / 4)),
        }
    }

    fn literal(&mut self, bytes: &[u8]) {
        match self {
            Joiner::Identity(out) => out.extend_from_slice(bytes),
            Joiner::Gzip(out) => out.literal(bytes),
        }
    }

    /// A document as it is cached (in its gzip form where it has one), or `null`.
    fn document(&mut self, document: Option<&Document>) {
        match (self, document) {
            (joiner, None) => joiner.literal(b"null"),
            (Joiner::Gzip(out), Some(document)) if document.coding() == Coding::Gzip => {
                out.segment(Segment::of(document.body()));
            }
            (joiner, Some(document)) => joiner.literal(document.body()),
        }
    }

    /// `{"id":id,"product":…,"styles":…}`.
    fn entry(&mut self, id: i32, product: Option<&Document>, styles: Option<&Document>) {
        self.literal(format!("{{\"id\":{id},\"product\":").as_bytes());
        self.document(product);
        self.literal(b",\"styles\":");
        self.document(styles);
        self.literal(b"}");
    }

    fn finish(self) -> Document {
        match self {
            Joiner::Identity(out) => Document::joined(Bytes::from(out), Coding::Identity),
            Joiner::Gzip(out) => Document::joined(out.finish(), Coding::Gzip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_are_canonical_distinct_and_bounded() {
        assert_eq!(parse_ids("1,2,3"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_ids("3%2C1%2c2"), Ok(vec![3, 1, 2]));
        assert_eq!(parse_ids("2147483647"), Ok(vec![i32::MAX]));
        assert_eq!(parse_ids(""), Err(IdsError::Empty));
        for bad in ["1,,2", "1,x", "0", "-1", "01", "1,2147483648", "1,", " 1"] {
            assert!(
                matches!(parse_ids(bad), Err(IdsError::Malformed(_))),
                "{bad:?}: {:?}",
                parse_ids(bad)
            );
        }
        assert_eq!(parse_ids("4,5,4"), Err(IdsError::Duplicate(4)));
        let hundred: Vec<String> = (1..=100).map(|id| id.to_string()).collect();
        assert_eq!(parse_ids(&hundred.join(",")).map(|ids| ids.len()), Ok(100));
        let too_many: Vec<String> = (1..=101).map(|id| id.to_string()).collect();
        assert_eq!(parse_ids(&too_many.join(",")), Err(IdsError::TooMany(101)));
    }

    #[test]
    fn related_lists_read_as_ids() {
        assert_eq!(related_ids(b"[2,3,2,1]"), [2, 3, 2, 1]);
        assert_eq!(related_ids(b"[]"), Vec::<i32>::new());
        assert_eq!(related_ids(b"not json"), Vec::<i32>::new());
    }
}
