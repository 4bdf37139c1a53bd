//! Content codings: the choice between a document's stored bytes and its gzip form
//! (`documents::gzip`) from a request's `Accept-Encoding` (RFC 9110 §12.5.3), made per
//! request by a scan of the header that allocates nothing.

use hyper::header::HeaderValue;
#[cfg(test)]
use hyper::header::{ACCEPT_ENCODING, HeaderMap};

pub use crate::documents::gzip::{GzipJoiner, Segment};

/// A representation of a document other than its stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// The stored bytes as they are.
    Identity,
    Gzip,
}

/// What a request's `Accept-Encoding` allows, as weights in thousandths (RFC 9110
/// qvalues: 0 is "not acceptable", 1000 the most preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    gzip: u16,
    identity: u16,
}

/// The weight of identity when a header lists neither it nor `*`: acceptable, as
/// RFC 9110 has it, and below any coding the client named.
const IMPLICIT_IDENTITY: u16 = 1;

/// `Accept-Encoding` values sent word for word by most clients, with what they allow:
/// current browsers (Chromium and Firefox, then Safari), HTTP libraries (`gzip,
/// deflate`: Python's requests, Go's and Node's clients with compression on; `gzip`),
/// and clients that ask for the bytes as they are.
const KNOWN_VALUES: [(&[u8], Accepted); 5] = [
    (b"gzip, deflate, br, zstd", TAKES_GZIP),
    (b"gzip, deflate, br", TAKES_GZIP),
    (b"gzip, deflate", TAKES_GZIP),
    (b"gzip", TAKES_GZIP),
    (
        b"identity",
        Accepted {
            gzip: 0,
            identity: 1000,
        },
    ),
];

/// Gzip at full weight, identity not named.
const TAKES_GZIP: Accepted = Accepted {
    gzip: 1000,
    identity: IMPLICIT_IDENTITY,
};

impl Accepted {
    /// What the request's `Accept-Encoding` fields allow.
    #[cfg(test)]
    pub fn from_headers(headers: &HeaderMap) -> Accepted {
        Accepted::from_values(headers.get_all(ACCEPT_ENCODING).iter())
    }

    /// What a request's `Accept-Encoding` field values, in order, allow. Without the
    /// header, or with an empty one, only identity is asked for, as the service has
    /// always answered.
    pub fn from_values<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> Accepted {
        let Some(first) = values.next() else {
            return Accepted {
                gzip: 0,
                identity: 1000,
            };
        };
        let second = values.next();
        // What most clients send is known without a scan (about 400 instructions).
        if second.is_none()
            && let Some((_, accepted)) = KNOWN_VALUES
                .iter()
                .find(|(known, _)| *known == first.as_bytes())
        {
            return *accepted;
        }
        let (mut gzip, mut identity, mut any) = (None, None, None);
        for field in std::iter::once(first).chain(second).chain(values) {
            for element in field.as_bytes().split(|&b| b == b',') {
                let mut parts = element.split(|&b| b == b';');
                let coding = parts.next().unwrap_or_default().trim_ascii();
                if coding.is_empty() {
                    continue;
                }
                // A weight that does not parse drops the element, as if it were absent.
                let Some(weight) = weight(parts) else {
                    continue;
                };
                let slot = if coding.eq_ignore_ascii_case(b"gzip")
                    || coding.eq_ignore_ascii_case(b"x-gzip")
                {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case(b"identity") {
                    &mut identity
                } else if coding == b"*" {
                    &mut any
                } else {
                    continue;
                };
                // Of one coding listed twice, the first counts.
                slot.get_or_insert(weight);
            }
        }
        Accepted {
            gzip: gzip.or(any).unwrap_or(0),
            identity: identity.or(any).unwrap_or(IMPLICIT_IDENTITY),
        }
    }

    /// The coding to answer in, given whether the document has a gzip form; `None` when
    /// the client refuses identity and gzip is not to be had. Of equal weights, gzip.
    pub fn choose(self, has_gzip: bool) -> Option<Coding> {
        let gzip = if has_gzip { self.gzip } else { 0 };
        if gzip > 0 && gzip >= self.identity {
            Some(Coding::Gzip)
        } else if self.identity > 0 {
            Some(Coding::Identity)
        } else {
            None
        }
    }

    /// Whether the client takes a body in `coding`.
    pub fn allows(self, coding: Coding) -> bool {
        match coding {
            Coding::Identity => self.identity > 0,
            Coding::Gzip => self.gzip > 0,
        }
    }
}

/// The weight among an element's parameters (`q=0.5`), 1000 without one; `None` when
/// it is not a qvalue.
fn weight<'a>(parameters: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    for parameter in parameters {
        let mut halves = parameter.splitn(2, |&b| b == b'=');
        let name = halves.next().unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"q") {
            return qvalue(halves.next()?.trim_ascii());
        }
    }
    Some(1000)
}

