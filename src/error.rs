//! The crate's error type for the command-line pipeline (embedded cluster, load,
//! materialize, generate). The HTTP layer maps its own failures in `http::error`.

use std::path::Path;

/// Everything that can stop a pipeline command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement or connection to PostgreSQL failed.
    #[error("database: {}", database_message(.0))]
    Database(#[from] tokio_postgres::Error),
    /// A file or process could not be read, written or started.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The embedded PostgreSQL cluster could not be found, created, started or stopped.
    #[error("embedded PostgreSQL: {0}")]
    Embedded(String),
    /// Input that is not what the command expects (an unknown CSV header, a bad argument).
    #[error("{0}")]
    InvalidInput(String),
}

/// What PostgreSQL said, where it said something: the driver's own text for a server
/// error is only "db error", which tells an operator nothing.
fn database_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => error.to_string(),
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`, saying what was being done to it.
    pub fn io(action: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            context: format!("{action} {}", path.display()),
            source,
        }
    }
}
