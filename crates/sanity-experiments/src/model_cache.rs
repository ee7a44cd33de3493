//! Trained models shared between runs: a sweep over methods, metrics or tests trains each model
//! once. A model is cached by what it depends on, by content ([`ModelInputs`]): the resolved
//! architecture, a hash of the images and labels it is trained on (not their file names), the
//! training settings (but for how often it checkpoints), the labels (true, or permuted with the
//! data randomisation test's stopping rule) and the seed. The key is a hash of them, and a hit is
//! checked, not assumed: the entry records its inputs, and an entry whose inputs differ from the
//! ones asked for (a hash collision, an entry of an older format) or whose weights do not load
//! is passed over with a note and trained again. Files are written whole (temporary file +
//! rename), so shards running side by side can share a cache, and a run holds a lock on its key
//! while it looks the model up and trains it ([`ModelCache::claim`]), so shards that start
//! together train each model once: the others wait and load it.

use sanity_data::fnv1a;
use sanity_model::{EpochStats, Net, NetSpec, Weights};
use sanity_rundir::config::{Config, TrainingConfig};
use sanity_rundir::error::{ExperimentError, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// Everything a trained model depends on, by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInputs {
    /// The resolved network (a preset's layers, an architecture file's content, or a graph's
    /// description hashed).
    pub architecture: NetSpec,
    /// [`sanity_data::Dataset::fingerprint`] of the images and the labels trained on.
    pub data: String,
    /// The training settings, `checkpoint_every` set to 0 (it does not change the model).
    pub training: TrainingConfig,
    /// `true`, or a description of the random-label training.
    pub labels: String,
    /// The training seed, as a string (TOML and JSON integers end before 2^64).
    pub seed: String,
    /// The version of the code that trains (`sanity-model`'s): a model trained by another
    /// version may differ, and is trained again.
    pub trainer: String,
}

impl ModelInputs {
    /// The inputs of the model of `config` and `net` trained on data with fingerprint
    /// `data` and labels `labels`.
    pub fn new(config: &Config, net: &Net, data: String, labels: &str) -> Self {
        Self {
            architecture: net.spec(),
            data,
            training: TrainingConfig { checkpoint_every: 0, ..config.training.clone() },
            labels: labels.to_string(),
            seed: config.seed.to_string(),
            trainer: format!("sanity-model {} ({})", env!("CARGO_PKG_VERSION"), sanity_model::train::TRAINER),
        }
    }

    /// The cache key: a hash of the inputs.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).expect("model inputs serialise to JSON");
        format!("{:016x}", fnv1a(text.as_bytes()))
    }

    /// What differs between `self` (the inputs asked for) and `other`, in words.
    pub fn differences(&self, other: &ModelInputs) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.architecture != other.architecture {
            out.push("the architecture");
        }
        if self.data != other.data {
            out.push("the training data (images or labels)");
        }
        if self.training != other.training {
            out.push("the training settings");
        }
        if self.labels != other.labels {
            out.push("the labels trained on");
        }
        if self.seed != other.seed {
            out.push("the seed");
        }
        if self.trainer != other.trainer {
            out.push("the version of the training code");
        }
        out
    }
}

/// A trained model's record: what it was trained on, and its epochs. The cache keeps one as
/// `<key>.json` beside `<key>.safetensors`, a run directory as `model.json` beside
/// `model.safetensors` (written after it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// What the model was trained on.
    pub inputs: ModelInputs,
    /// [`crate::run_inputs::file_hash`] of the weights file it describes.
    pub weights: String,
    /// Every epoch's statistics.
    pub epochs: Vec<EpochStats>,
}

impl ModelRecord {
    /// Reads the record at `path`: None when there is none or it cannot be read as one (an
    /// older format), with the reason.
    pub fn read(path: &Path) -> std::result::Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("not a model record ({e})"))
    }

    /// Writes the record to `path` whole.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ExperimentError::io(path, e))?;
        sanity_rundir::files::write_atomic(path, &json)
    }
}

/// A directory of cached models: `<key>.safetensors` and `<key>.json` (its [`ModelRecord`]).
#[derive(Debug, Clone)]
pub struct ModelCache {
    dir: PathBuf,
}

impl ModelCache {
    /// The cache in `dir` (created on the first store).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
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

    /// The cached weights and epochs of the model of `inputs`, if the cache has it. An entry
    /// under the key whose record differs from `inputs`, or that cannot be read, is passed over
    /// (`on_note` says why), to be trained again and replaced.
    pub fn load(
        &self,
        inputs: &ModelInputs,
        net: &Net,
        on_note: &mut dyn FnMut(String),
    ) -> Result<Option<(Weights, Vec<EpochStats>)>> {
        let key = inputs.key();
        let (weights, record) = (self.dir.join(format!("{key}.safetensors")), self.dir.join(format!("{key}.json")));
        if !(weights.exists() && record.exists()) {
            return Ok(None);
        }
        let mut pass_over = |why: String| {
            on_note(format!("model cache entry {key} passed over ({why}); training it again"));
            Ok(None)
        };
        let stored = match ModelRecord::read(&record) {
            Ok(stored) => stored,
            Err(why) => return pass_over(format!("{}: {why}", record.display())),
        };
        let differs = inputs.differences(&stored.inputs);
        if !differs.is_empty() {
            return pass_over(format!("it was trained on other inputs: {} differ", differs.join(", ")));
        }
        let (hash, loaded) = crate::run_inputs::read_weights(&weights, net)?;
        if hash != stored.weights {
            return pass_over(format!("{} is not the file its record describes", weights.display()));
        }
        match loaded {
            Ok(loaded) => Ok(Some((loaded, stored.epochs))),
            Err(e) => pass_over(e.to_string()),
        }
    }