/// `0`, `0.d`, `0.dd`, `0.ddd`, `1`, `1.`, `1.0`, … `1.000` in thousandths.
fn qvalue(value: &[u8]) -> Option<u16> {
    let (&unit, rest) = value.split_first()?;
    let fraction = match rest {
        [] => &[][..],
        [b'.', digits @ ..] if digits.len() <= 3 => digits,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (index, &digit) in fraction.iter().enumerate() {
        if !digit.is_ascii_digit() {
            return None;
        }
        thousandths += u16::from(digit - b'0') * [100, 10, 1][index];
    }
    match unit {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(values: &[&'static str]) -> Accepted {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_static(value));
        }
        Accepted::from_headers(&headers)
    }

    fn choice(values: &[&'static str], has_gzip: bool) -> Option<Coding> {
        accepted(values).choose(has_gzip)
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted_and_at_hand() {
        use Coding::{Gzip, Identity};
        // (Accept-Encoding fields, the answer with a gzip form at hand, without one)
        let cases: &[(&[&str], Option<Coding>, Option<Coding>)] = &[
            (&[], Some(Identity), Some(Identity)),
            (&[""], Some(Identity), Some(Identity)),
            (&["gzip"], Some(Gzip), Some(Identity)),
            (&["GZip"], Some(Gzip), Some(Identity)),
            (&["x-gzip"], Some(Gzip), Some(Identity)),
            (&["gzip, deflate, br, zstd"], Some(Gzip), Some(Identity)),
            (&["br", "gzip;q=0.8"], Some(Gzip), Some(Identity)),
            (&["deflate, br"], Some(Identity), Some(Identity)),
            (&["*"], Some(Gzip), Some(Identity)),
            (&["identity"], Some(Identity), Some(Identity)),
            (&["gzip;q=0"], Some(Identity), Some(Identity)),
            (&["gzip; Q = 0.000"], Some(Identity), Some(Identity)),
            (&["gzip;q=0.001"], Some(Gzip), Some(Identity)),
            (&["gzip;q=0.5, identity"], Some(Identity), Some(Identity)),
            (&["gzip;q=0.5, identity;q=0.5"], Some(Gzip), Some(Identity)),
            (&["gzip;q=0.5"], Some(Gzip), Some(Identity)),
            (&["*;q=0"], None, None),
            (&["*;q=0, identity"], Some(Identity), Some(Identity)),
            (&["*;q=0, gzip"], Some(Gzip), None),
            (&["identity;q=0"], None, None),
            (&["gzip, identity;q=0"], Some(Gzip), None),
            (&["gzip;q=0, identity;q=0"], None, None),
            (&["*, gzip;q=0"], Some(Identity), Some(Identity)),
            (&["gzip;q=0", "gzip"], Some(Identity), Some(Identity)),
            (&["gzip;q=2"], Some(Identity), Some(Identity)),
            (&["gzip;q=0.5.1"], Some(Identity), Some(Identity)),
            (&["gzip;q="], Some(Identity), Some(Identity)),
            (&["gzip;level=1;q=1.000"], Some(Gzip), Some(Identity)),
            (&["gzip;quality=0"], Some(Gzip), Some(Identity)),
            (&[" , ,gzip ,"], Some(Gzip), Some(Identity)),
            (&["gzipx, xgzip"], Some(Identity), Some(Identity)),
        ];
        for &(values, with_gzip, without_gzip) in cases {
            assert_eq!(choice(values, true), with_gzip, "{values:?}");
            assert_eq!(
                choice(values, false),
                without_gzip,
                "{values:?} without gzip"
            );
        }
    }

    #[test]
    fn known_values_read_as_a_scan_reads_them() {
        for (value, _) in KNOWN_VALUES {
            let value = std::str::from_utf8(value).unwrap();
            // The same value with a space more takes the scan.
            let scanned = format!("{value} ");
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, HeaderValue::try_from(scanned).unwrap());
            let mut known = HeaderMap::new();
            known.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            assert_eq!(
                Accepted::from_headers(&known),
                Accepted::from_headers(&headers)
            );
        }
        // A second field is read too: here it refuses identity.
        assert_eq!(
            choice(&["gzip, deflate, br"], false),
            Some(Coding::Identity)
        );
        assert_eq!(choice(&["gzip, deflate, br", "identity;q=0"], false), None);
    }

    #[test]
    fn qvalues_parse_as_rfc_9110_writes_them() {
        for (text, value) in [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("0.", Some(0)),
            ("1.001", None),
            ("0.1234", None),
            ("2", None),
            (".5", None),
            ("", None),
            ("0,5", None),
        ] {
            assert_eq!(qvalue(text.as_bytes()), value, "{text:?}");
        }
    }
}
