//! The formats a sanity run reads and writes: the config schema (with its presets, `--set`
//! overrides and error diagnostics) and the files of a run directory (docs/run-directory.md):
//! file names, score / summary / verdict rows and their writer, the manifest, the journal of
//! finished batches, the example maps, shards. The run engine (sanity-experiments) writes them;
//! the report (sanity-report) and `sanity merge` read them.

pub mod config;
pub mod diagnostics;
pub mod error;
pub mod example_maps;
pub mod files;
pub mod journal;
pub mod manifest;
pub mod overrides;
pub mod presets;
pub mod rows;
pub mod shard;

pub use config::Config;
pub use error::{ExperimentError, Result};
