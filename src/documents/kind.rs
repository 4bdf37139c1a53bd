//! The registry of document kinds: the documents stored per product, and for each its
//! column (and its gzip form's), the catalog tables it is built from and the kinds it
//! embeds (so which writes make it stale), its bit in the change queue, and whether
//! servers read it by product id.
//! Materialize, the follower, the store, the cache and the notices all derive what they
//! do per kind from here; adding a kind is an edit here plus its SQL (the build query in
//! `materialize/documents.sql`, the `document` table in `schema.sql`).

use std::fmt;

use crate::catalog::FileKind;

/// One of the documents stored per product, in a column of the `document` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The product's entry in `GET /products`, read a page at a time (never by id).
    ListEntry,
    /// The body of `GET /products/:id`: the list entry's members and the features.
    /// It embeds the list entry, so a change of the product row reaches it through that.
    Product,
    /// The body of `GET /products/:id/styles`: styles with their photos and skus. Built
    /// by `materialize/styles.sql`, which can rebuild it alone.
    Styles,
    /// The body of `GET /products/:id/related`: the related product ids.
    Related,
}

impl Kind {
    /// Every kind, in the `document` table's column order.
    pub const ALL: [Kind; 4] = [Kind::ListEntry, Kind::Product, Kind::Styles, Kind::Related];

    /// The kinds servers read by product id, each under a cache key of its own.
    pub const BY_ID: [Kind; 3] = [Kind::Product, Kind::Styles, Kind::Related];

    /// Its column in `document` (and in the build query's `built`).
    pub const fn column(self) -> &'static str {
        match self {
            Kind::ListEntry => "list_entry",
            Kind::Product => "product",
            Kind::Styles => "styles",
            Kind::Related => "related",
        }
    }

    /// The catalog tables (by their files) its body is built from directly: a write to
    /// one of them queues this kind for its products. schema.sql's capture triggers pass
    /// the resulting bits ([`Kinds::touched_by`]); a test holds the two together.
    pub const fn sources(self) -> &'static [FileKind] {
        match self {
            Kind::ListEntry => &[FileKind::Product],
            Kind::Product => &[FileKind::Features],
            Kind::Styles => &[FileKind::Styles, FileKind::Photos, FileKind::Skus],
            Kind::Related => &[FileKind::Related],
        }
    }

    /// The kinds whose bodies this one contains: when one of them is stale, so is this.
    pub const fn embeds(self) -> &'static [Kind] {
        match self {
            Kind::Product => &[Kind::ListEntry],
            Kind::ListEntry | Kind::Styles | Kind::Related => &[],
        }
    }

    /// Whether a rebuild may rewrite this kind and nothing else, when no other kind of
    /// the product is stale: its build query stands apart (only styles.sql does). Every
    /// other combination is rebuilt whole, which costs little more than its parts.
    pub const fn rebuilt_alone(self) -> bool {
        matches!(self, Kind::Styles)
    }

    /// The column holding its gzip form ([`super::gzip`]), made by materialize after
    /// the body: NULL until then, empty when gzip does not gain. Only kinds read by id
    /// have one; pages of list entries are compressed by servers.
    pub const fn gzip_column(self) -> Option<&'static str> {
        match self {
            Kind::ListEntry => None,
            Kind::Product => Some("product_gzip"),
            Kind::Styles => Some("styles_gzip"),
            Kind::Related => Some("related_gzip"),
        }
    }

    /// Its bit in a queue row's `kinds` (schema.sql's `document_queue`).
    pub const fn bit(self) -> i16 {
        1 << self as i16
    }

    /// The statement servers read product $1's body of this kind with; `None` for list
    /// entries, which are read by rank ([`super::PAGE_SQL`]).
    pub fn read_sql(self) -> Option<String> {
        match self {
            Kind::ListEntry => None,
            kind => Some(format!(
                "SELECT {} FROM document WHERE product_id = $1",
                kind.column()
            )),
        }
    }

    /// The document columns, in table order, joined by `, `: what every statement that
    /// writes whole document rows lists.
    pub fn columns() -> String {
        Kind::ALL.map(Kind::column).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.column())
    }
}

/// A set of kinds, as the bits a queue row's `kinds` column holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Kinds(i16);

impl Kinds {
    /// No kind.
    pub const NONE: Kinds = Kinds(0);

    /// Every kind.
    pub const ALL: Kinds = {
        let mut bits = 0;
        let mut k = 0;
        while k < Kind::ALL.len() {
            bits |= Kind::ALL[k].bit();
            k += 1;
        }
        Kinds(bits)
    };

