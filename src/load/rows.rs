//! The rules that turn one record of a catalog file into one binary COPY tuple or into
//! a rejection, noting every repair made.

use std::borrow::Cow;
use std::io::BufRead;

use bytes::BytesMut;
use memchr::memchr;

use super::binary;
use super::ids::{IdMap, IdSet};
use crate::catalog::FileKind;
use crate::catalog::reader::{MAX_RECORD_BYTES, RecordReader};

/// Largest price numeric(12,2) holds in whole dollars.
const MAX_PRICE: i64 = 9_999_999_999;

/// The id sets a file's rows are checked against and added to.
pub enum Ids<'a> {
    /// product.csv: the product ids loaded so far.
    Product { products: &'a mut IdSet },
    /// styles.csv: every loaded product, and each loaded style's product.
    Styles {
        products: &'a IdSet,
        styles: &'a mut IdMap<u32>,
    },
    /// features.csv and related.csv: every loaded product, and the file's own ids.
    ProductChild {
        products: &'a IdSet,
        seen: &'a mut IdSet,
    },
    /// photos.csv and skus.csv: each loaded style's product, and the file's own ids.
    StyleChild {
        styles: &'a IdMap<u32>,
        seen: &'a mut IdSet,
    },
}

/// Checks the current record of `record` as a row of `kind`. On success its binary COPY
/// tuple is appended to `out` and the id of the product the row
/// belongs to is returned; repairs made are pushed to `repairs`. On rejection `out` is
/// left as it was and the reason is returned.
pub fn check<R: BufRead>(
    kind: FileKind,
    record: &RecordReader<R>,
    ids: &mut Ids<'_>,
    out: &mut BytesMut,
    repairs: &mut Vec<String>,
) -> Result<u32, String> {
    if record.too_long() {
        return Err(format!("record longer than {MAX_RECORD_BYTES} bytes"));
    }
    if std::str::from_utf8(record.raw()).is_err() {
        return Err("not valid UTF-8".into());
    }
    if memchr(0, record.raw()).is_some() {
        return Err("contains a NUL byte".into());
    }
    let expected = kind.header().len();
    if record.field_count() != expected {
        return Err(format!(
            "expected {expected} fields, found {}",
            record.field_count()
        ));
    }
    if record.missing_close() {
        repairs.push("closing quote missing".into());
    }
    let mark = out.len();
    let row = Row { record, repairs };
    let owner = match (kind, ids) {
        (FileKind::Product, Ids::Product { products }) => row.product(products, out),
        (FileKind::Styles, Ids::Styles { products, styles }) => row.style(products, styles, out),
        (FileKind::Features, Ids::ProductChild { products, seen }) => {
            row.feature(products, seen, out)
        }
        (FileKind::Related, Ids::ProductChild { products, seen }) => {
            row.related(products, seen, out)
        }
        (FileKind::Photos, Ids::StyleChild { styles, seen }) => row.photo(styles, seen, out),
        (FileKind::Skus, Ids::StyleChild { styles, seen }) => row.sku(styles, seen, out),
        (kind, _) => unreachable!("{} checked against the wrong id sets", kind.file_name()),
    };
    if owner.is_err() {
        out.truncate(mark);
    }
    owner
}

/// The ids of parent rows the current record of `record` names as a row of `kind`
/// (product ids for styles, features and related rows, style ids for photos and skus),
/// read with the rules of [`check`]; fields that hold no valid id are left out. A
/// partial load looks these up in the live catalog before checking the records.
pub fn referenced_ids<R: BufRead>(kind: FileKind, record: &RecordReader<R>) -> Vec<u32> {
    let fields: &[usize] = match kind {
        FileKind::Product => &[],
        FileKind::Related => &[1, 2],
        _ => &[1],
    };
    if record.field_count() != kind.header().len() {
        return Vec::new();
    }
    let mut repairs = Vec::new();
    let mut row = Row {
        record,
        repairs: &mut repairs,
    };
    fields
        .iter()
        .filter_map(|&index| row.id(index, "").ok())
        .collect()
}

/// A number field: bare `null`, or the one integer it holds.
enum Number {
    Null,
    Value(i64),
}

/// One record being checked.
struct Row<'a, R> {
    record: &'a RecordReader<R>,
    repairs: &'a mut Vec<String>,
}

