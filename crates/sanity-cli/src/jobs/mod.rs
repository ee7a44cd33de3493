//! The back ends of the subcommands: `run`'s loop over plans, and `train`, `attribute`,
//! `explain`, `compare` and `inspect`, each parsed from its flags (or the Python package's
//! arguments) into a job and carried out on the libraries.

use std::path::PathBuf;

pub mod attribute;
pub mod compare;
pub mod explain;
pub mod inspect;
pub mod run;
pub mod train;

/// The model a job explains.
#[derive(Debug, Clone)]
pub enum JobModel {
    /// A preset or architecture TOML with its weights (safetensors, PyTorch names).
    Sequential {
        /// Preset name or architecture TOML.
        arch: String,
        /// The weights.
        weights: PathBuf,
    },
    /// A model exported by `torch.onnx.export`, run as a graph.
    Onnx(PathBuf),
}
