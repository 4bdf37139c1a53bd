//! The catalog's six CSV files: which they are, their order, their headers in the two
//! layouts of the real data, and the tables they fill. The generator writes them, the
//! loader reads them ([`reader`] splits their records) and the tests check them, all
//! through this one description.

pub mod reader;

use std::ops::{Index, IndexMut};

/// One of the six catalog files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Product,
    Styles,
    Features,
    Photos,
    Skus,
    Related,
}

/// How a statement locks the catalog tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A follower's batch: writers go on, a load's swap waits.
    AccessShare,
    /// A rebuild of everything: writers wait until its swap.
    Share,
    /// A load's swap: everyone waits.
    AccessExclusive,
}

/// Locks the six catalog tables in mode `mode`, always in one order (parents before
/// children, [`FileKind::ALL`]): a load's swap, a rebuild of everything and a follower's
/// batch lock them all, and taking them in one order makes them queue behind each other
/// instead of deadlocking.
pub fn lock_catalog_sql(mode: LockMode) -> String {
    let tables = FileKind::ALL
        .map(|kind| format!("public.{}", kind.table()))
        .join(", ");
    let mode = match mode {
        LockMode::AccessShare => "ACCESS SHARE",
        LockMode::Share => "SHARE",
        LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
    };
    format!("LOCK TABLE {tables} IN {mode} MODE")
}

/// The six file names, in the order of [`FileKind::ALL`].
pub const FILE_NAMES: [&str; 6] = [
    FileKind::Product.file_name(),
    FileKind::Styles.file_name(),
    FileKind::Features.file_name(),
    FileKind::Photos.file_name(),
    FileKind::Skus.file_name(),
    FileKind::Related.file_name(),
];

impl FileKind {
    /// The six files, parents before children: the order of every per-file list.
    pub const ALL: [FileKind; 6] = [
        FileKind::Product,
        FileKind::Styles,
        FileKind::Features,
        FileKind::Photos,
        FileKind::Skus,
        FileKind::Related,
    ];

    /// The file's place in [`FileKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The file's name in the catalog directory.
    pub const fn file_name(self) -> &'static str {
        match self {
            FileKind::Product => "product.csv",
            FileKind::Styles => "styles.csv",
            FileKind::Features => "features.csv",
            FileKind::Photos => "photos.csv",
            FileKind::Skus => "skus.csv",
            FileKind::Related => "related.csv",
        }
    }

    /// The catalog table the file fills.
    pub fn table(self) -> &'static str {
        match self {
            FileKind::Product => "product",
            FileKind::Styles => "style",
            FileKind::Features => "feature",
            FileKind::Photos => "photo",
            FileKind::Skus => "sku",
            FileKind::Related => "related",
        }
    }

    /// The file whose catalog table is `name` (`public.style` → styles.csv).
    pub fn of_live_table(name: &str) -> Option<FileKind> {
        let table = name.strip_prefix("public.")?;
        FileKind::ALL.into_iter().find(|kind| kind.table() == table)
    }

    /// The table columns a row fills, in the order of the file's fields.
    pub fn columns(self) -> &'static str {
        match self {
            FileKind::Product => "id, name, slogan, description, category, default_price",
            FileKind::Styles => "id, product_id, name, sale_price, original_price, default_style",
            FileKind::Features => "id, product_id, feature, value",
            FileKind::Photos => "id, style_id, url, thumbnail_url",
            FileKind::Skus => "id, style_id, size, quantity",
            FileKind::Related => "id, product_id, related_product_id",
        }
    }

    /// The header's column names in the compact layout.
    pub fn header(self) -> &'static [&'static str] {
        match self {
            FileKind::Product => &[
                "id",
                "name",
                "slogan",
                "description",
                "category",
                "default_price",
            ],
            FileKind::Styles => &[
                "id",
                "productId",
                "name",
                "sale_price",
                "original_price",
                "default_style",
            ],
            FileKind::Features => &["id", "product_id", "feature", "value"],
            FileKind::Photos => &["id", "styleId", "url", "thumbnail_url"],
            FileKind::Skus => &["id", "styleId", "size", "quantity"],
            FileKind::Related => &["id", "current_product_id", "related_product_id"],
        }
    }

    /// The header line as the original files of `variant` wrote it.
    pub fn header_line(self, variant: Variant) -> &'static str {
        match variant {
            Variant::Compact => COMPACT_HEADERS[self],
            Variant::Spaced => SPACED_HEADERS[self],
        }
    }

    /// The separator between fields in `variant`: the spaced layout's photos.csv is
    /// compact.
    pub fn separator(self, variant: Variant) -> &'static [u8] {
        match (variant, self) {
            (Variant::Spaced, kind) if kind != FileKind::Photos => b", ",
            _ => b",",
        }
    }

    /// Reads a header line and tells the layout of the records that follow: spaced
    /// (`, `) or compact (`,`). Column names may be camelCase or snake_case.
    pub fn parse_header(self, header: &[u8]) -> Result<Variant, String> {
        let expected = self.header();
        let unknown = || {
            format!(
                "not a catalog {}: its first line {:?} is neither header it may have, \
                 `{}` (compact) or `{}` (spaced)",
                self.file_name(),
                String::from_utf8_lossy(&header[..header.len().min(200)]),
                self.header_line(Variant::Compact),
                self.header_line(Variant::Spaced),
            )
        };
        let text = std::str::from_utf8(header).map_err(|_| unknown())?;
        let names: Vec<&str> = text.split(',').collect();
        if names.len() != expected.len() {
            return Err(unknown());
        }
        let spaced = names[1..]
            .iter()
            .filter(|name| name.starts_with(' '))
            .count();
        if spaced != 0 && spaced != names.len() - 1 {
            return Err(unknown());
        }
        let fold = |name: &str| name.trim().replace('_', "").to_ascii_lowercase();
        if names
            .iter()
            .zip(expected)
            .any(|(name, want)| fold(name) != fold(want))
        {
            return Err(unknown());
        }
        Ok(if spaced == 0 {
            Variant::Compact
        } else {
            Variant::Spaced
        })
    }
}

