//! PostgreSQL's binary COPY format, the rows of which the loader streams: it costs the
//! server about half the work of the text format (no line splitting, no unescaping,
//! no number parsing).

use bytes::{BufMut, BytesMut};

/// What a binary COPY stream starts with: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// What a binary COPY stream ends with: a tuple of -1 fields.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Starts a tuple of `fields` fields.
pub fn tuple(out: &mut BytesMut, fields: i16) {
    out.put_i16(fields);
}

/// An `integer`.
pub fn int4(out: &mut BytesMut, value: i32) {
    out.put_i32(4);
    out.put_i32(value);
}

/// A `text` value, as it is (no escaping in this format).
pub fn text(out: &mut BytesMut, value: &[u8]) {
    out.put_i32(value.len() as i32);
    out.extend_from_slice(value);
}

/// A `boolean`.
pub fn boolean(out: &mut BytesMut, value: bool) {
    out.put_i32(1);
    out.put_u8(u8::from(value));
}

/// SQL NULL.
pub fn null(out: &mut BytesMut) {
    out.put_i32(-1);
}

/// A `numeric` holding a whole number. The column's scale is applied by the server, so
/// `140` is stored as `140.00` in a numeric(12,2).
pub fn numeric(out: &mut BytesMut, value: u64) {
    // Base-10000 digits, least significant first.
    let mut digits = [0u16; 5];
    let mut count = 0;
    let mut rest = value;
    while rest > 0 {
        digits[count] = (rest % 10_000) as u16;
        rest /= 10_000;
        count += 1;
    }
    out.put_i32(8 + 2 * count as i32);
    out.put_i16(count as i16);
    out.put_i16((count as i16 - 1).max(0));
    out.put_i16(0);
    out.put_i16(0);
    for digit in digits[..count].iter().rev() {
        out.put_u16(*digit);
    }
}

/// Reads one tuple back as text, fields joined by tabs and NULL shown as `\N`. `types`
/// has one letter per field: `i` integer, `n` numeric, `b` boolean, `t` text.
#[cfg(test)]
pub fn decode(mut row: &[u8], types: &str) -> String {
    use bytes::Buf;
    assert_eq!(row.get_i16() as usize, types.len(), "field count");
    let fields: Vec<String> = types
        .chars()
        .map(|kind| {
            let len = row.get_i32();
            if len < 0 {
                return "\\N".to_string();
            }
            let (mut value, rest) = row.split_at(len as usize);
            row = rest;
            match kind {
                'i' => value.get_i32().to_string(),
                'b' => (value.get_u8() == 1).to_string(),
                't' => String::from_utf8(value.to_vec()).unwrap(),
                'n' => {
                    let count = value.get_i16();
                    let weight = value.get_i16();
                    assert_eq!((value.get_i16(), value.get_i16()), (0, 0), "sign, scale");
                    let mut number: u64 = 0;
                    for _ in 0..count {
                        number = number * 10_000 + u64::from(value.get_u16());
                    }
                    assert!(count == 0 || weight == count - 1);
                    number.to_string()
                }
                other => panic!("unknown field type {other}"),
            }
        })
        .collect();
    assert!(row.is_empty(), "bytes left after the tuple");
    fields.join("\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_in_base_ten_thousand() {
        for (value, bytes) in [
            (0u64, vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]),
            (140, vec![0, 0, 0, 10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 140]),
            (
                500_000_000,
                vec![0, 0, 0, 14, 0, 3, 0, 2, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0],
            ),
        ] {
            let mut out = BytesMut::new();
            numeric(&mut out, value);
            assert_eq!(out.to_vec(), bytes, "{value}");
        }
    }

    #[test]
    fn tuples_read_back() {
        let mut out = BytesMut::new();
        tuple(&mut out, 5);
        int4(&mut out, 7);
        text(&mut out, "Camo\tOnesie\\".as_bytes());
        null(&mut out);
        boolean(&mut out, true);
        numeric(&mut out, 9_999_999_999);
        assert_eq!(
            decode(&out, "itnbn"),
            "7\tCamo\tOnesie\\\t\\N\ttrue\t9999999999"
        );
        assert_eq!(HEADER.len(), 19);
    }
}
