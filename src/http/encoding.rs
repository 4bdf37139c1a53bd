//! Content codings: the gzip form of a document, made once when the document enters the
//! cache for a client that takes gzip, and the choice between it and the stored bytes
//! from a request's `Accept-Encoding` (RFC 9110 §12.5.3), made per request by a scan of
//! the header that allocates nothing.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use hyper::header::{ACCEPT_ENCODING, HeaderMap};

/// Bodies shorter than this are kept and sent uncompressed for every client: gzip's
/// 18 bytes of framing and the `Content-Encoding` header eat what little it saves.
pub const MIN_COMPRESSED_BODY: usize = 256;

/// The deflate level. A gzip client's cache miss waits for it, so the level is the one
/// past which the CPU per document grows faster than the bytes shrink: measured over the
/// documents of a catalog (`bench/codings`, bench/README.md), level 2 gives 0.213 of
/// the stored bytes at three quarters of level 6's CPU (0.201), and level 1 0.263.
pub const GZIP_LEVEL: u32 = 2;

/// A representation of a document other than its stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// The stored bytes as they are.
    Identity,
    Gzip,
}

/// The gzip form of `body` (RFC 1952), or `None` when `body` is too short to gain
/// or gzip would save less than an eighth of it.
pub fn gzip(body: &[u8]) -> Option<Bytes> {
    if body.len() < MIN_COMPRESSED_BODY {
        return None;
    }
    let compressed = DEFLATE.with(|deflate| gzip_with(&mut deflate.borrow_mut(), body));
    (compressed.len() <= body.len() - body.len() / 8).then(|| Bytes::from(compressed))
}

thread_local! {
    /// One deflate state per thread, reset between documents: a fresh one allocates and
    /// clears a few hundred KiB of tables, which would cost more than compressing a
    /// document of a few KiB.
    static DEFLATE: RefCell<Compress> =
        RefCell::new(Compress::new(Compression::new(GZIP_LEVEL), false));
}

/// The gzip member header: deflate, no flags, no modification time, no extra flags,
/// operating system unknown. Fixed, so that equal documents compress to equal bytes on
/// every instance (and so get equal ETags).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

fn gzip_with(deflate: &mut Compress, body: &[u8]) -> Vec<u8> {
    deflate.reset();
    // Room for the whole body: deflate never needs more than a few bytes over it, and
    // a document rarely compresses to more than half.
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + body.len() / 2 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    // All of the body ends in a sync flush (byte-aligned), then the stream ends with an
    // empty final block: the stream began at a reset, so the blocks between the header
    // and that end refer to nothing outside this document and stand on their own, and a
    // composite answer joins them with other documents' under one header
    // ([`GzipJoiner`]). A full flush would make the same bytes and also clear the match
    // history, which nothing after needs: a 128 KiB clear, 6.5 µs of the 21.6 a product
    // document took (bench/README.md, "Findings: misses gathered"). A flush is complete
    // once deflate leaves output room unused.
    loop {
        let consumed = usize::try_from(deflate.total_in()).expect("fits in memory");
        if let Err(error) = deflate.compress_vec(&body[consumed..], &mut out, FlushCompress::Sync) {
            unreachable!("deflate of an in-memory buffer failed: {error}");
        }
        if deflate.total_in() as usize == body.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(256));
    }
    loop {
        match deflate.compress_vec(&[], &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => break,
            Ok(Status::Ok | Status::BufError) => out.reserve(64),
            Err(error) => unreachable!("deflate of an in-memory buffer failed: {error}"),
        }
    }
    let mut crc = Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the length modulo 2^32, as RFC 1952 defines it.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.shrink_to_fit();
    out
}

/// The end of a stream made by [`gzip`]: the empty final block after its sync flush.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// The parts of a gzip form made by [`gzip`] that a [`GzipJoiner`] takes: its deflate
/// blocks up to the final one, and the CRC-32 and length of the bytes they hold.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    blocks: &'a [u8],
    crc: u32,
    len: u32,
}

