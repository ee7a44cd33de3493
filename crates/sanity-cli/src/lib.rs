//! The front ends' jobs: what `sanity`'s subcommands and the Python package (`crates/sanity-py`)
//! both call, so that neither writes the other's logic. Each job reads its inputs (files for
//! the command line, in-memory arrays for Python), checks them with the same messages, and
//! runs on the library crates.

pub mod jobs;

use sanity_experiments::sweep::plans;
use sanity_experiments::{ExperimentError, Plan, QUICK_TOML};
use std::path::Path;

/// Where the embedded default config says it comes from in messages.
pub const EMBEDDED_QUICK: &str = "<embedded experiments/quick.toml>";

/// The plans of the config at `config` (the embedded `experiments/quick.toml` when None),
/// with the `KEY=VALUE` overrides applied; several for a `[sweep]`.
pub fn load_plans(config: Option<&Path>, overrides: &[String]) -> sanity_rundir::error::Result<Vec<Plan>> {
    match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ExperimentError::config(path.display().to_string(), format!("cannot read the config: {e}"))
            })?;
            plans(&text, &path.display().to_string(), overrides)
        }
        None => plans(QUICK_TOML, EMBEDDED_QUICK, overrides),
    }
}

/// What `sanity plan` prints: a single plan described with its resolved config, or a sweep's
/// runs one per line with their parameters.
pub fn plan_text(plans: &[Plan]) -> String {
    if let [plan] = plans {
        return format!("{}\n# resolved config\n{}\n", plan.describe(), plan.resolved_toml());
    }
    let mut text = format!("{} runs (the [sweep]'s Cartesian product):\n", plans.len());
    for (i, plan) in plans.iter().enumerate() {
        let params: Vec<String> = plan.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        text.push_str(&format!("  {i:>4}  {}  {}\n", plan.run_id, params.join(", ")));
    }
    text
}
