//! Named points of a run where the tests kill it, to prove that every phase can be resumed:
//! when the environment variable [`KILL_AT`] names a point (or `batch:K` for after image batch
//! K's journal line), the process aborts there, as a `kill -9` or a power cut would stop it.
//! Users never set it; without it each point is one environment lookup, done once.

use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const KILL_AT: &str = "SANITY_TEST_KILL_AT";

/// The points, in the order a run passes them.
pub const POINTS: &[&str] = &["after_training", "batch:K", "after_scores_rename", "inside_summary", "inside_manifest"];

fn wanted() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(KILL_AT).ok()).as_deref()
}

/// Aborts the process when [`KILL_AT`] names `point`.
pub fn point(point: &str) {
    if wanted() == Some(point) {
        eprintln!("{KILL_AT}: killed at {point}");
        std::process::abort();
    }
}

/// Aborts the process when [`KILL_AT`] is `batch:<batch>`.
pub fn after_batch(batch: usize) {
    if let Some(at) = wanted()
        && at.strip_prefix("batch:").and_then(|k| k.parse::<usize>().ok()) == Some(batch)
    {
        point(at);
    }
}
