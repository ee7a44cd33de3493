//! Errors of the data crate.

/// What can go wrong when building or reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A generator or loader parameter is outside what is accepted.
    #[error("invalid data parameter `{key}` = {value}: {accepted}")]
    InvalidParameter {
        /// The parameter's name, as in the config.
        key: &'static str,
        /// The offending value, printed.
        value: String,
        /// What would be accepted.
        accepted: &'static str,
    },
    /// A data file is missing, unreadable or malformed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
}