impl<'a, R: BufRead> Row<'a, R> {
    fn product(mut self, products: &mut IdSet, out: &mut BytesMut) -> Result<u32, String> {
        let id = self.id(0, "id")?;
        let name = self.text(1, "name")?;
        let slogan = self.text(2, "slogan")?;
        let description = self.text(3, "description")?;
        let category = self.text(4, "category")?;
        let price = self.price(5, "default_price")?;
        if !products.insert(id) {
            return Err(format!("duplicate id {id}"));
        }
        binary::tuple(out, 6);
        binary::int4(out, id as i32);
        for text in [name, slogan, description, category] {
            binary::text(out, text);
        }
        binary::numeric(out, price as u64);
        Ok(id)
    }

    fn style(
        mut self,
        products: &IdSet,
        styles: &mut IdMap<u32>,
        out: &mut BytesMut,
    ) -> Result<u32, String> {
        let id = self.id(0, "id")?;
        let product = self.id(1, "product_id")?;
        let name = self.text(2, "name")?;
        let sale_price = match self.number(3, "sale_price")? {
            Number::Null => None,
            Number::Value(value) => Some(in_range(value, 0, MAX_PRICE, "sale_price")?),
        };
        let original_price = self.price(4, "original_price")?;
        let default_style = match self.required_number(5, "default_style")? {
            0 => false,
            1 => true,
            other => return Err(format!("default_style: {other} is neither 0 nor 1")),
        };
        let owner = styles.get_mut(id);
        if *owner != 0 {
            return Err(format!("duplicate id {id}"));
        }
        if !products.contains(product) {
            return Err(format!("product_id {product} names no loaded product"));
        }
        *owner = product;
        binary::tuple(out, 6);
        binary::int4(out, id as i32);
        binary::int4(out, product as i32);
        binary::text(out, name);
        match sale_price {
            Some(price) => binary::numeric(out, price as u64),
            None => binary::null(out),
        }
        binary::numeric(out, original_price as u64);
        binary::boolean(out, default_style);
        Ok(product)
    }

    fn feature(
        mut self,
        products: &IdSet,
        seen: &mut IdSet,
        out: &mut BytesMut,
    ) -> Result<u32, String> {
        let id = self.id(0, "id")?;
        let product = self.id(1, "product_id")?;
        let feature = self.text(2, "feature")?;
        let value = self.nullable_text(3, "value")?;
        if seen.contains(id) {
            return Err(format!("duplicate id {id}"));
        }
        if !products.contains(product) {
            return Err(format!("product_id {product} names no loaded product"));
        }
        seen.insert(id);
        binary::tuple(out, 4);
        binary::int4(out, id as i32);
        binary::int4(out, product as i32);
        binary::text(out, feature);
        match value {
            Some(value) => binary::text(out, value),
            None => binary::null(out),
        }
        Ok(product)
    }

    fn related(
        mut self,
        products: &IdSet,
        seen: &mut IdSet,
        out: &mut BytesMut,
    ) -> Result<u32, String> {
        let id = self.id(0, "id")?;
        let product = self.id(1, "current_product_id")?;
        let related = self.required_number(2, "related_product_id")?;
        if related == 0 {
            return Err("related_product_id is 0".into());
        }
        let related = self.in_id_range(related, "related_product_id")?;
        if seen.contains(id) {
            return Err(format!("duplicate id {id}"));
        }
        if !products.contains(product) {
            return Err(format!(
                "current_product_id {product} names no loaded product"
            ));
        }
        if !products.contains(related) {
            return Err(format!(
                "related_product_id {related} names no loaded product"
            ));
        }
        seen.insert(id);
        binary::tuple(out, 3);
        binary::int4(out, id as i32);
        binary::int4(out, product as i32);
        binary::int4(out, related as i32);
        Ok(product)
    }

    fn photo(
        mut self,
        styles: &IdMap<u32>,
        seen: &mut IdSet,
        out: &mut BytesMut,
    ) -> Result<u32, String> {
        let id = self.id(0, "id")?;
        let style = self.id(1, "style_id")?;
        let url = self.url(2, "url")?;
        let thumbnail_url = self.url(3, "thumbnail_url")?;
        if seen.contains(id) {
            return Err(format!("duplicate id {id}"));
        }
        let product = styles.get(style);
        if product == 0 {
            return Err(format!("style_id {style} names no loaded style"));
        }
        seen.insert(id);
        binary::tuple(out, 4);
        binary::int4(out, id as i32);
        binary::int4(out, style as i32);
        binary::text(out, &url);
        binary::text(out, &thumbnail_url);
        Ok(product)
    }

