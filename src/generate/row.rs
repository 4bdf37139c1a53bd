//! Writing one CSV row in the dataset's value formats: unquoted integers, quoted text,
//! bare `null`, fields joined by the layout's separator. Every row starts with its
//! newline, so a file made of a header and rows ends without one, like the real files.

/// A row being appended to a file's buffer.
pub(super) struct Row<'a> {
    out: &'a mut Vec<u8>,
    separator: &'static [u8],
    fields: usize,
}

/// Junk around a number, as some cohorts of the dataset have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Junk {
    /// `default_price:140`
    Label,
    /// ` 140`
    LeadingSpace,
    /// `140 `
    TrailingSpace,
    /// `  140 `
    Spaces,
}

impl Junk {
    /// Every kind, for drawing one.
    pub(super) const ALL: [Junk; 4] = [
        Junk::Label,
        Junk::LeadingSpace,
        Junk::TrailingSpace,
        Junk::Spaces,
    ];
}

impl<'a> Row<'a> {
    /// Starts a row at the end of `out`.
    pub(super) fn start(out: &'a mut Vec<u8>, separator: &'static [u8]) -> Row<'a> {
        out.push(b'\n');
        Row {
            out,
            separator,
            fields: 0,
        }
    }

    fn field(&mut self) -> &mut Vec<u8> {
        if self.fields > 0 {
            self.out.extend_from_slice(self.separator);
        }
        self.fields += 1;
        self.out
    }

    /// An integer field.
    pub(super) fn int(&mut self, value: u64) -> &mut Self {
        push_int(self.field(), value);
        self
    }

    /// An integer field, with `junk` around it if given; `label` is the column name
    /// the junk may carry.
    pub(super) fn number(&mut self, value: u64, label: &str, junk: Option<Junk>) -> &mut Self {
        let out = self.field();
        match junk {
            None => push_int(out, value),
            Some(Junk::Label) => {
                out.extend_from_slice(label.as_bytes());
                out.push(b':');
                push_int(out, value);
            }
            Some(Junk::LeadingSpace) => {
                out.push(b' ');
                push_int(out, value);
            }
            Some(Junk::TrailingSpace) => {
                push_int(out, value);
                out.push(b' ');
            }
            Some(Junk::Spaces) => {
                out.extend_from_slice(b"  ");
                push_int(out, value);
                out.push(b' ');
            }
        }
        self
    }

    /// An integer field, or `null`.
    pub(super) fn int_or_null(&mut self, value: Option<u64>) -> &mut Self {
        match value {
            Some(value) => self.int(value),
            None => self.raw(b"null"),
        }
    }

    /// A quoted text field.
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        self.text_with(|out| out.extend_from_slice(text.as_bytes()))
    }

    /// A quoted text field whose content `write` appends.
    pub(super) fn text_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let out = self.field();
        out.push(b'"');
        write(out);
        out.push(b'"');
        self
    }

    /// A quoted text field, or `null`.
    pub(super) fn text_or_null(&mut self, text: Option<&str>) -> &mut Self {
        match text {
            Some(text) => self.text(text),
            None => self.raw(b"null"),
        }
    }

    /// A field written as given.
    pub(super) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.field().extend_from_slice(bytes);
        self
    }
}

/// Appends `value` in decimal.
pub(super) fn push_int(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_use_the_dataset_formats() {
        let mut out = b"id,name".to_vec();
        Row::start(&mut out, b",")
            .int(1)
            .text("Forest Green & Black")
            .int_or_null(None)
            .int(140)
            .text_or_null(Some("Canvas"));
        Row::start(&mut out, b", ")
            .int(18_446_744_073_709_551_615)
            .number(140, "default_price", Some(Junk::Label))
            .number(8, "quantity", Some(Junk::Spaces))
            .number(0, "quantity", None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,name\n1,\"Forest Green & Black\",null,140,\"Canvas\"\n\
             18446744073709551615, default_price:140,   8 , 0"
        );
    }
}
