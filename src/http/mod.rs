//! The products HTTP service.

use crate::Result;
use crate::config::ServeArgs;

/// `atelier serve`.
pub async fn run(_args: ServeArgs) -> Result<()> {
    Err(crate::Error::InvalidInput("serve: not built yet".into()))
}
