//! Replays the config fuzz seeds and every crash input the fuzzer found (fuzz/corpus/config,
//! fuzz/regressions/config; scripts/fuzz/run.sh): each gives plans or an error, never a panic.

use std::path::Path;

#[test]
fn config_inputs_plan_or_fail_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join("config")) else { continue };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("read");
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = sanity_experiments::sweep::plans(text, "input.toml", &[]);
            }
            n += 1;
        }
    }
    assert!(n > 0, "the seeds are committed");
}

#[test]
fn a_sweep_too_large_to_run_is_refused_not_expanded() {
    let base = include_str!("../../../experiments/quick.toml");
    let values: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let list = values.join(", ");
    let text = format!(
        "{base}\n[sweep]\nseed = [{list}]\n\"training.epochs\" = [{list}]\n\"attribution.n_images\" = [{list}]\n"
    );
    let err = sanity_experiments::sweep::plans(&text, "big.toml", &[]).expect_err("refused");
    assert!(err.to_string().contains("more than 100000 runs"), "{err}");
}
