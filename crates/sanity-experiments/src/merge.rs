//! `sanity merge DIR... --out DIR`: the shards of sharded runs (`--shard K/N`) combined into the
//! files one unsharded run writes. Each run's batches are taken, in batch order, from the shard
//! that ran them (cut out of its `scores.csv` by its `units.jsonl`), byte for byte; the summary
//! and verdicts are then computed from all rows. Only the manifest's timings, host and shard
//! fields differ from an unsharded run.
//!
//! Every shard is checked against its journal before anything is written: its `scores.csv`
//! must be exactly as long as the journal says, each batch's bytes whole CSV rows (as many as
//! the journal recorded, each with the header's columns), and every batch of every run must be
//! in some shard. Anything else is refused (bad input), naming the shard and the batch. The
//! output is assembled in a staging folder beside `--out` and moved into place only when whole,
//! so a refused or failed merge leaves no partial output behind.

use crate::run::write_reports;
use sanity_rundir::config::Config;
use sanity_rundir::error::{ExperimentError, Result};
use sanity_rundir::example_maps::MAPS_DIR;
use sanity_rundir::files::{CONFIG_RESOLVED, MANIFEST, SCORES, run_dirs, write_atomic};
use sanity_rundir::journal::{JOURNAL, Journal, UnitRecord, read_journal};
use sanity_rundir::manifest::Manifest;
use sanity_rundir::rows::ScoreRow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One shard's directory of one run.
struct Shard {
    dir: PathBuf,
    scores: Vec<u8>,
    units: Vec<UnitRecord>,
    manifest: Manifest,
}

fn output_error(path: &Path, message: impl Into<String>) -> ExperimentError {
    ExperimentError::Output { path: path.display().to_string(), message: message.into() }
}

fn read_shard(dir: &Path) -> Result<Shard> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| ExperimentError::io(&dir.join(name), e));
    let manifest = Manifest::read(&dir.join(MANIFEST))?
        .ok_or_else(|| output_error(&dir.join(MANIFEST), "missing: the shard has not finished"))?;
    let shard =
        Shard { dir: dir.to_path_buf(), scores: read(SCORES)?, units: read_journal(&dir.join(JOURNAL))?, manifest };
    check_shard(&shard)?;
    Ok(shard)
}

/// Checks a shard's `scores.csv` against its journal: its length, and each batch's rows.
fn check_shard(shard: &Shard) -> Result<()> {
    sanity_rundir::journal::check_rows(&shard.scores, &shard.units, false).map_err(|message| {
        output_error(
            &shard.dir.join(SCORES),
            format!("{message}; this shard is incomplete: run it again (--resume) before merging"),
        )
    })
}

