//! `atelier materialize`: builds the stored response documents from the catalog tables.

use crate::Result;
use crate::config::MaterializeArgs;

/// `atelier materialize`.
pub async fn run(_args: &MaterializeArgs) -> Result<()> {
    Err(crate::Error::InvalidInput("materialize: not built yet".into()))
}
