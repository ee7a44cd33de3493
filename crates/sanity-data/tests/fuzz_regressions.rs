//! Replays the fuzz seeds and every crash input the fuzzers found (fuzz/corpus/, fuzz/regressions/;
//! scripts/fuzz/run.sh): each gives an array or an error, never a panic.

use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/` (`kind`: `corpus` for the seeds, `regressions` for the
/// crash inputs), dotfiles (`.gitkeep`) left out.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

#[test]
fn idx_inputs_parse_or_fail_cleanly() {
    let seeds = inputs("corpus", "idx");
    assert!(!seeds.is_empty(), "the seeds are committed");
    // The seeds are valid files.
    for path in &seeds {
        if let Err(e) = sanity_data::idx::read_idx(path) {
            panic!("seed {}: {e}", path.display());
        }
    }
    for path in seeds.iter().chain(&inputs("regressions", "idx")) {
        let bytes = std::fs::read(path).expect("read");
        if let Err(e) = sanity_data::idx::parse_idx(&bytes, path) {
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        let _ = sanity_data::idx::read_idx(path);
    }
}

#[test]
fn npy_inputs_parse_or_fail_cleanly() {
    let seeds = inputs("corpus", "npy");
    assert!(!seeds.is_empty(), "the seeds are committed");
    // The seeds are valid: an array, or an archive with an `images` member.
    for path in &seeds {
        let bytes = std::fs::read(path).expect("read");
        let array = match sanity_data::npy::npz_member(&bytes, "images", "seed") {
            Ok(member) => sanity_data::npy::parse_npy(&member, "seed:images"),
            Err(_) => sanity_data::npy::parse_npy(&bytes, "seed"),
        };
        if let Err(e) = array {
            panic!("seed {}: {e}", path.display());
        }
    }
    for path in seeds.iter().chain(&inputs("regressions", "npy")) {
        let bytes = std::fs::read(path).expect("read");
        let _ = sanity_data::npy::parse_npy(&bytes, "input");
        if let Ok(member) = sanity_data::npy::npz_member(&bytes, "images", "input") {
            let _ = sanity_data::npy::parse_npy(&member, "input:images");
        }
    }
}
