//! The request header fields an answer depends on (`Accept-Encoding`,
//! `If-None-Match`, `Origin`) and the size of them all, gathered in one pass over the
//! fields: looking each up in the map hashes its name and probes, and the head limit
//! walks every field anyway (about 300 instructions of a cached answer saved).

use hyper::header::{
    ACCEPT_ENCODING, GetAll, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH, ORIGIN,
};

/// What one request's header fields hold of what the service reads.
pub struct RequestFields<'a> {
    headers: &'a HeaderMap,
    /// Bytes of the fields as sent: `name: value\r\n` each.
    pub bytes: usize,
    accept_encoding: Field<'a>,
    if_none_match: Field<'a>,
    /// The first `Origin` field.
    pub origin: Option<&'a HeaderValue>,
}

/// The first value of a field, and whether more followed.
#[derive(Clone, Copy, Default)]
struct Field<'a> {
    first: Option<&'a HeaderValue>,
    more: bool,
}

impl<'a> Field<'a> {
    fn add(&mut self, value: &'a HeaderValue) {
        match self.first {
            None => self.first = Some(value),
            Some(_) => self.more = true,
        }
    }
}

/// A field's values in order: the one found, or all of them where there were several.
pub enum Values<'a> {
    One(std::option::IntoIter<&'a HeaderValue>),
    All(<GetAll<'a, HeaderValue> as IntoIterator>::IntoIter),
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a HeaderValue;

    fn next(&mut self) -> Option<&'a HeaderValue> {
        match self {
            Values::One(one) => one.next(),
            Values::All(all) => all.next(),
        }
    }
}

impl<'a> RequestFields<'a> {
    /// Reads `headers` once.
    pub fn of(headers: &'a HeaderMap) -> RequestFields<'a> {
        let mut fields = RequestFields {
            headers,
            bytes: 0,
            accept_encoding: Field::default(),
            if_none_match: Field::default(),
            origin: None,
        };
        for (name, value) in headers {
            fields.bytes += name.as_str().len() + value.len() + 4;
            if *name == ACCEPT_ENCODING {
                fields.accept_encoding.add(value);
            } else if *name == IF_NONE_MATCH {
                fields.if_none_match.add(value);
            } else if *name == ORIGIN && fields.origin.is_none() {
                fields.origin = Some(value);
            }
        }
        fields
    }

    /// The `Accept-Encoding` values, in order.
    pub fn accept_encoding(&self) -> Values<'a> {
        self.values(self.accept_encoding, &ACCEPT_ENCODING)
    }

    /// The `If-None-Match` values, in order.
    pub fn if_none_match(&self) -> Values<'a> {
        self.values(self.if_none_match, &IF_NONE_MATCH)
    }

    fn values(&self, field: Field<'a>, name: &HeaderName) -> Values<'a> {
        match field.more {
            false => Values::One(field.first.into_iter()),
            true => Values::All(self.headers.get_all(name).into_iter()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_one_pass_with_every_repeated_value() {
        let mut headers = HeaderMap::new();
        headers.append(ACCEPT_ENCODING, HeaderValue::from_static("br"));
        headers.append(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        headers.append(IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
        headers.append(ORIGIN, HeaderValue::from_static("https://shop.example"));
        headers.append("x-other", HeaderValue::from_static("1"));
        let fields = RequestFields::of(&headers);
        fn values(values: Values) -> Vec<String> {
            values.map(|v| v.to_str().unwrap().to_string()).collect()
        }
        assert_eq!(values(fields.accept_encoding()), ["br", "gzip"]);
        assert_eq!(values(fields.if_none_match()), ["\"a\""]);
        assert_eq!(fields.origin.unwrap(), "https://shop.example");
        let expected = "accept-encoding: br\r\naccept-encoding: gzip\r\nif-none-match: \"a\"\r\n\
                        origin: https://shop.example\r\nx-other: 1\r\n";
        assert_eq!(fields.bytes, expected.len());
        let none = HeaderMap::new();
        let fields = RequestFields::of(&none);
        assert_eq!(fields.accept_encoding().count(), 0);
        assert!(fields.origin.is_none());
        assert_eq!(fields.bytes, 0);
    }
}
