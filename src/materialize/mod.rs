//! `atelier materialize`: builds the stored response documents from the catalog tables.

use tokio_postgres::Client;

use crate::Result;
use crate::config::MaterializeArgs;

/// The PostgreSQL NOTIFY channel on which a finished materialize says what changed.
/// Payload: `{"all":true}` or `{"products":[1,2,3]}`.
pub const NOTIFY_CHANNEL: &str = "atelier_documents";

/// Which documents to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every product: a new document table swapped in atomically.
    All,
    /// Only these products (documents of ids no longer in the catalog are removed).
    Products(Vec<i32>),
}

/// What a materialize did.
#[derive(Debug, Clone, Default)]
pub struct MaterializeReport {
    /// Documents written.
    pub documents: u64,
}

/// Rebuilds the documents in `scope`, switches to them atomically and notifies servers.
pub async fn materialize(_client: &mut Client, _scope: Scope) -> Result<MaterializeReport> {
    Err(crate::Error::InvalidInput("materialize: not built yet".into()))
}

/// `atelier materialize`.
pub async fn run(_args: &MaterializeArgs) -> Result<()> {
    Err(crate::Error::InvalidInput("materialize: not built yet".into()))
}
