//! `units.jsonl`, the journal of a run directory: one line per finished unit of work (an image
//! batch), written after the unit's score rows are flushed: the batch, how many rows it wrote
//! and the length of `scores.csv.partial` after them. `--resume` truncates the partial file to
//! the last complete line and goes on with the batches not listed; `sanity merge` cuts each
//! shard's `scores.csv` into batches with it.

use crate::error::{ExperimentError, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal's file name in a run directory.
pub const JOURNAL: &str = "units.jsonl";

/// One finished unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// The image batch (0-based, in the order of the explained images).
    pub batch: usize,
    /// Score rows it wrote.
    pub rows: usize,
    /// Length of the scores file after its rows, in bytes.
    pub bytes: u64,
}

/// The complete records of the journal at `path` (none when it does not exist). A last line
/// cut short by a kill is ignored; any other unreadable line is an error naming the line.
pub fn read_journal(path: &Path) -> Result<Vec<UnitRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ExperimentError::io(path, e)),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<UnitRecord>(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() && !complete => break,
            Err(e) => {
                return Err(ExperimentError::Output {
                    path: path.display().to_string(),
                    message: format!("line {}: {e}; the journal is damaged (start again with --force)", i + 1),
                });
            }
        }
    }
    Ok(records)
}

/// Checks `scores` (a scores file's bytes, header first) against the journal `units` of the
/// run that wrote it: every journalled batch must be in the file whole, as many CSV rows as
/// recorded, each with the header's columns. With `trailing`, bytes after the last journalled
/// batch (a batch in flight when a run was killed) are allowed; without, the file must end
/// there. The message names the batch and what is wrong.
pub fn check_rows(scores: &[u8], units: &[UnitRecord], trailing: bool) -> std::result::Result<(), String> {
    let header = scores.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    if header == 0 {
        return Err("has no complete header line".into());
    }
    let columns = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&scores[..header])
        .records()
        .next()
        .and_then(|r| r.ok())
        .map_or(0, |r| r.len());
    let mut start = header as u64;
    for unit in units {
        let batch = unit.batch;
        if unit.bytes < start || unit.bytes > scores.len() as u64 {
            return Err(format!(
                "is {} bytes long, but its journal ({JOURNAL}) records batch {batch} ending at byte {} (cut short?)",
                scores.len(),
                unit.bytes
            ));
        }
        let bytes = &scores[start as usize..unit.bytes as usize];
        if bytes.last().is_some_and(|&b| b != b'\n') {
            return Err(format!("batch {batch} ends inside a row"));
        }
        let mut rows = 0usize;
        for record in csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes).records() {
            let record = record.map_err(|e| format!("batch {batch}: {e}"))?;
            if record.len() != columns {
                return Err(format!(
                    "batch {batch}: a row of {} fields where the header has {columns} (a row cut short?)",
                    record.len()
                ));
            }
            rows += 1;
        }
        if rows != unit.rows {
            return Err(format!("batch {batch} has {rows} rows, but its journal recorded {}", unit.rows));
        }
        start = unit.bytes;
    }
    if !trailing && start != scores.len() as u64 {
        return Err(format!(
            "has {} bytes after its last journalled batch (a batch whose journal line is missing)",
            scores.len() as u64 - start
        ));
    }
    Ok(())
}

/// Appends records to a journal.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens `path` for appending (created if missing). A torn last line is cut off first.
    pub fn open(path: &Path, keep: &[UnitRecord]) -> Result<Self> {
        let mut text = String::new();
        for record in keep {
            text += &serde_json::to_string(record).map_err(|e| ExperimentError::io(path, e))?;
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| ExperimentError::io(path, e))?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| ExperimentError::io(path, e))?;
        Ok(Self { file, path: path.to_path_buf() })
    }

    /// Appends one record and writes it through to the disk (the rows it vouches for must be
    /// synced before it: [`crate::rows::RowWriter::sync`]).
    pub fn record(&mut self, record: UnitRecord) -> Result<()> {
        let line = serde_json::to_string(&record).map_err(|e| ExperimentError::io(&self.path, e))? + "\n";
        self.file.write_all(line.as_bytes()).map_err(|e| ExperimentError::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| ExperimentError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ignored_and_the_rest_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL);
        assert!(read_journal(&path).expect("missing is empty").is_empty());
        let records = [UnitRecord { batch: 0, rows: 10, bytes: 500 }, UnitRecord { batch: 2, rows: 8, bytes: 900 }];
        let mut journal = Journal::open(&path, &records[..1]).expect("open");
        journal.record(records[1]).expect("record");
        assert_eq!(read_journal(&path).expect("read"), records);
        let mut torn = std::fs::read_to_string(&path).expect("text");
        torn += "{\"batch\": 3, \"ro";
        std::fs::write(&path, &torn).expect("write");
        assert_eq!(read_journal(&path).expect("torn tail ignored"), records);
        std::fs::write(&path, "garbage\n{\"batch\":1,\"rows\":1,\"bytes\":1}\n").expect("write");
        assert!(read_journal(&path).expect_err("damaged").to_string().contains("line 1"));
    }
}