    fn sku(
        mut self,
        styles: &IdMap<u32>,
        seen: &mut IdSet,
        out: &mut BytesMut,
    ) -> Result<u32, String> {
        let id = self.id(0, "id")?;
        let style = self.id(1, "style_id")?;
        let size = self.text(2, "size")?;
        let quantity = self.required_number(3, "quantity")?;
        let quantity = in_range(quantity, 0, i32::MAX.into(), "quantity")?;
        if seen.contains(id) {
            return Err(format!("duplicate id {id}"));
        }
        let product = styles.get(style);
        if product == 0 {
            return Err(format!("style_id {style} names no loaded style"));
        }
        seen.insert(id);
        binary::tuple(out, 4);
        binary::int4(out, id as i32);
        binary::int4(out, style as i32);
        binary::text(out, size);
        binary::int4(out, quantity as i32);
        Ok(product)
    }

    /// A row id or a parent id: an integer in 1..=i32::MAX.
    fn id(&mut self, index: usize, column: &str) -> Result<u32, String> {
        let value = self.required_number(index, column)?;
        self.in_id_range(value, column)
    }

    fn in_id_range(&self, value: i64, column: &str) -> Result<u32, String> {
        Ok(in_range(value, 1, i32::MAX.into(), column)? as u32)
    }

    /// A whole-dollar price, not null.
    fn price(&mut self, index: usize, column: &str) -> Result<i64, String> {
        let value = self.required_number(index, column)?;
        in_range(value, 0, MAX_PRICE, column)
    }

    fn required_number(&mut self, index: usize, column: &str) -> Result<i64, String> {
        match self.number(index, column)? {
            Number::Value(value) => Ok(value),
            Number::Null => Err(format!("{column}: null is not allowed")),
        }
    }

    /// A number field. Clean digits pass as they are; otherwise, when exactly one
    /// integer stands among other characters it is taken and the repair noted.
    fn number(&mut self, index: usize, column: &str) -> Result<Number, String> {
        let info = self.record.info(index);
        let value = self.record.field(index);
        if !info.quoted && value == b"null" {
            if info.padded {
                self.repairs
                    .push(format!("{column}: spaces around the value removed"));
            }
            return Ok(Number::Null);
        }
        let digits = !info.quoted && !value.is_empty() && value.iter().all(u8::is_ascii_digit);
        if digits {
            if info.padded {
                self.repairs
                    .push(format!("{column}: spaces around the number removed"));
            }
            return parse_digits(value, column).map(Number::Value);
        }
        let mut integers = Vec::new();
        let mut at = 0;
        while at < value.len() {
            if value[at].is_ascii_digit() {
                let start = at;
                while at < value.len() && value[at].is_ascii_digit() {
                    at += 1;
                }
                let negative = start > 0 && value[start - 1] == b'-';
                integers.push((negative, &value[start..at]));
            } else {
                at += 1;
            }
        }
        let shown = String::from_utf8_lossy(value);
        match integers.as_slice() {
            [] => Err(format!("{column}: no number in {shown:?}")),
            [(negative, digits)] => {
                let magnitude = parse_digits(digits, column)?;
                self.repairs.push(format!(
                    "{column}: junk around the number removed from {shown:?}"
                ));
                Ok(Number::Value(if *negative {
                    -magnitude
                } else {
                    magnitude
                }))
            }
            _ => Err(format!("{column}: more than one number in {shown:?}")),
        }
    }

    /// A text field that must not be null.
    fn text(&mut self, index: usize, column: &str) -> Result<&'a [u8], String> {
        self.nullable_text(index, column)?
            .ok_or_else(|| format!("{column}: null is not allowed"))
    }

    /// A text field; bare `null` is SQL NULL, a quoted "null" is the word.
    fn nullable_text(&mut self, index: usize, column: &str) -> Result<Option<&'a [u8]>, String> {
        let record = self.record;
        let info = record.info(index);
        let value = record.field(index);
        if info.padded {
            self.repairs
                .push(format!("{column}: spaces around the value removed"));
        }
        if !info.quoted && value == b"null" {
            return Ok(None);
        }
        if info.stray_quote {
            self.repairs.push(format!("{column}: stray quote kept"));
        }
        Ok(Some(value))
    }

    /// A URL: quotes and line breaks do not belong in one and are removed.
    fn url(&mut self, index: usize, column: &str) -> Result<Cow<'a, [u8]>, String> {
        let record = self.record;
        let info = record.info(index);
        let value = record.field(index);
        if !info.quoted && value == b"null" {
            return Err(format!("{column}: null is not allowed"));
        }
        if info.padded {
            self.repairs
                .push(format!("{column}: spaces around the value removed"));
        }
        let mut url = Cow::Borrowed(value);
        if memchr(b'"', value).is_some() {
            self.repairs.push(format!("{column}: stray quote removed"));
            url.to_mut().retain(|&b| b != b'"');
        }
        if memchr(b'\n', value).is_some() {
            self.repairs.push(format!("{column}: line break removed"));
            url.to_mut().retain(|&b| b != b'\n');
        }
        Ok(url)
    }
}

