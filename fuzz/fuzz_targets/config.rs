//! Experiment configs: any text gives plans or an error, never a panic. The plans are made
//! (sweeps expanded, names and ranges checked) but not run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sanity_experiments::sweep::plans(text, "fuzz.toml", &[]);
    }
});
