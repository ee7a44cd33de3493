//! The run engine: checked plans of a config, the sanity tests' units of work (cascading and
//! independent randomisation, random labels, random logit, the controls), the models they run
//! under (trained, cached or given), the statistics and verdicts of their scores, sweeps and
//! merges of shards. Its files' formats live in sanity-rundir; its figures in sanity-report.

pub mod cascading;
pub mod checked;
pub mod kill_points;
pub mod limits;
pub mod localisation;
pub mod merge;
pub mod model_cache;
pub mod placement;
pub mod plan;
pub mod run;
pub mod run_inputs;
pub mod run_lock;
pub mod run_models;
pub mod scores;
pub mod statistics;
pub mod sweep;
pub mod units;
pub mod verdicts;

pub use plan::Plan;
pub use run::{Progress, RunOptions, RunOutcome, run};
pub use sanity_rundir::{Config, ExperimentError};

/// The embedded default experiment, `experiments/quick.toml`.
pub const QUICK_TOML: &str = include_str!("../../../experiments/quick.toml");
