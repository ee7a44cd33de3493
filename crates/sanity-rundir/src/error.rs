//! Errors of the experiments crate, split into bad input (exit code 2) and failed runs (1).

use sanity_attribution::AttributionError;
use sanity_data::DataError;
use sanity_model::ModelError;

/// What can go wrong when planning or running an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The config does not parse or names something that does not exist.
    #[error("{file}: {}{message}", key_prefix(.key))]
    Config {
        /// Where: the config file (or `<embedded quick.toml>`, or the flag), with `:LINE` where
        /// the file writes the key, and the sweep point when the config is one of a sweep.
        file: String,
        /// The key path (`tests[0].stages`, `attribution.methods[1].steps`), when one key is
        /// at fault: [`crate::diagnostics::locate`] finds its line from it.
        key: Option<String>,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A `--set KEY=VALUE` override is malformed or names no key.
    #[error("--set {assignment}: {message}")]
    Override {
        /// The override as given.
        assignment: String,
        /// What is wrong.
        message: String,
    },
    /// The output directory cannot be used.
    #[error("output `{path}`: {message}")]
    Output {
        /// The directory.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Data generation or loading failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Model building, training or weight loading failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An attribution method failed.
    #[error(transparent)]
    Attribution(#[from] AttributionError),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The run was asked to stop (SIGINT) and stopped between two image batches.
    #[error(
        "interrupted: {finished} of {batches} image batches are finished and kept in {dir}; continue with the same command and --resume"
    )]
    Interrupted {
        /// The run directory.
        dir: String,
        /// Batches journalled.
        finished: usize,
        /// Batches in all.
        batches: usize,
    },
    /// A run or a training was asked to stop (SIGINT, SIGTERM) before any image batch: after a
    /// training epoch (its state checkpointed), before training began, or while it waited for
    /// another run's training.
    #[error("interrupted: {what}; continue with the same command and --resume")]
    InterruptedEarly {
        /// Where it stopped and what was kept.
        what: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error, kept whole (its own source chain included).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `key `K`: ` before a config error's message, or nothing.
fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default()
}

impl ExperimentError {
    /// A config error of `file` that names no single key.
    pub fn config(file: impl Into<String>, message: impl Into<String>) -> Self {
        ExperimentError::Config { file: file.into(), key: None, message: message.into() }
    }

    /// A config error of `file` at `key`.
    pub fn keyed(file: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        ExperimentError::Config { file: file.into(), key: Some(key.into()), message: message.into() }
    }

    /// True when the user can fix this by changing the input (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ExperimentError::Config { .. } | ExperimentError::Override { .. } | ExperimentError::Output { .. } => true,
            ExperimentError::Data(_) => true,
            ExperimentError::Model(e) => {
                !matches!(e, ModelError::Candle(_) | ModelError::Io { .. } | ModelError::Diverged { .. })
            }
            ExperimentError::Attribution(e) => {
                matches!(e, AttributionError::Invalid { .. } | AttributionError::Model(_))
            }
            ExperimentError::Candle(_)
            | ExperimentError::Io { .. }
            | ExperimentError::Interrupted { .. }
            | ExperimentError::InterruptedEarly { .. } => false,
        }
    }

    /// The exit code the command line ends with (and the Python package's exception class
    /// follows): 130 for a run stopped by Ctrl-C or SIGTERM, 2 for bad input, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExperimentError::Interrupted { .. } | ExperimentError::InterruptedEarly { .. } => 130,
            e if e.is_bad_input() => 2,
            _ => 1,
        }
    }

    /// An I/O error on `path` (or an error of a file format read or written there).
    pub fn io(path: &std::path::Path, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ExperimentError::Io { path: path.display().to_string(), source: err.into() }
    }
}

/// Result with [`ExperimentError`].
pub type Result<T> = std::result::Result<T, ExperimentError>;