impl<'a> Segment<'a> {
    /// The segment of `gzip_form`, a body [`gzip`] made.
    pub fn of(gzip_form: &'a [u8]) -> Segment<'a> {
        let trailer = gzip_form.len() - 8;
        let end = trailer - FINAL_EMPTY_BLOCK.len();
        debug_assert_eq!(gzip_form[end..trailer], FINAL_EMPTY_BLOCK);
        let word =
            |at: usize| u32::from_le_bytes(gzip_form[at..at + 4].try_into().expect("4 bytes"));
        Segment {
            blocks: &gzip_form[GZIP_HEADER.len()..end],
            crc: word(trailer),
            len: word(trailer + 4),
        }
    }
}

/// One gzip member built from pieces without compressing anything again: the deflate
/// segments of documents' gzip forms as they are, literal bytes (JSON punctuation,
/// documents without a gzip form) as stored blocks, under one header, with the CRC-32s
/// of the pieces combined (as pigz joins its blocks).
pub struct GzipJoiner {
    out: Vec<u8>,
    /// Literal bytes not yet written, joined into as few stored blocks as they need.
    literal: Vec<u8>,
    crc: u32,
    len: u64,
}

impl GzipJoiner {
    /// An empty member with room for about `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> GzipJoiner {
        let mut out = Vec::with_capacity(capacity + 64);
        out.extend_from_slice(&GZIP_HEADER);
        GzipJoiner {
            out,
            literal: Vec::new(),
            crc: 0,
            len: 0,
        }
    }

    /// Appends `bytes` as they are.
    pub fn literal(&mut self, bytes: &[u8]) {
        self.literal.extend_from_slice(bytes);
    }

    /// Appends a document's compressed `segment`.
    pub fn segment(&mut self, segment: Segment<'_>) {
        self.flush_literal();
        self.out.extend_from_slice(segment.blocks);
        self.crc = zlib_rs::crc32::crc32_combine(self.crc, segment.crc, u64::from(segment.len));
        self.len += u64::from(segment.len);
    }

    /// The finished member.
    pub fn finish(mut self) -> Bytes {
        self.flush_literal();
        self.out.extend_from_slice(&FINAL_EMPTY_BLOCK);
        self.out.extend_from_slice(&self.crc.to_le_bytes());
        // ISIZE: the length modulo 2^32, as RFC 1952 defines it.
        self.out.extend_from_slice(&(self.len as u32).to_le_bytes());
        Bytes::from(self.out)
    }

