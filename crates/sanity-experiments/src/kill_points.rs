//! Named points of a run where the tests kill it, to prove that every phase can be resumed:
//! when the environment variable [`KILL_AT`] names a point, the process aborts there, as a
//! `kill -9` would stop it. The points, in the order a run passes them: `after_training` (the
//! model saved), `rows_written` (a batch's rows written, its journal line not yet), `batch:K`
//! (after batch K's journal line), `after_scores_rename`, `inside_summary` (half of
//! `summary.csv` written) and `inside_manifest` (half of the manifest written to its partial
//! file). Users never set it; without it each point costs one lookup of a value read once.

use std::path::Path;
use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const KILL_AT: &str = "SANITY_TEST_KILL_AT";

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

/// When [`KILL_AT`] names `point`: writes the first half of `bytes` to `partial` (a write torn
/// by the kill) and aborts.
pub fn torn_write(point_name: &str, partial: &Path, bytes: &[u8]) {
    if wanted() == Some(point_name) {
        let _ = std::fs::write(partial, &bytes[..bytes.len() / 2]);
        point(point_name);
    }
}