fn parse_digits(digits: &[u8], column: &str) -> Result<i64, String> {
    let significant = digits.iter().skip_while(|&&b| b == b'0').count();
    if significant > 18 {
        return Err(format!("{column}: number out of range"));
    }
    Ok(digits
        .iter()
        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0')))
}

fn in_range(value: i64, low: i64, high: i64, column: &str) -> Result<i64, String> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{column}: {value} is outside {low}..={high}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the one record of `line` as a row of `kind`; the row comes back as text.
    fn check_line(
        kind: FileKind,
        ids: &mut Ids<'_>,
        line: &str,
    ) -> (Result<String, String>, Vec<String>) {
        let header = kind.header().join(",");
        let text = format!("{header}\n{line}");
        let mut reader = RecordReader::new(text.as_bytes());
        let variant = kind
            .parse_header(reader.header().unwrap().unwrap())
            .unwrap();
        reader.set_variant(variant);
        assert!(reader.next_record().unwrap());
        let mut out = BytesMut::new();
        let mut repairs = Vec::new();
        let types = match kind {
            FileKind::Product => "ittttn",
            FileKind::Styles => "iitnnb",
            FileKind::Features | FileKind::Photos => "iitt",
            FileKind::Skus => "iiti",
            FileKind::Related => "iii",
        };
        let outcome =
            check(kind, &reader, ids, &mut out, &mut repairs).map(|_| binary::decode(&out, types));
        if outcome.is_err() {
            assert!(out.is_empty());
        }
        (outcome, repairs)
    }

    #[test]
    fn product_text_is_kept_exactly() {
        let mut products = IdSet::default();
        let (row, repairs) = check_line(
            FileKind::Product,
            &mut Ids::Product {
                products: &mut products,
            },
            "1,\"Camo  Onesie\",\"You've\",\"a\\b\tc\",\"Jackets\",140",
        );
        assert_eq!(
            row.unwrap(),
            "1\tCamo  Onesie\tYou've\ta\\b\tc\tJackets\t140"
        );
        assert!(repairs.is_empty());
        assert!(products.contains(1));
    }

    #[test]
    fn junk_numbers_repaired_or_rejected() {
        let mut products = IdSet::default();
        let mut ids = Ids::Product {
            products: &mut products,
        };
        let (row, repairs) = check_line(
            FileKind::Product,
            &mut ids,
            "1,\"a\",\"b\",\"c\",\"d\",default_price:140",
        );
        assert_eq!(row.unwrap(), "1\ta\tb\tc\td\t140");
        assert_eq!(
            repairs,
            ["default_price: junk around the number removed from \"default_price:140\""]
        );
        let (row, repairs) = check_line(
            FileKind::Product,
            &mut ids,
            "2,\"a\",\"b\",\"c\",\"d\", 140 ",
        );
        assert_eq!(row.unwrap(), "2\ta\tb\tc\td\t140");
        assert_eq!(repairs, ["default_price: spaces around the number removed"]);
        let (row, repairs) = check_line(
            FileKind::Product,
            &mut ids,
            "6,\"a\",\"b\",\"c\",\"d\",\"140\"",
        );
        assert_eq!(row.unwrap(), "6\ta\tb\tc\td\t140");
        assert_eq!(
            repairs,
            ["default_price: junk around the number removed from \"140\""]
        );
        let (row, _) = check_line(
            FileKind::Product,
            &mut ids,
            "3,\"a\",\"b\",\"c\",\"d\",14x0",
        );
        assert_eq!(
            row.unwrap_err(),
            "default_price: more than one number in \"14x0\""
        );
        let (row, _) = check_line(FileKind::Product, &mut ids, "4,\"a\",\"b\",\"c\",\"d\",abc");
        assert_eq!(row.unwrap_err(), "default_price: no number in \"abc\"");
        let (row, _) = check_line(FileKind::Product, &mut ids, "5,\"a\",\"b\",\"c\",\"d\",-3");
        assert_eq!(
            row.unwrap_err(),
            "default_price: -3 is outside 0..=9999999999"
        );
        let (row, _) = check_line(FileKind::Product, &mut ids, "0,\"a\",\"b\",\"c\",\"d\",3");
        assert_eq!(row.unwrap_err(), "id: 0 is outside 1..=2147483647");
        let (row, _) = check_line(FileKind::Product, &mut ids, "1,\"a\",\"b\",\"c\",\"d\",3");
        assert_eq!(row.unwrap_err(), "duplicate id 1");
    }

    #[test]
    fn bare_null_only_where_allowed() {
        let mut products = IdSet::default();
        products.insert(1);
        let mut styles = IdMap::default();
        let mut ids = Ids::Styles {
            products: &products,
            styles: &mut styles,
        };
        let (row, _) = check_line(FileKind::Styles, &mut ids, "1, 1, \"Forest\", null, 140, 1");
        assert_eq!(row.unwrap(), "1\t1\tForest\t\\N\t140\ttrue");
        let (row, _) = check_line(FileKind::Styles, &mut ids, "2,1,null,null,140,0");
        assert_eq!(row.unwrap_err(), "name: null is not allowed");
        let (row, _) = check_line(FileKind::Styles, &mut ids, "3,1,\"x\",10,null,0");
        assert_eq!(row.unwrap_err(), "original_price: null is not allowed");
        let (row, _) = check_line(FileKind::Styles, &mut ids, "4,2,\"x\",10,20,0");
        assert_eq!(row.unwrap_err(), "product_id 2 names no loaded product");
        let (row, _) = check_line(FileKind::Styles, &mut ids, "5,1,\"x\",10,20,2");
        assert_eq!(row.unwrap_err(), "default_style: 2 is neither 0 nor 1");
        let mut seen = IdSet::default();
        let mut ids = Ids::ProductChild {
            products: &products,
            seen: &mut seen,
        };
        let (row, _) = check_line(FileKind::Features, &mut ids, "1,1,\"UV Protection\",null");
        assert_eq!(row.unwrap(), "1\t1\tUV Protection\t\\N");
        let (row, _) = check_line(FileKind::Features, &mut ids, "2,1,\"Sole\",\"null\"");
        assert_eq!(row.unwrap(), "2\t1\tSole\tnull");
    }

    #[test]
    fn urls_lose_stray_quotes_and_line_breaks() {
        let mut styles = IdMap::default();
        *styles.get_mut(7) = 3;
        let mut seen = IdSet::default();
        let mut ids = Ids::StyleChild {
            styles: &styles,
            seen: &mut seen,
        };
        let (row, repairs) = check_line(
            FileKind::Photos,
            &mut ids,
            "1,7,\"http://a\"b\",\"http://c\nd\"",
        );
        assert_eq!(row.unwrap(), "1\t7\thttp://ab\thttp://cd");
        assert_eq!(
            repairs,
            [
                "url: stray quote removed",
                "thumbnail_url: line break removed"
            ]
        );
        let (row, repairs) = check_line(FileKind::Photos, &mut ids, "2,7,\"http://a\",\"http://b");
        assert_eq!(row.unwrap(), "2\t7\thttp://a\thttp://b");
        assert_eq!(repairs, ["closing quote missing"]);
        let (row, _) = check_line(FileKind::Photos, &mut ids, "3,8,\"http://a\",\"http://b\"");
        assert_eq!(row.unwrap_err(), "style_id 8 names no loaded style");
        let (row, _) = check_line(FileKind::Photos, &mut ids, "4,7,\"http://a\"");
        assert_eq!(row.unwrap_err(), "expected 4 fields, found 3");
    }

    #[test]
    fn related_zero_and_orphans() {
        let mut products = IdSet::default();
        products.insert(1);
        let mut seen = IdSet::default();
        let mut ids = Ids::ProductChild {
            products: &products,
            seen: &mut seen,
        };
        assert_eq!(
            check_line(FileKind::Related, &mut ids, "1,1,0")
                .0
                .unwrap_err(),
            "related_product_id is 0"
        );
        assert_eq!(
            check_line(FileKind::Related, &mut ids, "2,1,5")
                .0
                .unwrap_err(),
            "related_product_id 5 names no loaded product"
        );
        assert_eq!(
            check_line(FileKind::Related, &mut ids, "3,1,1").0.unwrap(),
            "3\t1\t1"
        );
        assert_eq!(
            check_line(FileKind::Related, &mut ids, "3,1,1")
                .0
                .unwrap_err(),
            "duplicate id 3"
        );
    }
}