    /// Writes the pending literal bytes as stored blocks (RFC 1951 §3.2.4): after a full
    /// flush the stream is byte-aligned, so each is a header byte (not final, type 00),
    /// its length and the length's complement, then the bytes.
    fn flush_literal(&mut self) {
        if self.literal.is_empty() {
            return;
        }
        self.crc = zlib_rs::crc32::crc32(self.crc, &self.literal);
        self.len += self.literal.len() as u64;
        for block in self.literal.chunks(usize::from(u16::MAX)) {
            let length = block.len() as u16;
            self.out.push(0x00);
            self.out.extend_from_slice(&length.to_le_bytes());
            self.out.extend_from_slice(&(!length).to_le_bytes());
            self.out.extend_from_slice(block);
        }
        self.literal.clear();
    }
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

/// `Accept-Encoding` values of current browsers (Chromium and Firefox, then Safari),
/// which all take gzip at full weight and name no identity.
const BROWSER_VALUES: [&[u8]; 2] = [b"gzip, deflate, br, zstd", b"gzip, deflate, br"];

impl Accepted {
    /// What the request's `Accept-Encoding` fields allow. Without the header, or with
    /// an empty one, only identity is asked for, as the service has always answered.
    pub fn from_headers(headers: &HeaderMap) -> Accepted {
        let all = headers.get_all(ACCEPT_ENCODING);
        let mut fields = all.iter();
        let Some(first) = fields.next() else {
            return Accepted {
                gzip: 0,
                identity: 1000,
            };
        };
        // What browsers send, word for word, is known without a scan.
        if BROWSER_VALUES.contains(&first.as_bytes()) && fields.next().is_none() {
            return Accepted {
                gzip: 1000,
                identity: IMPLICIT_IDENTITY,
            };
        }
        let (mut gzip, mut identity, mut any) = (None, None, None);
        for field in all.iter() {
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
    use std::io::Read;

    use hyper::header::HeaderValue;

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
    fn browser_values_read_as_a_scan_reads_them() {
        for value in BROWSER_VALUES {
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

    fn gunzip(compressed: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(compressed)
            .read_to_end(&mut plain)
            .expect("valid gzip");
        plain
    }

    #[test]
    fn gzip_gives_the_bytes_back_and_is_the_same_every_time() {
        let body: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"Style {}\"}},", i % 13).into_bytes())
            .collect();
        let first = gzip(&body).expect("repetitive JSON compresses");
        assert!(first.len() < body.len() / 4);
        assert_eq!(gunzip(&first), body);
        // The state is reused: a second, different document is not disturbed by the first.
        let other = &body[..body.len() / 3];
        assert_eq!(gunzip(&gzip(other).unwrap()), other);
        assert_eq!(gzip(&body).unwrap(), first);
        let on_another_thread = std::thread::spawn(move || gzip(&body).unwrap())
            .join()
            .unwrap();
        assert_eq!(on_another_thread, first);
    }

    #[test]
    fn the_sync_flush_makes_the_bytes_a_full_flush_made() {
        // Instances of two versions behind one balancer must give equal documents equal
        // ETags: the cheaper flush may not change a byte.
        let body: Vec<u8> = (0..300)
            .flat_map(|i| format!("{{\"sku\":{i},\"size\":\"{}\"}},", i % 7).into_bytes())
            .collect();
        let mut deflate = Compress::new(Compression::new(GZIP_LEVEL), false);
        let mut full = vec![0; body.len() * 2];
        let status = deflate
            .compress(&body, &mut full, FlushCompress::Full)
            .unwrap();
        assert_eq!(status, Status::Ok);
        let flushed = deflate.total_out() as usize;
        let finish = deflate
            .compress(&[], &mut full[flushed..], FlushCompress::Finish)
            .unwrap();
        assert_eq!(finish, Status::StreamEnd);
        full.truncate(deflate.total_out() as usize);
        let ours = gzip(&body).unwrap();
        assert_eq!(&ours[GZIP_HEADER.len()..ours.len() - 8], &full[..]);
    }

    #[test]
    fn gzip_forms_joined_with_literals_decode_to_the_joined_bytes() {
        let document = |seed: usize| -> Vec<u8> {
            (0..300)
                .flat_map(|i| format!("{{\"sku\":{},\"size\":\"XL\"}},", i * seed).into_bytes())
                .collect()
        };
        let (first, second) = (document(3), document(7));
        let (first_gz, second_gz) = (gzip(&first).unwrap(), gzip(&second).unwrap());
        let mut joiner = GzipJoiner::with_capacity(first_gz.len() + second_gz.len());
        joiner.literal(b"{\"a\":");
        joiner.segment(Segment::of(&first_gz));
        joiner.literal(b",\"b\":");
        joiner.literal(b"null,\"c\":");
        joiner.segment(Segment::of(&second_gz));
        joiner.literal(b"}");
        let joined = joiner.finish();
        let mut expected = b"{\"a\":".to_vec();
        expected.extend_from_slice(&first);
        expected.extend_from_slice(b",\"b\":null,\"c\":");
        expected.extend_from_slice(&second);
        expected.push(b'}');
        // One member whose trailer checks: a decoder verifies the CRC-32 and the length.
        assert_eq!(gunzip(&joined), expected);
        assert!(joined.len() < expected.len() / 4);
        // Literals alone, and a literal longer than one stored block.
        let mut long = GzipJoiner::with_capacity(0);
        let literal = vec![b'x'; 70_000];
        long.literal(&literal);
        assert_eq!(gunzip(&long.finish()), literal);
    }

    #[test]
    fn short_or_incompressible_bodies_stay_as_they_are() {
        assert_eq!(gzip(b"[2,3,8,7]"), None);
        assert_eq!(gzip(&[b'a'; MIN_COMPRESSED_BODY - 1]), None);
        assert!(gzip(&[b'a'; MIN_COMPRESSED_BODY]).is_some());
        // Bytes with no repetition: gzip would save nothing.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert_eq!(gzip(&noise), None);
    }
}