/// Merges the runs found under `inputs` into `out` (one run: `out` itself; several: one
/// sub-directory per run id). Refuses an existing `out` unless `force`. Returns the run
/// directories written.
pub fn merge(inputs: &[PathBuf], out: &Path, force: bool) -> Result<Vec<PathBuf>> {
    let mut by_run: BTreeMap<String, Vec<Shard>> = BTreeMap::new();
    for input in inputs {
        // A run that started but did not finish in this shard would be merged without a word.
        if let Some(unfinished) = run_dirs(input, CONFIG_RESOLVED)?.iter().find(|d| !d.join(MANIFEST).exists()) {
            return Err(output_error(
                unfinished,
                "holds a run that did not finish (no manifest.json); run it again (--resume) before merging",
            ));
        }
        let dirs = run_dirs(input, MANIFEST)?;
        if dirs.is_empty() {
            return Err(output_error(input, "holds no run (no manifest.json in it or in its sub-directories)"));
        }
        for dir in dirs {
            let shard = read_shard(&dir)?;
            let id = shard.manifest.run_id.clone();
            if id.is_empty() {
                return Err(output_error(&dir.join(MANIFEST), "has no run_id"));
            }
            by_run.entry(id).or_default().push(shard);
        }
    }
    if out.exists() && !force {
        return Err(output_error(out, "exists; pass --force to replace it or choose another --out"));
    }
    if out.exists() && !out.is_dir() {
        return Err(output_error(out, "is a file, not a folder; choose another --out"));
    }
    // Assembled beside `out` (the same file system, so the files move by renaming), and moved
    // into place only when every run is whole.
    let name = out.file_name().map_or_else(|| "merged".into(), |n| n.to_string_lossy().into_owned());
    let staging = out.with_file_name(format!(".{name}.merging-{}", std::process::id()));
    let single = by_run.len() == 1;
    let assembled = (|| -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (run_id, shards) in &by_run {
            let dir = if single { staging.clone() } else { staging.join(run_id) };
            merge_run(run_id, shards, &dir)?;
            written.push(if single { out.to_path_buf() } else { out.join(run_id) });
        }
        Ok(written)
    })();
    let moved = assembled.and_then(|written| {
        if !out.exists() {
            // One rename: the output appears whole or not at all.
            return std::fs::rename(&staging, out).map(|()| written).map_err(|e| ExperimentError::io(out, e));
        }
        for dir in &written {
            crate::run::remove_derived(dir)?;
        }
        move_into(&staging, out).map(|()| written)
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

/// Moves the files under `from` to the same paths under `to` (replacing files there).
fn move_into(from: &Path, to: &Path) -> Result<()> {
    place_tree(from, to, &|source, target| std::fs::rename(source, target))
}

/// Writes the run `run_id` of `shards` into `dir`: its scores batch by batch, its journal,
/// config, models, inputs and example maps, then its summary, verdicts and manifest.
fn merge_run(run_id: &str, shards: &[Shard], dir: &Path) -> Result<()> {
    let first = &shards[0];
    let config_text = std::fs::read_to_string(first.dir.join(CONFIG_RESOLVED))
        .map_err(|e| ExperimentError::io(&first.dir.join(CONFIG_RESOLVED), e))?;
    check_one_run(run_id, shards)?;
    let source = first.dir.join(CONFIG_RESOLVED).display().to_string();
    let config = Config::parse(&config_text, &source, &[])?;
    let batches = config.attribution.n_images.div_ceil(config.attribution.batch_size.max(1));
    let (header, pieces) = batch_pieces(run_id, shards, batches)?;
    std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))?;
    let mut scores: Vec<u8> = header.to_vec();
    let mut journal = Journal::open(&dir.join(JOURNAL), &[])?;
    for (batch, (bytes, rows)) in pieces.iter().enumerate() {
        scores.extend_from_slice(bytes);
        journal.record(UnitRecord { batch, rows: *rows, bytes: scores.len() as u64 })?;
    }
    write_atomic(&dir.join(SCORES), &scores)?;
    write_atomic(&dir.join(CONFIG_RESOLVED), config_text.as_bytes())?;
    use crate::run_models::{MODEL_FILE, MODEL_RECORD, RANDOM_LABEL_MODEL_FILE, RANDOM_LABEL_MODEL_RECORD};
    let kept = [
        MODEL_FILE,
        MODEL_RECORD,
        RANDOM_LABEL_MODEL_FILE,
        RANDOM_LABEL_MODEL_RECORD,
        crate::run_inputs::INPUTS,
        crate::run_inputs::SPLIT,
    ];
    for model in kept {
        if first.dir.join(model).exists() {
            std::fs::copy(first.dir.join(model), dir.join(model))
                .map_err(|e| ExperimentError::io(&dir.join(model), e))?;
        }
    }
    // The example maps: each shard kept those of the batches it ran.
    for shard in shards {
        copy_tree(&shard.dir.join(MAPS_DIR), &dir.join(MAPS_DIR))?;
    }
    let rows: Vec<ScoreRow> = csv::Reader::from_reader(scores.as_slice())
        .deserialize()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| output_error(&dir.join(SCORES), format!("{e}; a shard's rows do not parse (edited?)")))?;
    let params: Vec<(String, String)> = first.manifest.params.clone().into_iter().collect();
    let reached = first.manifest.random_label_model.as_ref().map(|r| r.reached_target);
    let _ = write_reports(dir, &config, &params, &rows, reached)?;
    let manifest = Manifest {
        shard: None,
        merged_from: shards.iter().map(|s| s.dir.display().to_string()).collect(),
        timings_s: summed_timings(shards),
        ..first.manifest.clone()
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ExperimentError::io(dir, e))?;
    write_atomic(&dir.join(MANIFEST), &json)
}

