//! The gzip form of a document (RFC 1952), made the same way wherever it is made:
//! materialize stores it beside the document, and a server makes it for a document that
//! has none stored, so equal documents compress to equal bytes (and get equal ETags) on
//! every instance. Forms end byte-aligned before an empty final block, so an answer
//! joined from several documents reuses their forms without compressing again
//! ([`GzipJoiner`]).

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Bodies shorter than this are kept and sent uncompressed for every client: gzip's
/// 18 bytes of framing and the `Content-Encoding` header eat what little it saves.
pub const MIN_COMPRESSED_BODY: usize = 256;

/// The deflate level. A gzip client's cache miss waits for it, so the level is the one
/// past which the CPU per document grows faster than the bytes shrink: measured over the
/// documents of a catalog (`bench/codings`, bench/README.md), level 2 gives 0.213 of
/// the stored bytes at three quarters of level 6's CPU (0.201), and level 1 0.263.
pub const GZIP_LEVEL: u32 = 2;

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

/// Why a stored gzip form could not be turned back into its document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("not a gzip form made by this service (header or length)")]
    NotAForm,
    #[error("it does not inflate to the bytes its CRC-32 and length say")]
    Corrupt,
}

/// The largest document a form may claim to hold: a bound on what a corrupt length
/// field could make [`gunzip`] allocate.
const MAX_INFLATED: usize = 64 << 20;

/// The document a gzip form made by [`gzip`] holds, its CRC-32 and length checked.
pub fn gunzip(form: &[u8]) -> Result<Bytes, FormError> {
    if form.len() < GZIP_HEADER.len() + 8 || form[..GZIP_HEADER.len()] != GZIP_HEADER {
        return Err(FormError::NotAForm);
    }
    let (crc, len) = trailer(form);
    let len = len as usize;
    if len > MAX_INFLATED {
        return Err(FormError::NotAForm);
    }
    let Some(open) = form[GZIP_HEADER.len()..form.len() - 8].strip_suffix(&FINAL_EMPTY_BLOCK)
    else {
        return Err(FormError::Corrupt);
    };
    // Exactly the stated length: a stream holding more does not fit and is refused, one
    // holding less fails the length check.
    let mut out = vec![0; len];
    let inflated = INFLATE.with(|inflate| inflate.borrow_mut().inflate(open, &mut out));
    match inflated {
        Ok(written) if written == len && zlib_rs::crc32::crc32(0, &out) == crc => {
            Ok(Bytes::from(out))
        }
        Ok(_) | Err(_) => Err(FormError::Corrupt),
    }
}

/// A stored (uncompressed) empty final block, byte-aligned as the blocks of a form end.
const FINAL_STORED_BLOCK: [u8; 5] = [0x01, 0x00, 0x00, 0xff, 0xff];

/// libdeflate's inflate state and the stream it is given. libdeflate rather than
/// zlib-rs: it inflates a whole buffer of known length at once, where zlib-rs's
/// streaming inflate took half an identity client's miss (bench/README.md, "Findings:
/// misses inflated by libdeflate").
struct Inflater {
    libdeflate: libdeflater::Decompressor,
    stream: Vec<u8>,
}

impl Inflater {
    /// Inflates `open`, the blocks of a form before its final empty one, into `out`.
    /// They are closed with a stored final block instead: libdeflate keeps the tables of
    /// the fixed Huffman codes from one stream to the next until it meets a dynamic
    /// block, and the fixed-code empty block that ends every form made it build them
    /// again each time: 7,600 instructions of a miss.
    fn inflate(
        &mut self,
        open: &[u8],
        out: &mut [u8],
    ) -> Result<usize, libdeflater::DecompressionError> {
        self.stream.clear();
        self.stream.extend_from_slice(open);
        self.stream.extend_from_slice(&FINAL_STORED_BLOCK);
        self.libdeflate.deflate_decompress(&self.stream, out)
    }
}

