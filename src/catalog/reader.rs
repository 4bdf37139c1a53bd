//! The CSV record reader, written by hand because the catalog files are not valid CSV:
//! it reads physical lines, splits them into fields and repairs the known quoting dirt
//! as it goes (a missing closing quote, a stray quote, a line break inside a quoted
//! field). It reports what it repaired per field; what the values mean is decided by
//! the caller.

use std::io::{self, BufRead};
use std::ops::Range;

use memchr::memchr;

use super::Variant;

/// Longest record kept whole; a longer one is cut there and must be rejected.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One field of the current record, as a range of [`RecordReader::field`]'s buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field {
    range: Range<usize>,
    /// The field was enclosed in double quotes.
    pub quoted: bool,
    /// Spaces stood outside the value (beyond the one after the separator of the spaced
    /// variant) and were removed.
    pub padded: bool,
    /// A `"` that neither opens, closes nor escapes was kept in the value.
    pub stray_quote: bool,
    /// The quoted value ran over a line break, kept in the value as `\n`.
    pub line_break: bool,
}

/// Reads records from a catalog file: first [`RecordReader::header`], then
/// [`RecordReader::next_record`] until it returns false.
pub struct RecordReader<R> {
    lines: Lines<R>,
    spaced: bool,
    raw: Vec<u8>,
    values: Vec<u8>,
    fields: Vec<Field>,
    line: u64,
    missing_close: bool,
    too_long: bool,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader over `input`, which must be at the start of the file.
    pub fn new(input: R) -> Self {
        RecordReader {
            lines: Lines::new(input),
            spaced: false,
            raw: Vec::new(),
            values: Vec::new(),
            fields: Vec::new(),
            line: 0,
            missing_close: false,
            too_long: false,
        }
    }

    /// The first line of the file (without a UTF-8 byte-order mark), or `None` for an
    /// empty file.
    pub fn header(&mut self) -> io::Result<Option<&[u8]>> {
        self.raw.clear();
        if !self.lines.next_into(&mut self.raw)? {
            return Ok(None);
        }
        let header = self.raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.raw);
        Ok(Some(header))
    }

    /// Chooses the separator: `,` (compact) or `, ` (spaced). With the spaced variant one
    /// space after each comma belongs to the separator, not to the field.
    pub fn set_variant(&mut self, variant: Variant) {
        self.spaced = variant == Variant::Spaced;
    }

    /// Bytes of the file consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.lines.bytes
    }

    /// Reads the next record; false at the end of the file.
    pub fn next_record(&mut self) -> io::Result<bool> {
        self.raw.clear();
        self.values.clear();
        self.fields.clear();
        self.missing_close = false;
        if !self.lines.next_into(&mut self.raw)? {
            return Ok(false);
        }
        self.line = self.lines.number;
        self.too_long = self.lines.truncated;
        let mut pos = 0;
        loop {
            if self.spaced && !self.fields.is_empty() && self.raw.get(pos) == Some(&b' ') {
                pos += 1;
            }
            let lead = pos;
            while self.raw.get(pos) == Some(&b' ') {
                pos += 1;
            }
            let mut field = Field {
                padded: pos > lead,
                ..Field::default()
            };
            let start = self.values.len();
            if self.raw.get(pos) == Some(&b'"') {
                field.quoted = true;
                pos = self.quoted(pos + 1, &mut field)?;
            } else {
                let end = memchr(b',', &self.raw[pos..]).map_or(self.raw.len(), |k| pos + k);
                let mut value_end = end;
                while value_end > pos && self.raw[value_end - 1] == b' ' {
                    value_end -= 1;
                }
                field.padded |= value_end < end;
                field.stray_quote = memchr(b'"', &self.raw[pos..value_end]).is_some();
                self.values.extend_from_slice(&self.raw[pos..value_end]);
                pos = end;
            }
            field.range = start..self.values.len();
            self.fields.push(field);
            if pos >= self.raw.len() {
                return Ok(true);
            }
            // `raw[pos]` is the comma that ends this field.
            pos += 1;
        }
    }

    /// Reads a quoted value starting after its opening quote; returns the position of the
    /// comma after it, or the end of the record.
    fn quoted(&mut self, mut pos: usize, field: &mut Field) -> io::Result<usize> {
        loop {
            let Some(k) = memchr(b'"', &self.raw[pos..]) else {
                self.values.extend_from_slice(&self.raw[pos..]);
                // The line ended inside the quotes.
                let next_starts_record = match self.lines.peek()? {
                    None => true,
                    Some(next) => starts_record(next),
                };
                if next_starts_record || self.raw.len() >= MAX_RECORD_BYTES {
                    self.missing_close = true;
                    self.too_long |= self.raw.len() >= MAX_RECORD_BYTES;
                    return Ok(self.raw.len());
                }
                pos = self.raw.len() + 1;
                self.raw.push(b'\n');
                self.lines.next_into(&mut self.raw)?;
                self.too_long |= self.lines.truncated;
                self.values.push(b'\n');
                field.line_break = true;
                continue;
            };
            let quote = pos + k;
            self.values.extend_from_slice(&self.raw[pos..quote]);
            let mut after = quote + 1;
            while self.raw.get(after) == Some(&b' ') {
                after += 1;
            }
            if after == self.raw.len() || self.raw[after] == b',' {
                field.padded |= after > quote + 1;
                return Ok(after);
            }
            self.values.push(b'"');
            if self.raw[quote + 1] == b'"' {
                pos = quote + 2;
            } else {
                field.stray_quote = true;
                pos = quote + 1;
            }
        }
    }

    /// The 1-based number of the physical line where the current record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The current record's text as it stands in the file (its lines joined by `\n`).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Number of fields in the current record.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The value of field `index`, quotes and separators removed.
    pub fn field(&self, index: usize) -> &[u8] {
        &self.values[self.fields[index].range.clone()]
    }

    /// What the reader noticed about field `index`.
    pub fn info(&self, index: usize) -> &Field {
        &self.fields[index]
    }

    /// The record's last quoted value had no closing quote: the record was ended at the
    /// line break.
    pub fn missing_close(&self) -> bool {
        self.missing_close
    }

    /// The record was longer than [`MAX_RECORD_BYTES`] and was cut.
    pub fn too_long(&self) -> bool {
        self.too_long
    }
}

