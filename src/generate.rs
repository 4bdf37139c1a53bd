//! Synthetic catalogs: the six CSV files with the real data's shape and dirt.

use crate::Result;
use crate::config::GenerateArgs;

/// `atelier generate`.
pub fn run(_args: &GenerateArgs) -> Result<()> {
    Err(crate::Error::InvalidInput("generate: not built yet".into()))
}