    /// Stores `weights` and `epochs` of the model of `inputs`.
    pub fn store(&self, inputs: &ModelInputs, weights: &Weights, epochs: &[EpochStats]) -> Result<()> {
        let key = inputs.key();
        std::fs::create_dir_all(&self.dir).map_err(|e| ExperimentError::io(&self.dir, e))?;
        let unique = format!("{}.{}", std::process::id(), key);
        let (tmp_w, tmp_e) =
            (self.dir.join(format!("{unique}.tmp.safetensors")), self.dir.join(format!("{unique}.tmp.json")));
        weights.save_safetensors(&tmp_w)?;
        let hash = crate::run_inputs::file_hash(&tmp_w)?;
        let record = ModelRecord { inputs: inputs.clone(), weights: hash, epochs: epochs.to_vec() };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| ExperimentError::io(&tmp_e, e))?;
        std::fs::write(&tmp_e, json).map_err(|e| ExperimentError::io(&tmp_e, e))?;
        let (w, e) = (self.dir.join(format!("{key}.safetensors")), self.dir.join(format!("{key}.json")));
        // The record last: an entry is only read when both files are there, and its weights
        // are never older than its record.
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
    fn a_record_read_back_writes_the_same_bytes() {
        // A model from the cache records its epochs as read from the cache's record; without
        // exact float parsing a loss such as this one came back an ulp off, and a run's
        // `model.json` then depended on whether its model was trained or cached.
        let stats = |loss: f64| EpochStats { epoch: 1, loss, running_accuracy: 0.1, train_accuracy: Some(0.2) };
        let epochs = vec![stats(1.9889554660531539), stats(1.8794891064680075), stats(0.1 + 0.2)];
        let text = serde_json::to_string_pretty(&epochs).expect("serialises");
        let back: Vec<EpochStats> = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, epochs);
        assert_eq!(serde_json::to_string_pretty(&back).expect("serialises"), text);
    }

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

    fn quick(sets: &[&str]) -> (Config, Net) {
        let sets: Vec<String> = sets.iter().map(ToString::to_string).collect();
        let config = Config::parse(crate::QUICK_TOML, "quick.toml", &sets).expect("config");
        let plan = crate::Plan::new(config.clone(), "quick.toml").expect("plan");
        (config, plan.net)
    }

    #[test]
    fn keys_follow_the_data_s_content_and_the_training_but_not_checkpointing() {
        let key = |sets: &[&str], data: &str| {
            let (config, arch) = quick(sets);
            ModelInputs::new(&config, &arch, data.into(), "true").key()
        };
        assert_eq!(key(&[], "d"), key(&["training.checkpoint_every=5"], "d"));
        assert_ne!(key(&[], "d"), key(&["training.learning_rate=0.5"], "d"));
        assert_ne!(key(&[], "d"), key(&["seed=3"], "d"));
        // Same config, other bytes under the same file names: another model.
        assert_ne!(key(&[], "d"), key(&[], "e"));
    }

    #[test]
    fn a_hit_is_checked_against_its_record_and_its_weights() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = ModelCache::new(tmp.path());
        let (config, arch) = quick(&[]);
        let inputs = ModelInputs::new(&config, &arch, "data".into(), "true");
        let weights = arch.init(0).expect("weights");
        cache.store(&inputs, &weights, &[]).expect("store");
        let mut notes = Vec::new();
        assert!(cache.load(&inputs, &arch, &mut |n| notes.push(n)).expect("load").is_some());
        assert!(notes.is_empty(), "{notes:?}");
        // A record under the key whose inputs differ (a collision, a stale entry) is no hit.
        let key = inputs.key();
        let other = ModelInputs { data: "other data".into(), ..inputs.clone() };
        let hash = crate::run_inputs::file_hash(&tmp.path().join(format!("{key}.safetensors"))).expect("hash");
        ModelRecord { inputs: other, weights: hash, epochs: Vec::new() }
            .write(&tmp.path().join(format!("{key}.json")))
            .expect("w");
        assert!(cache.load(&inputs, &arch, &mut |n| notes.push(n)).expect("load").is_none());
        assert!(notes[0].contains("the training data (images or labels) differ"), "{notes:?}");
        // Damaged weights are no hit either.
        cache.store(&inputs, &weights, &[]).expect("store");
        std::fs::write(tmp.path().join(format!("{key}.safetensors")), b"not safetensors").expect("write");
        assert!(cache.load(&inputs, &arch, &mut |n| notes.push(n)).expect("load").is_none());
        assert!(notes[1].contains("passed over"), "{notes:?}");
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