/// Whether a line looks like the start of a record: digits, then a comma.
fn starts_record(line: &[u8]) -> bool {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && line.get(digits) == Some(&b',')
}

/// Physical lines of a file with one line of look-ahead. A line longer than
/// [`MAX_RECORD_BYTES`] is cut there (the rest is skipped) and flagged.
struct Lines<R> {
    input: R,
    peeked: Vec<u8>,
    peeked_truncated: bool,
    /// `Some(true)`: `peeked` holds the next line; `Some(false)`: the file has ended.
    peek_state: Option<bool>,
    /// Number of the last line handed out.
    number: u64,
    /// Whether the last line handed out was cut.
    truncated: bool,
    bytes: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(input: R) -> Self {
        Lines {
            input,
            peeked: Vec::new(),
            peeked_truncated: false,
            peek_state: None,
            number: 0,
            truncated: false,
            bytes: 0,
        }
    }

    /// Appends the next line (without its line break) to `out`; false at the end.
    fn next_into(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let found = match self.peek_state.take() {
            Some(true) => {
                out.extend_from_slice(&self.peeked);
                self.truncated = self.peeked_truncated;
                true
            }
            Some(false) => false,
            None => {
                let (found, truncated) = self.read_line(out)?;
                self.truncated = truncated;
                found
            }
        };
        if found {
            self.number += 1;
        }
        Ok(found)
    }

    /// The next line, without consuming it.
    fn peek(&mut self) -> io::Result<Option<&[u8]>> {
        if self.peek_state.is_none() {
            let mut line = std::mem::take(&mut self.peeked);
            line.clear();
            let (found, truncated) = self.read_line(&mut line)?;
            self.peeked = line;
            self.peeked_truncated = truncated;
            self.peek_state = Some(found);
        }
        Ok(match self.peek_state {
            Some(true) => Some(&self.peeked),
            _ => None,
        })
    }

