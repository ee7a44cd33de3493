//! Upper bounds of the config's size-like values, and the memory a plan would take, checked
//! when a plan is made, before anything runs: one value must not ask for terabytes or hours
//! (10^12 bootstrap resamples, 10^9 integrated-gradient steps, a resize to 100000²). The bounds
//! of the methods' and metrics' own parameters live with them
//! ([`sanity_attribution::method::MAX_STEPS`], [`sanity_metrics::postprocess::MAX_RESIZE`],
//! ...), those of architectures in [`sanity_model::architecture`]. The memory estimate is
//! checked against the machine's memory, or `--memory-limit` where more is legitimate.

pub use sanity_data::arrays::MAX_CLASSES;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most training epochs (of the model, or of the random-label model).
pub const MAX_EPOCHS: usize = 10_000;
/// The largest training minibatch.
pub const MAX_TRAIN_BATCH: usize = 65_536;
/// The most images of one attribution batch.
pub const MAX_ATTRIBUTION_BATCH: usize = sanity_attribution::method::MAX_BATCH;
/// The most images a generated (phantom) data set may have.
pub const MAX_GENERATED_IMAGES: usize = 1_000_000;
/// The largest side of an image folder's images after resizing, in pixels.
pub const MAX_IMAGE_SIDE: usize = 4096;
/// The most example images whose maps a run keeps for the figures (`report.examples`; at most
/// the images explained are kept).
pub const MAX_EXAMPLES: usize = 10_000;
/// The most bootstrap resamples of a confidence interval.
pub const MAX_RESAMPLES: usize = 1_000_000;
/// The most re-initialisations per stage (`tests[i].draws`, `controls.draws`): each is a
/// model held while a batch is explained.
pub const MAX_DRAWS: usize = 100;
/// The most noisy copies per map of the smooth MPRT.
pub const MAX_SMOOTHING_SAMPLES: usize = sanity_attribution::method::MAX_STEPS;
/// The largest noise std of the smooth MPRT, a fraction of the input's range.
pub const MAX_SMOOTHING_NOISE: f64 = sanity_attribution::method::MAX_NOISE;

/// The memory limit in bytes; 0: not set (the machine's memory).
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Sets the memory a plan may take (`--memory-limit`), in bytes.
pub fn set_memory_limit(bytes: u64) {
    MEMORY_LIMIT.store(bytes, Ordering::SeqCst);
}

/// The memory a plan may take: `--memory-limit`, else the machine's memory (`MemTotal` of
/// `/proc/meminfo`), else 16 GiB.
pub fn memory_limit() -> u64 {
    match MEMORY_LIMIT.load(Ordering::SeqCst) {
        0 => machine_memory().unwrap_or(16 << 30),
        set => set,
    }
}

fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses `bytes` (what `what` would take) beyond the memory limit; the message says how to
/// allow more.
pub fn check_memory(what: &str, bytes: u128) -> Result<(), String> {
    let limit = memory_limit();
    if bytes <= u128::from(limit) {
        return Ok(());
    }
    let source = match MEMORY_LIMIT.load(Ordering::SeqCst) {
        0 => "the machine's memory; raise it with --memory-limit GIB where the machine has more",
        _ => "the limit set with --memory-limit GIB",
    };
    Err(format!(
        "{what} would take about {} of memory, more than the limit of {} ({source})",
        size(bytes),
        size(u128::from(limit))
    ))
}

/// A size in GiB, or in MiB below a tenth of a GiB (where GiB with one decimal reads 0.0).
fn size(bytes: u128) -> String {
    let mib = bytes as f64 / f64::from(1u32 << 20);
    match mib < 102.4 {
        true => format!("{mib:.1} MiB"),
        false => format!("{:.1} GiB", mib / 1024.0),
    }
}

/// Refuses `value` of `key` outside `1..=max`.
pub fn check_count(value: usize, max: usize) -> Result<(), String> {
    if (1..=max).contains(&value) {
        return Ok(());
    }
    Err(format!("{value}; accepted: 1 to {max}"))
}
