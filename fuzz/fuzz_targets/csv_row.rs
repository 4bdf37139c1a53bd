//! Records of each catalog file through the row rules: never a panic; a rejection gives
//! a reason and leaves the COPY buffer as it was; an accepted row appends exactly one
//! well-formed binary COPY tuple with the file's column count.
//!
//! Input: one byte choosing the file (low seven bits modulo 6, in `FileKind::ALL`
//! order) and the separator (high bit: spaced), then the records after the header.

#![no_main]

use atelier::catalog::reader::RecordReader;
use atelier::catalog::{FileKind, Variant};
use atelier::load::ids::{IdMap, IdSet};
use atelier::load::rows::{Ids, check};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// Products 1..=20 and styles 1..=40 (two per product) exist before the file is read.
const PRODUCTS: u32 = 20;
const STYLES: u32 = 40;

/// The file's header, with the separator of `variant`.
fn header(kind: FileKind, variant: Variant) -> String {
    kind.header().join(if variant == Variant::Spaced { ", " } else { "," })
}

/// The number of fields of the binary COPY tuple at the start of `tuple`, and its length.
fn tuple_shape(tuple: &[u8]) -> (usize, usize) {
    let count = i16::from_be_bytes([tuple[0], tuple[1]]);
    assert!(count > 0, "a tuple of {count} fields");
    let mut at = 2;
    for _ in 0..count {
        let length = i32::from_be_bytes(tuple[at..at + 4].try_into().unwrap());
        at += 4;
        if length >= 0 {
            at += length as usize;
        } else {
            assert_eq!(length, -1, "a negative field length other than NULL");
        }
        assert!(at <= tuple.len(), "a field runs past the tuple");
    }
    (count as usize, at)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, records)) = data.split_first() else {
        return;
    };
    let kind = FileKind::ALL[usize::from(selector & 0x7f) % FileKind::ALL.len()];
    let variant = if selector & 0x80 != 0 {
        Variant::Spaced
    } else {
        Variant::Compact
    };
    let file = [header(kind, variant).as_bytes(), b"\n", records].concat();
    let mut reader = RecordReader::new(&file[..]);
    let first_line = reader.header().unwrap().expect("a header");
    assert_eq!(kind.parse_header(first_line), Ok(variant));
    reader.set_variant(variant);

    let mut products = IdSet::default();
    let mut styles = IdMap::default();
    for id in 1..=PRODUCTS {
        products.insert(id);
    }
    for id in 1..=STYLES {
        *styles.get_mut(id) = id.div_ceil(2);
    }
    let mut seen = IdSet::default();
    let columns = kind.columns().split(", ").count();
    let mut out = BytesMut::new();
    while reader.next_record().unwrap() {
        let before = out.len();
        let mut repairs = Vec::new();
        let mut ids = match kind {
            FileKind::Product => Ids::Product {
                products: &mut products,
            },
            FileKind::Styles => Ids::Styles {
                products: &products,
                styles: &mut styles,
            },
            FileKind::Features | FileKind::Related => Ids::ProductChild {
                products: &products,
                seen: &mut seen,
            },
            FileKind::Photos | FileKind::Skus => Ids::StyleChild {
                styles: &styles,
                seen: &mut seen,
            },
        };
        match check(kind, &reader, &mut ids, &mut out, &mut repairs) {
            Ok(owner) => {
                assert!((1..=i32::MAX as u32).contains(&owner), "owner {owner}");
                let (count, length) = tuple_shape(&out[before..]);
                assert_eq!(count, columns, "{:?}", kind.file_name());
                assert_eq!(before + length, out.len(), "bytes after the tuple");
            }
            Err(reason) => {
                assert!(!reason.is_empty());
                assert_eq!(out.len(), before, "a rejected row left bytes behind");
            }
        }
    }
});
