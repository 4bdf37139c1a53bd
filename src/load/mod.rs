//! `atelier load`: the six CSV files of a directory become the new catalog.

use crate::Result;
use crate::config::LoadArgs;

/// `atelier load`.
pub async fn run(_args: &LoadArgs) -> Result<()> {
    Err(crate::Error::InvalidInput("load: not built yet".into()))
}
