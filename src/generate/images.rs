//! The Unsplash images photos are drawn from. As in the original dataset, a limited set
//! of images is shared by many styles; each is kept ready to copy as its two quoted
//! fields, the full-size `url` and the `w=300` thumbnail of the same image.

use std::ops::Range;

use super::rng::{Rand, Stream};

/// How many distinct images a catalog uses.
const POOL_SIZE: usize = 4096;

/// Widths of the full-size images, with their relative frequencies in the dataset.
const WIDTHS: &[(u32, u32)] = &[
    (1650, 99),
    (1567, 40),
    (668, 33),
    (1651, 16),
    (2760, 9),
    (1511, 9),
    (1525, 9),
    (1000, 7),
    (2089, 4),
    (1652, 4),
    (2850, 4),
    (2057, 4),
    (1100, 4),
    (975, 4),
    (2734, 3),
    (1656, 3),
    (2775, 2),
    (666, 2),
    (962, 2),
    (1001, 2),
    (1526, 2),
    (2800, 1),
    (938, 1),
    (800, 1),
    (1970, 1),
    (1600, 1),
];

/// Share of images, per million, whose photo number is a 13-digit millisecond stamp
/// (the others have 10 digits), and share whose URLs carry the `ixid` parameter.
const MILLISECOND_STAMP_PER_MILLION: u32 = 667_000;
const IXID_PER_MILLION: u32 = 700_000;

/// One image, ready to write.
pub(super) struct Image {
    /// `"<url>","<thumbnail_url>"`.
    pub fields: Vec<u8>,
    /// Where the two URLs lie in `fields`, without their quotes.
    pub urls: [Range<usize>; 2],
}

/// The images of one catalog.
pub(super) struct Images(Vec<Image>);

impl Images {
    /// The images of the catalog generated with `seed`.
    pub(super) fn new(seed: u64) -> Images {
        let mut rng = Rand::new(seed, 0, Stream::Images);
        Images((0..POOL_SIZE).map(|_| image(&mut rng)).collect())
    }

    /// An image drawn uniformly from the pool.
    pub(super) fn pick(&self, rng: &mut Rand) -> &Image {
        rng.pick(&self.0)
    }
}

fn image(rng: &mut Rand) -> Image {
    let seconds = 1_420_000_000 + u64::from(rng.below(150_000_000));
    let stamp = if rng.chance(MILLISECOND_STAMP_PER_MILLION) {
        seconds * 1000 + u64::from(rng.below(1000))
    } else {
        seconds
    };
    let hash = (u64::from(rng.below(1 << 24)) << 24) | u64::from(rng.below(1 << 24));
    let ixid = if rng.chance(IXID_PER_MILLION) {
        "&ixid=eyJhcHBfaWQiOjEyMDd9"
    } else {
        ""
    };
    let width = rng.pick_weighted(WIDTHS, |&(_, weight)| weight).0;
    let url = |width: u32| {
        format!(
            "https://images.unsplash.com/photo-{stamp}-{hash:012x}?ixlib=rb-1.2.1{ixid}\
             &auto=format&fit=crop&w={width}&q=80"
        )
    };
    let (full, thumbnail) = (url(width), url(300));
    let fields = format!("\"{full}\",\"{thumbnail}\"").into_bytes();
    let thumbnail_start = full.len() + 4;
    Image {
        fields,
        urls: [
            1..1 + full.len(),
            thumbnail_start..thumbnail_start + thumbnail.len(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_unsplash_urls_and_their_thumbnails() {
        let images = Images::new(1);
        for image in &images.0 {
            let [url, thumbnail] = image.urls.clone().map(|range| &image.fields[range]);
            let url = std::str::from_utf8(url).unwrap();
            let thumbnail = std::str::from_utf8(thumbnail).unwrap();
            assert!(url.starts_with("https://images.unsplash.com/photo-"));
            assert!(url.ends_with("&q=80") && thumbnail.ends_with("&w=300&q=80"));
            assert_eq!(
                url[..url.rfind("&w=").unwrap()],
                thumbnail[..thumbnail.rfind("&w=").unwrap()]
            );
            assert!((100..=140).contains(&url.len()), "{url}");
            assert_eq!(image.fields.first(), Some(&b'"'));
            assert_eq!(image.fields.last(), Some(&b'"'));
        }
    }
}
