//! Replays the config fuzz seeds and every crash input the fuzzer found (fuzz/corpus/config,
//! fuzz/regressions/config; scripts/fuzz/run.sh): each gives plans or an error, never a panic.

use std::path::Path;

/// The files of `fuzz/<kind>/config/` (`corpus`: the seeds; `regressions`: crash inputs),
/// dotfiles (`.gitkeep`) left out.
fn inputs(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join("config");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

#[test]
fn config_inputs_plan_or_fail_cleanly() {
    let seeds = inputs("corpus");
    assert!(!seeds.is_empty(), "the seeds are committed");
    // The seeds are valid configs.
    for path in &seeds {
        let text = std::fs::read_to_string(path).expect("read");
        if let Err(e) = sanity_experiments::sweep::plans(&text, "input.toml", &[]) {
            panic!("seed {}: {e}", path.display());
        }
    }
    for path in inputs("regressions") {
        let bytes = std::fs::read(&path).expect("read");
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = sanity_experiments::sweep::plans(text, "input.toml", &[]);
        }
    }
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
    let limit = sanity_experiments::sweep::MAX_POINTS;
    assert!(err.to_string().contains(&format!("more than {limit} runs")), "{err}");
}