/// The two field layouts found in the real files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `,` between fields, camelCase `productId`/`styleId` headers (sara-2023).
    Compact,
    /// `, ` between fields (photos.csv stays compact), snake_case headers (beck-2021).
    Spaced,
}

/// Headers of the compact layout.
const COMPACT_HEADERS: PerFile<&str> = PerFile([
    "id,name,slogan,description,category,default_price",
    "id,productId,name,sale_price,original_price,default_style",
    "id,product_id,feature,value",
    "id,styleId,url,thumbnail_url",
    "id,styleId,size,quantity",
    "id,current_product_id,related_product_id",
]);

/// Headers of the spaced layout, whose photos.csv is compact.
const SPACED_HEADERS: PerFile<&str> = PerFile([
    "id, name, slogan, description, category, default_price",
    "id, product_id, name, sale_price, original_price, default_style",
    "id, product_id, feature, value",
    "id,style_id,url,thumbnail_url",
    "id, style_id, size, quantity",
    "id, current_product_id, related_product_id",
]);

/// One value per catalog file, indexed by [`FileKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerFile<T>(pub [T; 6]);

impl<T> PerFile<T> {
    /// Each file with its value, in the order of [`FileKind::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (FileKind, &T)> {
        FileKind::ALL.into_iter().zip(&self.0)
    }

    /// Each file with its value, mutable, in the order of [`FileKind::ALL`].
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (FileKind, &mut T)> {
        FileKind::ALL.into_iter().zip(&mut self.0)
    }
}

impl<T> Index<FileKind> for PerFile<T> {
    type Output = T;

    fn index(&self, kind: FileKind) -> &T {
        &self.0[kind.index()]
    }
}

impl<T> IndexMut<FileKind> for PerFile<T> {
    fn index_mut(&mut self, kind: FileKind) -> &mut T {
        &mut self.0[kind.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_both_layouts_and_unknown_ones() {
        assert_eq!(
            FileKind::Styles
                .parse_header(b"id,productId,name,sale_price,original_price,default_style"),
            Ok(Variant::Compact)
        );
        assert_eq!(
            FileKind::Styles
                .parse_header(b"id, product_id, name, sale_price, original_price, default_style"),
            Ok(Variant::Spaced)
        );
        assert_eq!(
            FileKind::Photos.parse_header(b"id,style_id,url,thumbnail_url"),
            Ok(Variant::Compact)
        );
        assert!(FileKind::Photos.parse_header(b"id,style_id,url").is_err());
        assert!(
            FileKind::Photos
                .parse_header(b"id, style_id,url,thumbnail_url")
                .is_err()
        );
        assert!(FileKind::Skus.parse_header(b"\x00\x01binary").is_err());
        let error = FileKind::Related.parse_header(b"a,b,c").unwrap_err();
        assert!(
            error.contains("related.csv")
                && error.contains("`id,current_product_id,related_product_id` (compact)")
                && error.contains("`id, current_product_id, related_product_id` (spaced)"),
            "{error}"
        );
    }

    #[test]
    fn every_written_header_reads_back_as_its_layout() {
        for kind in FileKind::ALL {
            for variant in [Variant::Compact, Variant::Spaced] {
                let read = kind.parse_header(kind.header_line(variant).as_bytes());
                let expected = if kind.separator(variant) == b", " {
                    Variant::Spaced
                } else {
                    Variant::Compact
                };
                assert_eq!(read, Ok(expected), "{kind:?} {variant:?}");
            }
        }
    }
}
