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
    /// A part of a load that stopped because another part failed; that failure is the
    /// one to report.
    #[error("load aborted: another part of it failed")]
    LoadAborted,
    /// Input that is not what the command expects (an unknown CSV header, a bad argument).
    #[error("{0}")]
    InvalidInput(String),
}

/// What went wrong with PostgreSQL, for logs and messages: the server's message and
/// SQLSTATE, or the driver's words with their cause (the I/O error, say). The driver's
/// own text leaves both out ("db error", "error communicating with the server").
pub fn database_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_failure_names_its_cause() {
        // Port 1 on loopback has no listener: the connection is refused.
        let error = tokio_postgres::connect("postgres://u@127.0.0.1:1/x", tokio_postgres::NoTls)
            .await
            .err()
            .expect("nothing listens on port 1");
        let message = database_message(&error);
        assert!(
            message.starts_with("error connecting to server: ") && message.contains("refused"),
            "{message}"
        );
    }
}