    /// Reads one line from the input into `out`: (found, truncated). A `\r` before the
    /// line break is dropped with it.
    fn read_line(&mut self, out: &mut Vec<u8>) -> io::Result<(bool, bool)> {
        let start = out.len();
        let mut found = false;
        let mut truncated = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            found = true;
            let (chunk, used, done) = match memchr(b'\n', available) {
                Some(k) => (&available[..k], k + 1, true),
                None => (available, available.len(), false),
            };
            let room = MAX_RECORD_BYTES.saturating_sub(out.len() - start);
            if chunk.len() > room {
                truncated = true;
            }
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.input.consume(used);
            self.bytes += used as u64;
            if done {
                break;
            }
        }
        if out.len() > start && out.last() == Some(&b'\r') {
            out.pop();
        }
        Ok((found, truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `text` (after its header) as (line, fields, missing_close).
    fn records(text: &str, spaced: bool) -> Vec<(u64, Vec<String>, bool)> {
        let mut reader = RecordReader::new(text.as_bytes());
        reader.header().unwrap().expect("a header");
        reader.set_variant(if spaced {
            Variant::Spaced
        } else {
            Variant::Compact
        });
        let mut out = Vec::new();
        while reader.next_record().unwrap() {
            let fields = (0..reader.field_count())
                .map(|i| String::from_utf8(reader.field(i).to_vec()).unwrap())
                .collect();
            out.push((reader.line(), fields, reader.missing_close()));
        }
        out
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn compact_records_with_and_without_final_newline() {
        let text = "id,a,b\n1,\"x, y\",2\n2,\"z\",null";
        assert_eq!(
            records(text, false),
            [
                (2, strings(&["1", "x, y", "2"]), false),
                (3, strings(&["2", "z", "null"]), false)
            ]
        );
        assert_eq!(records(&format!("{text}\n"), false).len(), 2);
    }

    #[test]
    fn spaced_separator_is_not_part_of_the_value() {
        let mut reader = RecordReader::new(&b"id, name, price\n1, \"Camo  Onesie\", 140"[..]);
        reader.header().unwrap();
        reader.set_variant(Variant::Spaced);
        assert!(reader.next_record().unwrap());
        assert_eq!(reader.field(1), b"Camo  Onesie");
        assert_eq!(reader.field(2), b"140");
        assert!((0..3).all(|i| !reader.info(i).padded));
        assert!(reader.info(1).quoted && !reader.info(2).quoted);
    }

    #[test]
    fn extra_spaces_are_removed_and_flagged() {
        let mut reader = RecordReader::new(&b"h\n1,  \"a b\" , 7 ,x"[..]);
        reader.header().unwrap();
        assert!(reader.next_record().unwrap());
        assert_eq!(reader.field(1), b"a b");
        assert_eq!(reader.field(2), b"7");
        assert!(reader.info(1).padded && reader.info(2).padded && !reader.info(3).padded);
    }

    #[test]
    fn missing_closing_quote_ends_the_record_at_the_line_break() {
        let text = "id,s,u,t\n48,12,\"http://a\",\"http://b\n49,12,\"http://c\",\"http://d\"\n50,1,\"e\",\"f";
        assert_eq!(
            records(text, false),
            [
                (2, strings(&["48", "12", "http://a", "http://b"]), true),
                (3, strings(&["49", "12", "http://c", "http://d"]), false),
                (4, strings(&["50", "1", "e", "f"]), true)
            ]
        );
    }

    #[test]
    fn line_break_inside_quotes_continues_the_field() {
        let mut reader = RecordReader::new(&b"h\n1,2,\"http://a\nb\",\"c\"\n3,2,\"d\",\"e\""[..]);
        reader.header().unwrap();
        assert!(reader.next_record().unwrap());
        assert_eq!((reader.line(), reader.field_count()), (2, 4));
        assert_eq!(reader.field(2), b"http://a\nb");
        assert!(reader.info(2).line_break && !reader.missing_close());
        assert_eq!(reader.raw(), b"1,2,\"http://a\nb\",\"c\"");
        assert!(reader.next_record().unwrap());
        assert_eq!((reader.line(), reader.field(2)), (4, &b"d"[..]));
        assert!(!reader.next_record().unwrap());
    }

    #[test]
    fn stray_and_escaped_quotes() {
        let mut reader = RecordReader::new(&b"h\n1,\"ht\"tp\",\"say \"\"hi\"\"\",a\"b"[..]);
        reader.header().unwrap();
        assert!(reader.next_record().unwrap());
        assert_eq!(reader.field_count(), 4);
        assert_eq!(reader.field(1), b"ht\"tp");
        assert!(reader.info(1).stray_quote);
        assert_eq!(reader.field(2), b"say \"hi\"");
        assert!(!reader.info(2).stray_quote);
        assert_eq!(reader.field(3), b"a\"b");
        assert!(reader.info(3).stray_quote);
    }

    #[test]
    fn empty_fields_blank_lines_and_crlf() {
        assert_eq!(
            records("h\n1,,\r\n\n2,\"\",x\r\n", false),
            [
                (2, strings(&["1", "", ""]), false),
                (3, strings(&[""]), false),
                (4, strings(&["2", "", "x"]), false)
            ]
        );
    }

    #[test]
    fn empty_file_has_no_header() {
        let mut reader = RecordReader::new(&b""[..]);
        assert!(reader.header().unwrap().is_none());
        assert!(!reader.next_record().unwrap());
    }

    #[test]
    fn overlong_line_is_cut_and_flagged() {
        let long = "x".repeat(MAX_RECORD_BYTES + 10);
        let text = format!("h\n1,{long}\n2,y");
        let mut reader = RecordReader::new(text.as_bytes());
        reader.header().unwrap();
        assert!(reader.next_record().unwrap());
        assert!(reader.too_long());
        assert_eq!(reader.raw().len(), MAX_RECORD_BYTES);
        assert!(reader.next_record().unwrap());
        assert!(!reader.too_long());
        assert_eq!((reader.line(), reader.field(1)), (3, &b"y"[..]));
        assert_eq!(reader.bytes_read(), text.len() as u64);
    }

    #[test]
    fn byte_order_mark_is_not_part_of_the_header() {
        let mut reader = RecordReader::new(&b"\xEF\xBB\xBFid,name\n"[..]);
        assert_eq!(reader.header().unwrap(), Some(&b"id,name"[..]));
    }
}
