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
    /// An architecture is refused as a whole (its input shape, no layers, too many layers):
    /// no single layer is at fault.
    #[error("invalid architecture: {reason}")]
    InvalidArchitectureSpec {
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// An architecture file cannot be used: too large, not TOML of the architecture schema,
    /// or refused as a whole (see [`ModelError::InvalidArchitectureSpec`]).
    #[error("architecture file `{path}`: {reason}")]
    ArchitectureFile {
        /// The file (or the name the text was given under).
        path: String,
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
    /// A weights file holds NaN or ±Inf (after conversion to f32): every logit, map and score
    /// computed from it would be NaN.
    #[error(
        "weights `{path}`: tensor `{tensor}` holds {count} non-finite value(s) (NaN or ±Inf as f32) among {total}, \
         the first at flat index {first}; accepted: finite values only"
    )]
    NonFiniteWeights {
        /// The file (or the name the bytes were given under).
        path: String,
        /// The tensor's name (`conv1.weight`).
        tensor: String,
        /// How many of its values are NaN or ±Inf.
        count: usize,
        /// How many values it has.
        total: usize,
        /// The flat (row-major) index of the first non-finite value.
        first: usize,
    },
    /// An ONNX model cannot be imported: not ONNX, an op or a shape outside what is supported.
    #[error("ONNX model `{path}`{}: {reason}", node_part(.node))]
    Onnx {
        /// The file.
        path: String,
        /// The node at fault, `name (OpType)`, when one is.
        node: Option<String>,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// Training data or parameters are not usable with this model.
    #[error("training: {0}")]
    Training(String),
    /// Training diverged: a minibatch loss or a weight after an epoch is not finite (a failed
    /// run, exit 1: nothing is saved as a trained model).
    #[error(
        "training diverged at epoch {epoch}: {what}; nothing was saved as a trained model (lower the learning rate, now {learning_rate})"
    )]
    Diverged {
        /// The epoch (1-based).
        epoch: usize,
        /// What was not finite, and where.
        what: String,
        /// The learning rate trained with.
        learning_rate: f64,
    },
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

/// `, node `N`` for an error at a node, or nothing.
fn node_part(node: &Option<String>) -> String {
    node.as_ref().map(|n| format!(", node `{n}`")).unwrap_or_default()
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
