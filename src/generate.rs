//! Synthetic catalogs: the six CSV files with the real data's shape and dirt.

use crate::Result;
use crate::config::GenerateArgs;

/// What `generate` wrote: rows per file, in the order product, styles, features,
/// photos, skus, related.
#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    pub files: Vec<(&'static str, u64)>,
}

/// Writes the six files described by `args` into `args.out`; `progress` shows a bar on
/// a terminal.
pub fn generate(_args: &GenerateArgs, _progress: bool) -> Result<GenerateReport> {
    Err(crate::Error::InvalidInput("generate: not built yet".into()))
}

/// `atelier generate`.
pub fn run(args: &GenerateArgs) -> Result<()> {
    generate(args, true).map(|_| ())
}