/// Refuses shards that are not one run: the same config, and the same inputs by content (data,
/// architecture, given weights) and trained models; shards run on other data (another node,
/// data replaced between resubmissions) are not one run.
fn check_one_run(run_id: &str, shards: &[Shard]) -> Result<()> {
    let first = &shards[0];
    let read_or_empty = |dir: &Path, name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    for shard in &shards[1..] {
        for (name, what) in [
            (CONFIG_RESOLVED, "config"),
            (crate::run_inputs::INPUTS, "inputs (data, architecture or given weights)"),
            // The records hold the weights files' hashes: the models need not be read again.
            (crate::run_models::MODEL_RECORD, "trained model"),
            (crate::run_models::RANDOM_LABEL_MODEL_RECORD, "random-label model"),
        ] {
            if read_or_empty(&shard.dir, name) != read_or_empty(&first.dir, name) {
                return Err(output_error(
                    &shard.dir,
                    format!("run {run_id}: its {what} ({name}) differs from {}'s", first.dir.display()),
                ));
            }
        }
    }
    Ok(())
}

/// One batch's score rows as a shard wrote them, and how many rows they are.
type Piece<'a> = (&'a [u8], usize);

/// The score rows' header, and each of the `batches` batches from the first shard that
/// finished it: the bytes of its rows and their count. A batch no shard finished is refused.
fn batch_pieces<'a>(run_id: &str, shards: &'a [Shard], batches: usize) -> Result<(&'a [u8], Vec<Piece<'a>>)> {
    let mut header: Option<&[u8]> = None;
    let mut pieces: Vec<Piece> = Vec::with_capacity(batches);
    for batch in 0..batches {
        let found = shards.iter().find_map(|s| {
            let at = s.units.iter().position(|u| u.batch == batch)?;
            let start = match at {
                0 => header_len(&s.scores),
                _ => s.units[at - 1].bytes as usize,
            };
            let end = (s.units[at].bytes as usize).min(s.scores.len());
            Some((s, &s.scores[start.min(end)..end], s.units[at].rows))
        });
        let Some((shard, bytes, rows)) = found else {
            let dirs: Vec<String> = shards.iter().map(|s| s.dir.display().to_string()).collect();
            return Err(output_error(
                Path::new(&dirs.join(", ")),
                format!("run {run_id}: batch {batch} of {batches} is in none of these shards; run the missing shard"),
            ));
        };
        header.get_or_insert(&shard.scores[..header_len(&shard.scores)]);
        pieces.push((bytes, rows));
    }
    Ok((header.unwrap_or_default(), pieces))
}

/// Copies the files under `from` (when it exists) to the same paths under `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    place_tree(from, to, &|source, target| std::fs::copy(source, target).map(|_| ()))
}

/// Puts each file under `from` (when it exists) at the same path under `to` with `place`
/// (a copy or a rename), making the folders.
fn place_tree(from: &Path, to: &Path, place: &dyn Fn(&Path, &Path) -> std::io::Result<()>) -> Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ExperimentError::io(from, e)),
    };
    std::fs::create_dir_all(to).map_err(|e| ExperimentError::io(to, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ExperimentError::io(from, e))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            place_tree(&source, &target, place)?;
        } else {
            place(&source, &target).map_err(|e| ExperimentError::io(&target, e))?;
        }
    }
    Ok(())
}

/// The length of the header line of a CSV file's bytes (0 when empty).
fn header_len(scores: &[u8]) -> usize {
    scores.iter().position(|&b| b == b'\n').map_or(scores.len(), |i| i + 1)
}

/// The shards' phase timings added up (CPU time spent on the run over all shards).
fn summed_timings(shards: &[Shard]) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for shard in shards {
        for (name, seconds) in &shard.manifest.timings_s {
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += seconds,
                None => sums.push((name.clone(), *seconds)),
            }
        }
    }
    sums
}
