//! Replays the fuzz seeds and every crash input the fuzzers found (fuzz/corpus/, fuzz/regressions/;
//! scripts/fuzz/run.sh): each gives an array or an error, never a panic.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn idx_inputs_parse_or_fail_cleanly() {
    let files = inputs("idx");
    assert!(!files.is_empty(), "the seeds are committed");
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        if let Err(e) = sanity_data::idx::parse_idx(&bytes, &path) {
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        let _ = sanity_data::idx::read_idx(&path);
    }
}

#[test]
fn npy_inputs_parse_or_fail_cleanly() {
    let files = inputs("npy");
    assert!(!files.is_empty(), "the seeds are committed");
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        let _ = sanity_data::npy::parse_npy(&bytes, "input");
        if let Ok(member) = sanity_data::npy::npz_member(&bytes, "images", "input") {
            let _ = sanity_data::npy::parse_npy(&member, "input:images");
        }
    }
}
