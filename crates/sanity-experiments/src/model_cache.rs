//! Trained models shared between runs: a sweep over methods, metrics or tests trains each model
//! once. A model is cached by what determines it: the architecture (the file's text for an
//! architecture TOML), the data config, the labels (true, or permuted with the data
//! randomisation test's stopping rule), the seed and the training config (but for how often it
//! checkpoints). Files are written
//! whole (temporary file + rename), so shards running side by side can share a cache, and a
//! run holds a lock on its key while it looks the model up and trains it ([`ModelCache::claim`]),
//! so shards that start together train each model once: the others wait and load it.

use crate::config::Config;
use crate::error::{ExperimentError, Result};
use sanity_data::fnv1a;
use sanity_model::{Architecture, EpochStats, Weights};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// A directory of cached models: `<key>.safetensors` and `<key>.json` (the epochs).
#[derive(Debug, Clone)]
pub struct ModelCache {
    dir: PathBuf,
}

impl ModelCache {
    /// The cache in `dir` (created on the first store).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// The key of the model of `config` trained on `labels` (`true`, or a description of the
    /// random-label training).
    pub fn key(config: &Config, labels: &str) -> String {
        let arch = &config.model.arch;
        let arch_text = std::fs::read_to_string(arch).unwrap_or_default();
        let data = toml::to_string(&config.data).unwrap_or_default();
        // How often checkpoints are written does not change the model (and keys of configs
        // that write none stay what they were).
        let training = crate::config::TrainingConfig { checkpoint_every: 0, ..config.training.clone() };
        let training = toml::to_string(&training).unwrap_or_default();
        let text = format!("{arch}\u{1f}{arch_text}\u{1f}{data}\u{1f}{training}\u{1f}{labels}\u{1f}{}", config.seed);
        format!("{:016x}", fnv1a(text.as_bytes()))
    }

    /// An exclusive lock on `key` (the file `<key>.lock`), held until the claim is dropped: take
    /// it before [`ModelCache::load`] and keep it through training and [`ModelCache::store`].
    /// When another process (or thread) holds it, `on_wait` is told the lock file and this
    /// waits, checking `stop` ten times a second: a stop is [`ExperimentError::InterruptedEarly`].
    /// The lock is advisory (`flock`, released when its holder exits, however it exits). Where
    /// the lock file cannot be made or locked (a read-only cache, a file system without
    /// locks), the claim holds nothing and `on_wait` gets the reason: the run goes on, and may
    /// train a model another run is training too.
    pub fn claim(&self, key: &str, stop: &dyn Fn() -> bool, on_wait: &mut dyn FnMut(String)) -> Result<CacheClaim> {
        let path = self.dir.join(format!("{key}.lock"));
        let opened = std::fs::create_dir_all(&self.dir)
            .and_then(|()| File::options().create(true).truncate(false).write(true).open(&path));
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                on_wait(format!("cannot make the lock {} ({e}); going on without it", path.display()));
                return Ok(CacheClaim { file: None });
            }
        };
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(CacheClaim { file: Some(file) }),
                Err(TryLockError::WouldBlock) => {
                    if !told {
                        on_wait(format!(
                            "waiting for another run that is training model {key} (lock {})",
                            path.display()
                        ));
                        told = true;
                    }
                    if stop() {
                        let what =
                            format!("stopped while waiting for another run's training (lock {})", path.display());
                        return Err(ExperimentError::InterruptedEarly { what });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => {
                    on_wait(format!("cannot lock {} ({e}); going on without the lock", path.display()));
                    return Ok(CacheClaim { file: None });
                }
            }
        }
    }

    /// Where the model of `key` keeps its training checkpoints while it trains.
    pub fn checkpoint_dir(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.checkpoints"))
    }

    /// The cached weights and epochs of `key`, if any.
    pub fn load(&self, key: &str, arch: &Architecture) -> Result<Option<(Weights, Vec<EpochStats>)>> {
        let (weights, epochs) = (self.dir.join(format!("{key}.safetensors")), self.dir.join(format!("{key}.json")));
        if !(weights.exists() && epochs.exists()) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&epochs).map_err(|e| ExperimentError::io(&epochs, e))?;
        let stats: Vec<EpochStats> = serde_json::from_str(&text).map_err(|e| ExperimentError::io(&epochs, e))?;
        Ok(Some((Weights::load_safetensors(&weights, arch)?, stats)))
    }

    /// Stores `weights` and `epochs` under `key`.
    pub fn store(&self, key: &str, weights: &Weights, epochs: &[EpochStats]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ExperimentError::io(&self.dir, e))?;
        let unique = format!("{}.{}", std::process::id(), key);
        let (tmp_w, tmp_e) =
            (self.dir.join(format!("{unique}.tmp.safetensors")), self.dir.join(format!("{unique}.tmp.json")));
        weights.save_safetensors(&tmp_w)?;
        let json = serde_json::to_vec(epochs).map_err(|e| ExperimentError::io(&tmp_e, e))?;
        std::fs::write(&tmp_e, json).map_err(|e| ExperimentError::io(&tmp_e, e))?;
        let (w, e) = (self.dir.join(format!("{key}.safetensors")), self.dir.join(format!("{key}.json")));
        std::fs::rename(&tmp_w, &w).map_err(|err| ExperimentError::io(&w, err))?;
        std::fs::rename(&tmp_e, &e).map_err(|err| ExperimentError::io(&e, err))
    }
}

