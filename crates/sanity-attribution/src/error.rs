//! Errors of the attribution crate.

use sanity_model::ModelError;

/// What can go wrong when computing a map.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// The model failed (unknown layer, candle error, ...).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A method parameter does not fit the model or input.
    #[error("{method}: {reason}")]
    Invalid {
        /// The method id.
        method: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// Result with [`AttributionError`].
pub type Result<T> = std::result::Result<T, AttributionError>;
