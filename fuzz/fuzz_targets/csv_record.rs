//! The CSV record reader on arbitrary files: it never panics, records start on ever
//! later lines, a value holds a line break only when the reader says so, and no byte is
//! lost or invented: the header and every record's raw text, joined by line breaks,
//! give the file back.
//!
//! Input: one byte choosing the separator (low bit set: spaced `, `), then the file.

#![no_main]

use atelier::catalog::Variant;
use atelier::catalog::reader::{MAX_RECORD_BYTES, RecordReader};
use libfuzzer_sys::fuzz_target;

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let mut reader = RecordReader::new(file);
    let Some(header) = reader.header().expect("reading memory cannot fail") else {
        assert!(file.is_empty(), "a header-less file that is not empty");
        return;
    };
    let mut rebuilt = Vec::new();
    if file.starts_with(BYTE_ORDER_MARK) {
        rebuilt.extend_from_slice(BYTE_ORDER_MARK);
    }
    rebuilt.extend_from_slice(header);
    reader.set_variant(if flags & 1 == 1 {
        Variant::Spaced
    } else {
        Variant::Compact
    });
    let mut previous_line = 1;
    while reader.next_record().expect("reading memory cannot fail") {
        assert!(reader.line() > previous_line, "line numbers went back");
        previous_line = reader.line();
        assert!(reader.field_count() >= 1);
        for index in 0..reader.field_count() {
            let value = reader.field(index);
            assert!(
                value.len() <= reader.raw().len(),
                "a value longer than its record"
            );
            if !reader.info(index).line_break {
                assert!(
                    !value.contains(&b'\n'),
                    "an unflagged line break in {value:?}"
                );
            }
        }
        rebuilt.push(b'\n');
        rebuilt.extend_from_slice(reader.raw());
    }
    assert_eq!(reader.bytes_read(), file.len() as u64, "bytes left unread");
    // Carriage returns before line breaks are dropped and overlong lines cut, by design.
    if !file.contains(&b'\r') && file.len() < MAX_RECORD_BYTES {
        assert_eq!(rebuilt, file.strip_suffix(b"\n").unwrap_or(file));
    }
});