thread_local! {
    /// One inflate state per thread, for the same reason as [`DEFLATE`].
    static INFLATE: RefCell<Inflater> = RefCell::new(Inflater {
        libdeflate: libdeflater::Decompressor::new(),
        stream: Vec::new(),
    });
}

/// The CRC-32 and length (ISIZE) in the trailer of `form`, a gzip member of 8 bytes or
/// more.
fn trailer(form: &[u8]) -> (u32, u32) {
    let word = |at: usize| u32::from_le_bytes(form[at..at + 4].try_into().expect("4 bytes"));
    (word(form.len() - 8), word(form.len() - 4))
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
        let end = gzip_form.len() - 8 - FINAL_EMPTY_BLOCK.len();
        debug_assert_eq!(
            gzip_form[end..end + FINAL_EMPTY_BLOCK.len()],
            FINAL_EMPTY_BLOCK
        );
        let (crc, len) = trailer(gzip_form);
        Segment {
            blocks: &gzip_form[GZIP_HEADER.len()..end],
            crc,
            len,
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

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
    fn gunzip_gives_back_the_document_and_refuses_a_damaged_form() {
        let body: Vec<u8> = (0..500)
            .flat_map(|i| format!("{{\"style_id\":{i},\"name\":\"Red\"}},").into_bytes())
            .collect();
        let form = gzip(&body).unwrap();
        assert_eq!(super::gunzip(&form).unwrap(), body);
        // A joined member is a form too.
        let mut joiner = GzipJoiner::with_capacity(form.len());
        joiner.literal(b"[");
        joiner.segment(Segment::of(&form));
        joiner.literal(b"]");
        let joined = joiner.finish();
        assert_eq!(
            super::gunzip(&joined).unwrap(),
            [b"[", &body[..], b"]"].concat()
        );

        assert_eq!(super::gunzip(b"[1,2,3]"), Err(FormError::NotAForm));
        let mut wrong_crc = form.to_vec();
        let at = wrong_crc.len() - 8;
        wrong_crc[at] ^= 1;
        assert_eq!(super::gunzip(&wrong_crc), Err(FormError::Corrupt));
        let mut wrong_length = form.to_vec();
        let at = wrong_length.len() - 4;
        wrong_length[at] ^= 1;
        assert!(super::gunzip(&wrong_length).is_err());
        let mut cut = form[..form.len() / 2].to_vec();
        cut.extend_from_slice(&form[form.len() - 8..]);
        assert_eq!(super::gunzip(&cut), Err(FormError::Corrupt));
        let mut huge = form.to_vec();
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(super::gunzip(&huge), Err(FormError::NotAForm));
    }

    #[test]
    fn forms_inflated_one_after_another_each_give_their_own_document() {
        // Short, repetitive forms are coded with the fixed Huffman codes, longer ones with
        // their own: the inflate state kept between forms must not carry one's tables
        // into another.
        let fixed = |item: &str| item.repeat(300 / item.len() + 1).into_bytes();
        let own = |len: usize, seed: usize| -> Vec<u8> {
            (0..)
                .flat_map(|i| format!("{{\"n\":{},\"c\":\"{}\"}}", i * seed, i % 9).into_bytes())
                .take(len)
                .collect()
        };
        let documents = [
            fixed("{\"sku\":1,\"size\":\"XL\"},"),
            own(5000, 3),
            fixed("{\"id\":1,\"name\":\"Red\"},"),
            own(900, 7),
            own(12_000, 11),
            fixed("{\"sku\":1,\"size\":\"XL\"},"),
        ];
        let mut block_types = std::collections::BTreeSet::new();
        for _ in 0..2 {
            for document in &documents {
                let form = gzip(document).expect("JSON of 256 bytes or more compresses");
                block_types.insert((form[GZIP_HEADER.len()] >> 1) & 0b11);
                assert_eq!(super::gunzip(&form).unwrap(), &document[..]);
            }
        }
        // Fixed codes (1) and a form's own codes (2) were both met.
        assert_eq!(block_types, [1, 2].into());
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