/// A held [`ModelCache::claim`]; dropping it releases the lock.
#[derive(Debug)]
pub struct CacheClaim {
    file: Option<File>,
}

impl CacheClaim {
    /// Whether the lock is held (false where none could be made).
    pub fn is_held(&self) -> bool {
        self.file.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    #[test]
    fn a_second_claim_on_a_key_waits_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = ModelCache::new(&tmp.path().join("cache"));
        let never = || false;
        let first = cache.claim("k", &never, &mut |m| panic!("the first claim waited: {m}")).expect("claim");
        let released = AtomicBool::new(false);
        let (waiting_tx, waiting_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let (cache, released) = (&cache, &released);
            // The sender moves into the thread: if it never waits, `recv` below fails, not hangs.
            let second = scope.spawn(move || {
                let mut notes = Vec::new();
                let claim = cache.claim("k", &never, &mut |m| {
                    notes.push(m);
                    waiting_tx.send(()).expect("send");
                });
                // Only the first claim's drop lets this one through.
                assert!(released.load(Ordering::SeqCst), "the second claim got the lock while the first held it");
                (claim.expect("claim"), notes)
            });
            waiting_rx.recv().expect("the second claim says it waits");
            let other = cache.claim("other key", &never, &mut |m| panic!("another key waited: {m}")).expect("claim");
            // Asked to stop while it waits: an interruption, not a lock.
            let stopped = cache.claim("k", &|| true, &mut |_| {});
            assert!(matches!(stopped, Err(ExperimentError::InterruptedEarly { .. })), "{stopped:?}");
            released.store(true, Ordering::SeqCst);
            drop(first);
            let (_claim, notes) = second.join().expect("joins");
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(notes[0].contains("waiting for another run that is training model k"), "{notes:?}");
            drop(other);
        });
    }

    #[test]
    fn keys_ignore_how_often_training_checkpoints_but_not_how_it_trains() {
        let parse = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(ToString::to_string).collect();
            Config::parse(crate::QUICK_TOML, "quick.toml", &sets).expect("config")
        };
        let key = |sets: &[&str]| ModelCache::key(&parse(sets), "true");
        assert_eq!(key(&[]), key(&["training.checkpoint_every=5"]));
        assert_ne!(key(&[]), key(&["training.learning_rate=0.5"]));
        assert_ne!(key(&[]), key(&["seed=3"]));
    }

    #[test]
    fn a_cache_where_no_lock_can_be_made_is_still_used() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // The cache folder is a file: no lock file can be made under it.
        let blocked = tmp.path().join("not-a-folder");
        std::fs::write(&blocked, b"").expect("write");
        let mut notes = Vec::new();
        let claim = ModelCache::new(&blocked).claim("k", &|| false, &mut |m| notes.push(m));
        assert!(claim.is_ok(), "{claim:?}");
        assert!(notes.len() == 1 && notes[0].contains("going on without it"), "{notes:?}");
    }
}
