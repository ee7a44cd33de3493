//! The experiments crate: config schema, plans, the sanity tests (cascading randomisation),
//! statistics, the CSV / manifest writers of a run directory, and its figures and report.

pub mod attribute_job;
pub mod cascading;
pub mod compare_job;
pub mod config;
pub mod diagnostics;
pub mod error;
pub mod example_maps;
pub mod explain_job;
pub mod figures;
pub mod journal;
pub mod kill_points;
pub mod limits;
pub mod manifest;
pub mod merge;
pub mod model_cache;
pub mod overrides;
pub mod placement;
pub mod plan;
pub mod presets;
pub mod report;
pub mod run;
pub mod run_inputs;
pub mod run_lock;
pub mod run_models;
pub mod scores;
pub mod statistics;
pub mod sweep;
pub mod train_job;
pub mod units;
pub mod verdicts;

pub use config::Config;
pub use error::ExperimentError;
pub use plan::Plan;
pub use run::{Progress, RunOptions, RunOutcome, run};

/// The embedded default experiment, `experiments/quick.toml`.
pub const QUICK_TOML: &str = include_str!("../../../experiments/quick.toml");