    /// The set holding `kind` alone.
    pub const fn of(kind: Kind) -> Kinds {
        Kinds(kind.bit())
    }

    /// The set that queue bits stand for; a bit no kind has (a row queued by a later
    /// version) stands for every kind, which is safe, only wasteful.
    pub const fn from_bits(bits: i16) -> Kinds {
        if bits & !Kinds::ALL.0 != 0 {
            Kinds::ALL
        } else {
            Kinds(bits)
        }
    }

    /// The queue bits of this set.
    pub const fn bits(self) -> i16 {
        self.0
    }

    /// The kinds built directly from `file`'s table: the bits a write to one of its rows
    /// queues ([`Kinds::stale`] adds the kinds embedding them).
    pub fn touched_by(file: FileKind) -> Kinds {
        Kind::ALL
            .into_iter()
            .filter(|kind| kind.sources().contains(&file))
            .fold(Kinds::NONE, |kinds, kind| kinds | Kinds::of(kind))
    }

    /// The set with every kind that embeds one of its kinds: what must be rebuilt when
    /// these kinds' sources changed.
    pub fn stale(self) -> Kinds {
        Kind::ALL
            .into_iter()
            .filter(|kind| kind.embeds().iter().any(|&inner| self.contains(inner)))
            .fold(self, |kinds, kind| kinds | Kinds::of(kind))
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The one kind a rebuild may rewrite alone for this set, if the set is exactly one
    /// such kind ([`Kind::rebuilt_alone`]).
    pub fn alone(self) -> Option<Kind> {
        let mut kinds = self.iter();
        match (kinds.next(), kinds.next()) {
            (Some(kind), None) if kind.rebuilt_alone() => Some(kind),
            _ => None,
        }
    }

    /// The kinds in the set, in table order.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL
            .into_iter()
            .filter(move |&kind| self.contains(kind))
    }
}

impl std::ops::BitOr for Kinds {
    type Output = Kinds;

    fn bitor(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Kinds {
    fn bitor_assign(&mut self, other: Kinds) {
        self.0 |= other.0;
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_bit_of_its_own() {
        let bits: Vec<i16> = Kind::ALL.map(Kind::bit).to_vec();
        assert_eq!(bits, [1, 2, 4, 8]);
        assert_eq!(Kinds::ALL.bits(), 15);
        assert_eq!(Kinds::from_bits(15), Kinds::ALL);
        // A bit no kind has: everything.
        assert_eq!(Kinds::from_bits(16 | 4), Kinds::ALL);
    }

    #[test]
    fn writes_make_stale_the_kinds_built_from_their_table_and_those_embedding_them() {
        assert_eq!(
            Kinds::touched_by(FileKind::Product),
            Kinds::of(Kind::ListEntry)
        );
        assert_eq!(
            Kinds::touched_by(FileKind::Product).stale(),
            Kinds::of(Kind::ListEntry) | Kinds::of(Kind::Product)
        );
        assert_eq!(Kinds::of(Kind::Styles).stale(), Kinds::of(Kind::Styles));
        assert_eq!(
            Kinds::touched_by(FileKind::Features),
            Kinds::of(Kind::Product)
        );
        for file in [FileKind::Styles, FileKind::Photos, FileKind::Skus] {
            assert_eq!(Kinds::touched_by(file), Kinds::of(Kind::Styles));
        }
        assert_eq!(
            Kinds::touched_by(FileKind::Related),
            Kinds::of(Kind::Related)
        );
    }

    #[test]
    fn only_a_set_of_one_kind_built_apart_is_rebuilt_alone() {
        assert_eq!(Kinds::of(Kind::Styles).alone(), Some(Kind::Styles));
        assert_eq!(Kinds::of(Kind::Product).alone(), None);
        assert_eq!(
            (Kinds::of(Kind::Styles) | Kinds::of(Kind::Related)).alone(),
            None
        );
        assert_eq!(Kinds::NONE.alone(), None);
    }

    #[test]
    fn servers_read_every_kind_but_the_list_entry_by_id() {
        for kind in Kind::ALL {
            assert_eq!(kind.read_sql().is_some(), Kind::BY_ID.contains(&kind));
            assert_eq!(kind.gzip_column().is_some(), Kind::BY_ID.contains(&kind));
        }
        assert_eq!(Kind::columns(), "list_entry, product, styles, related");
    }
}
