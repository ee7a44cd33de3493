//! Errors of the model crate.

/// What can go wrong when building, running, training or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An architecture preset name is not known.
    #[error("unknown architecture `{name}`; the presets are: {available} (or give a path to an architecture TOML)")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The preset names, comma-separated.
        available: String,
    },
    /// A layer name is not in the model.
    #[error("layer `{name}` not found; this model has: {available}")]
    UnknownLayer {
        /// The name asked for.
        name: String,
        /// The model's layer names, comma-separated.
        available: String,
    },
    /// An architecture is inconsistent (shapes, names, parameters).
    #[error("invalid architecture at layer `{layer}`: {reason}")]
    InvalidArchitecture {
        /// The layer where the problem shows.
        layer: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// A weights file does not match the architecture.
    #[error("weights `{path}`: {reason}")]
    Weights {
        /// The file.
        path: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// Training data or parameters are not usable with this model.
    #[error("training: {0}")]
    Training(String),
    /// Training cannot go on from a checkpoint: it is of another seed, setting, architecture
    /// or data set, or of a later epoch than the training has.
    #[error("cannot go on from the checkpoint of epoch {epoch}{place}: {why}")]
    CheckpointMismatch {
        /// The checkpoint's epoch.
        epoch: usize,
        /// ` in FOLDER`, where the checkpoint was read from one.
        place: String,
        /// What differs.
        why: String,
    },

    /// Inputs, seeds or segments that do not fit the model (the input-gradient engine).
    #[error("invalid input: {0}")]
    BadInput(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
