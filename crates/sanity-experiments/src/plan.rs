//! Config -> Plan: names resolved, defaults filled, everything checked. Only a plan can run.

use crate::checked::{RandomLabels, Randomization, Smoothing, Test, TestKind};
use crate::limits::{
    MAX_ATTRIBUTION_BATCH, MAX_DRAWS, MAX_EPOCHS, MAX_EXAMPLES, MAX_GENERATED_IMAGES, MAX_IMAGE_SIDE, MAX_RESAMPLES,
    MAX_SMOOTHING_NOISE, MAX_SMOOTHING_SAMPLES, MAX_TRAIN_BATCH, check_count, check_memory,
};
use sanity_data::folder::class_folders;
use sanity_data::rng::fnv1a;
use sanity_data::{
    Dataset, PhantomSpec, Split, fashion_mnist, generate_phantoms, load_arrays, load_image_folder, rows_of,
    split_indices,
};
use sanity_metrics::pipeline_label;
use sanity_model::graph_presets::{GRAPH_PRESETS, graph_preset};
use sanity_model::onnx::read_onnx;
use sanity_model::{Architecture, ArchitectureSpec, Net, PRESETS, Reinit, Weights, preset};
use sanity_rundir::config::{
    AttributionConfig, ComparisonConfig, Config, DataConfig, ModelConfig, Stages, TestConfig, TrainingConfig,
};
use sanity_rundir::error::{ExperimentError, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// A checked experiment, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config with every default resolved (written as `config.resolved.toml`).
    pub config: Config,
    /// Its tests, checked, in config order: what the engine runs.
    pub tests: Vec<Test>,
    /// Where the config came from (for messages).
    pub source: String,
    /// Stable id derived from the resolved config: `seed<seed>-<hash>`.
    pub run_id: String,
    /// The network explained.
    pub net: Net,
    /// The weights an ONNX model came with (`model.onnx`).
    pub onnx_weights: Option<Weights>,
    /// Where the images come from.
    pub data: DataPlan,
    /// The swept keys and values that made this run (empty outside a sweep).
    pub params: crate::sweep::Params,
}

/// Where each image of a data set came from, as written to a run's `split.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Origins {
    /// `(source, row)` of each training image, in the training set's order.
    pub train: Vec<(String, String)>,
    /// `(source, row)` of each test image, in the test set's order (`sample` in the CSVs).
    pub test: Vec<(String, String)>,
}

/// The checked data source.
#[derive(Debug, Clone)]
pub enum DataPlan {
    /// Generated phantoms: the training and test sets.
    Phantom(PhantomSpec, PhantomSpec),
    /// NumPy arrays or an image folder, read and split when the plan is made: the training and
    /// test sets.
    Loaded(&'static str, Arc<(Dataset, Dataset)>, Arc<Origins>),
    /// Fashion-MNIST files in a directory, with optional limits.
    FashionMnist {
        /// The directory.
        dir: std::path::PathBuf,
        /// First n training images.
        n_train: Option<usize>,
        /// First n test images.
        n_test: Option<usize>,
    },
}

/// The test arrays of an `arrays` source, where given.
struct TestArrays {
    images: Option<String>,
    labels: Option<String>,
    masks: Option<String>,
}

impl DataPlan {
    /// The plan of a data config. NumPy arrays are read and checked here, so that a bad file
    /// stops the plan; the message names it.
    /// Size-like values are checked first, and the memory the data set will take: errors name
    /// `source` (the config, or `--data`) and the key.
    pub fn from_config(config: &DataConfig, source: &str) -> Result<Self> {
        check_data_bounds(config).map_err(|(key, message)| ExperimentError::keyed(source, key, message))?;
        let plan = Self::read(config)?;
        let [c, h, w] = plan.image_shape().map(|d| d as u128);
        let bytes = (plan.n_train() + plan.n_test()) as u128 * c * h * w * 4;
        check_memory("the data set", bytes).map_err(|message| ExperimentError::keyed(source, "data", message))?;
        Ok(plan)
    }

    fn read(config: &DataConfig) -> Result<Self> {
        Ok(match config.clone() {
            DataConfig::Phantom { n_train, n_test, size, noise_std, effusion_fraction, shortcut_rate } => {
                let phantom = |n| PhantomSpec { n, size, noise_std, effusion_fraction, shortcut_rate };
                DataPlan::Phantom(phantom(n_train), phantom(n_test))
            }
            DataConfig::FashionMnist { dir, n_train, n_test } => DataPlan::FashionMnist { dir, n_train, n_test },
            DataConfig::Arrays {
                images,
                labels,
                test_images,
                test_labels,
                masks,
                test_masks,
                test_fraction,
                split_seed,
                scale,
                num_classes,
                class_names,
            } => {
                let mut train = load_arrays(&images, &labels, masks.as_deref(), scale, num_classes)?;
                if let Some(names) = class_names {
                    if names.len() != train.num_classes {
                        return Err(ExperimentError::config(
                            "data.class_names",
                            format!(
                                "{} names for {} classes; accepted: one name per class, in label order",
                                names.len(),
                                train.num_classes
                            ),
                        ));
                    }
                    train.class_names = names;
                }
                let test = TestArrays { images: test_images, labels: test_labels, masks: test_masks };
                Self::arrays(train, &images, test, scale, (test_fraction, split_seed))?
            }
            DataConfig::ImageFolder { test_dir: None, test_mask_dir: Some(_), .. } => {
                return Err(ExperimentError::config(
                    "data.test_mask_dir",
                    "test masks without test_dir; give test_dir, test_mask_dir and mask_dir, or mask_dir alone",
                ));
            }
            DataConfig::ImageFolder {
                dir,
                height,
                width,
                channels,
                test_dir,
                mask_dir,
                test_mask_dir,
                test_fraction,
                split_seed,
            } => Self::image_folder(
                (&dir, mask_dir.as_deref()),
                [height, width, channels],
                test_dir.as_deref().map(|d| (d, test_mask_dir.as_deref())),
                (test_fraction, split_seed),
            )?,
        })
    }

    /// Arrays: the training arrays `train` (read from `images`) and the test arrays when given,
    /// else a stratified split of `train` by `(test_fraction, split_seed)`.
    fn arrays(
        train: Dataset,
        images: &str,
        test: TestArrays,
        scale: sanity_data::Scale,
        (test_fraction, split_seed): (f64, u64),
    ) -> Result<Self> {
        match (test.images, test.labels) {
            (Some(ti), Some(tl)) => {
                if train.masks.is_some() != test.masks.is_some() {
                    let (key, missing) =
                        if train.masks.is_some() { ("test_masks", &ti) } else { ("masks", &images.to_string()) };
                    return Err(ExperimentError::config(
                        format!("data.{key}"),
                        format!(
                            "no masks for {missing}: masks given for only some images; give masks and test_masks, or neither"
                        ),
                    ));
                }
                let mut test = load_arrays(&ti, &tl, test.masks.as_deref(), scale, Some(train.num_classes))?;
                test.class_names = train.class_names.clone();
                if test.image_shape != train.image_shape {
                    return Err(ExperimentError::config(
                        ti,
                        format!(
                            "test images of shape {:?} but training images of shape {:?}",
                            test.image_shape, train.image_shape
                        ),
                    ));
                }
                let rows = |file: &str, n: usize| (0..n).map(|r| (file.to_string(), r.to_string())).collect();
                let origins = Origins { train: rows(images, train.len()), test: rows(&ti, test.len()) };
                Ok(DataPlan::Loaded("arrays", Arc::new((train, test)), Arc::new(origins)))
            }
            (None, None) if test.masks.is_none() => {
                let (train_rows, test_rows) = split_indices(&train, test_fraction, split_seed)
                    .map_err(|e| ExperimentError::config(images, e.to_string()))?;
                let at = |rows: &[usize]| rows.iter().map(|&r| (images.to_string(), r.to_string())).collect();
                let origins = Origins { train: at(&train_rows), test: at(&test_rows) };
                let sets = (rows_of(&train, &train_rows), rows_of(&train, &test_rows));
                Ok(DataPlan::Loaded("arrays", Arc::new(sets), Arc::new(origins)))
            }
            (None, None) if test.masks.is_some() => Err(ExperimentError::config(
                "data.test_masks",
                "test masks without test_images; give test_images, test_labels and test_masks, or masks alone",
            )),
            _ => Err(ExperimentError::config(
                "data",
                "give both test_images and test_labels, or neither (then test_fraction is held out)",
            )),
        }
    }

    /// An image folder at `dir` (class folders of images) read at `[height, width, channels]`,
    /// with its test folder when given, else a stratified split by `(test_fraction, split_seed)`.
    fn image_folder(
        (dir, mask_dir): (&Path, Option<&Path>),
        [height, width, channels]: [usize; 3],
        test_dir: Option<(&Path, Option<&Path>)>,
        (test_fraction, split_seed): (f64, u64),
    ) -> Result<Self> {
        if let Some((test_dir, test_mask_dir)) = test_dir
            && mask_dir.is_some() != test_mask_dir.is_some()
        {
            let (key, missing) = if mask_dir.is_some() { ("test_mask_dir", test_dir) } else { ("mask_dir", dir) };
            return Err(ExperimentError::config(
                format!("data.{key}"),
                format!(
                    "no masks for {}: masks given for only some images; give mask_dir and test_mask_dir, or neither",
                    missing.display()
                ),
            ));
        }
        let all = load_image_folder(dir, height, width, channels, mask_dir)?;
        // The files in the order they were read: class folders by name, then their files.
        let files = |d: &Path| -> Result<Vec<(String, String)>> {
            let classes = class_folders(d)?;
            Ok(classes.into_iter().flat_map(|(_, f)| f).map(|f| (f.display().to_string(), String::new())).collect())
        };
        let listed = files(dir)?;
        let (sets, origins) = match test_dir {
            Some((test_dir, test_mask_dir)) => {
                let test = load_image_folder(test_dir, height, width, channels, test_mask_dir)?;
                let names = |d: &Path| -> Result<Vec<String>> {
                    Ok(class_folders(d)?.into_iter().map(|(name, _)| name).collect())
                };
                let (a, b) = (names(dir)?, names(test_dir)?);
                if a != b {
                    return Err(ExperimentError::config(
                        test_dir.display().to_string(),
                        format!("test classes {b:?} differ from the training classes {a:?}"),
                    ));
                }
                let test_files = files(test_dir)?;
                ((all, test), Origins { train: listed, test: test_files })
            }
            None => {
                let bad = |e: sanity_data::DataError| ExperimentError::config(dir.display().to_string(), e.to_string());
                let (train_rows, test_rows) = split_indices(&all, test_fraction, split_seed).map_err(bad)?;
                let at = |rows: &[usize]| rows.iter().map(|&r| listed[r].clone()).collect();
                let origins = Origins { train: at(&train_rows), test: at(&test_rows) };
                ((rows_of(&all, &train_rows), rows_of(&all, &test_rows)), origins)
            }
        };
        Ok(DataPlan::Loaded("image_folder", Arc::new(sets), Arc::new(origins)))
    }

    /// Whether the data has ground-truth masks: the phantom's, or masks given with arrays or
    /// an image folder.
    pub fn has_masks(&self) -> bool {
        match self {
            DataPlan::Phantom(..) => true,
            DataPlan::Loaded(_, sets, _) => sets.1.masks.is_some(),
            DataPlan::FashionMnist { .. } => false,
        }
    }

    /// Training images that will be used.
    pub fn n_train(&self) -> usize {
        match self {
            DataPlan::Phantom(train, _) => train.n,
            DataPlan::FashionMnist { n_train, .. } => n_train.unwrap_or(60_000).min(60_000),
            DataPlan::Loaded(_, sets, _) => sets.0.len(),
        }
    }

    /// Test images that will be used.
    pub fn n_test(&self) -> usize {
        match self {
            DataPlan::Phantom(_, test) => test.n,
            DataPlan::FashionMnist { n_test, .. } => n_test.unwrap_or(10_000).min(10_000),
            DataPlan::Loaded(_, sets, _) => sets.1.len(),
        }
    }

    /// `[c, h, w]` of the images.
    pub fn image_shape(&self) -> [usize; 3] {
        match self {
            DataPlan::Phantom(spec, _) => [1, spec.size, spec.size],
            DataPlan::FashionMnist { .. } => [1, 28, 28],
            DataPlan::Loaded(_, sets, _) => sets.0.image_shape,
        }
    }

    /// The number of distinct labels of a loaded training set (None: a generated or built-in
    /// set, which has every class).
    pub fn n_classes_present(&self) -> Option<usize> {
        match self {
            DataPlan::Loaded(_, sets, _) => Some(sets.0.labels.iter().collect::<BTreeSet<_>>().len()),
            _ => None,
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self {
            DataPlan::Phantom(..) => 2,
            DataPlan::FashionMnist { .. } => 10,
            DataPlan::Loaded(_, sets, _) => sets.0.num_classes,
        }
    }

    /// The source's name in the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            DataPlan::Phantom(..) => "phantom",
            DataPlan::FashionMnist { .. } => "fashion_mnist",
            DataPlan::Loaded(name, _, _) => name,
        }
    }

    /// Where each training and test image comes from: `(source, row)` per sample, in the sets'
    /// order. Arrays give their file and row, image folders the image file, generated phantoms
    /// their stream and index, Fashion-MNIST its split's files and row.
    pub fn origins(&self) -> Origins {
        let numbered = |source: String, n: usize| (0..n).map(|i| (source.clone(), i.to_string())).collect();
        match self {
            DataPlan::Phantom(train, test) => Origins {
                train: numbered("phantom-train".into(), train.n),
                test: numbered("phantom-test".into(), test.n),
            },
            DataPlan::FashionMnist { dir, .. } => Origins {
                train: numbered(format!("{} (train)", dir.display()), self.n_train()),
                test: numbered(format!("{} (t10k)", dir.display()), self.n_test()),
            },
            DataPlan::Loaded(_, _, origins) => (**origins).clone(),
        }
    }

    /// The training and test sets.
    pub fn load(&self, seed: u64) -> Result<(Dataset, Dataset)> {
        Ok(match self {
            DataPlan::Phantom(train, test) => {
                (generate_phantoms(train, seed, "phantom-train")?, generate_phantoms(test, seed, "phantom-test")?)
            }
            DataPlan::FashionMnist { dir, n_train, n_test } => {
                (fashion_mnist(dir, Split::Train, *n_train)?, fashion_mnist(dir, Split::Test, *n_test)?)
            }
            DataPlan::Loaded(_, sets, _) => (sets.0.clone(), sets.1.clone()),
        })
    }
}

impl Plan {
    /// Checks `config` (read from `source`) and resolves its defaults.
    pub fn new(config: Config, source: &str) -> Result<Self> {
        let bad = |key: &str, message: String| ExperimentError::keyed(source, key, message);
        let keyed = |(key, message): (String, String)| bad(&key, message);
        check_name(&config.name).map_err(keyed)?;
        let data = DataPlan::from_config(&config.data, source)?;
        let n_test = data.n_test();
        for (key, n) in [("data.n_train", data.n_train()), ("data.n_test", n_test)] {
            if n == 0 {
                return Err(bad(key, "0; accepted: at least 1 image".into()));
            }
        }
        let (net, onnx_weights) = resolve_model(&config.model, &data).map_err(|(key, m)| bad(key, m))?;
        if let Some(weights) = &config.model.weights {
            weights_file(weights).map_err(|m| bad("model.weights", m))?;
        }
        if trains_a_model(&config) {
            check_training_plan(&config, &data).map_err(keyed)?;
        }
        let attribution = resolve_attribution(&config.attribution, &net, n_test).map_err(keyed)?;
        let config = Config { attribution, ..config };
        let (tests, checked) = resolve_tests(&config, &net, &data).map_err(keyed)?;
        let config = Config { tests, ..config };
        check_count(config.controls.draws, MAX_DRAWS).map_err(|m| bad("controls.draws", m))?;
        check_comparisons(&config, &net).map_err(keyed)?;
        let s = &config.statistics;
        if s.bootstrap_resamples > MAX_RESAMPLES {
            return Err(bad(
                "statistics.bootstrap_resamples",
                format!("{}; accepted: 0 (no interval) to {MAX_RESAMPLES}", s.bootstrap_resamples),
            ));
        }
        if config.report.examples > MAX_EXAMPLES {
            return Err(bad(
                "report.examples",
                format!("{}; accepted: 0 to {MAX_EXAMPLES} (the first images explained)", config.report.examples),
            ));
        }
        check_plan_memory(&config, &net, &data).map_err(|(key, m)| bad(key, m))?;
        if !(s.confidence > 0.0 && s.confidence < 1.0) {
            return Err(bad("statistics.confidence", format!("{}; accepted: 0 < confidence < 1", s.confidence)));
        }
        if !(s.alpha > 0.0 && s.alpha < 1.0) {
            return Err(bad("statistics.alpha", format!("{}; accepted: 0 < alpha < 1", s.alpha)));
        }
        let resolved = toml::to_string(&config).map_err(|e| bad("(whole config)", e.to_string()))?;
        let run_id = format!("seed{}-{:08x}", config.seed, fnv1a(resolved.as_bytes()) as u32);
        let source = source.to_string();
        Ok(Self { config, tests: checked, source, run_id, net, onnx_weights, data, params: Vec::new() })
    }

    /// The resolved config as TOML.
    pub fn resolved_toml(&self) -> String {
        toml::to_string(&self.config).expect("a config that was parsed from TOML serialises to TOML")
    }

    /// The model as the config names it: its architecture, or its ONNX file.
    pub fn model_name(&self) -> String {
        match &self.config.model.onnx {
            Some(path) => path.display().to_string(),
            None => self.config.model.arch.clone(),
        }
    }

    /// A human-readable listing of what the run will do (`sanity plan`).
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut out = format!("run {} of experiment `{}` ({})\n", self.run_id, c.name, self.source);
        out += &format!("  model: {} with stages {}\n", self.model_name(), self.net.layers().join(", "));
        let methods: Vec<String> =
            c.attribution.methods.iter().map(|m| serde_json::to_string(m).unwrap_or_default()).collect();
        out += &format!("  {} test images, methods: {}\n", c.attribution.n_images, methods.join(", "));
        let methods = &c.attribution.methods;
        for test in &self.tests {
            let line = match &test.kind {
                TestKind::Randomization { how: Randomization::Cascade { order, smoothing }, stages, .. } => {
                    let list = crate::cascading::cascade_order(stages, *order).join(" -> ");
                    match smoothing {
                        None => format!("({}): {list}", order.name()),
                        Some(Smoothing { samples, noise }) => {
                            format!("({}, maps averaged over {samples} copies, noise {noise}): {list}", order.name())
                        }
                    }
                }
                TestKind::Randomization { how: Randomization::Independent, stages, .. } => {
                    format!("(one layer at a time): {}", stages.join(", "))
                }
                TestKind::Randomization { how: Randomization::AllAtOnce, stages, .. } => {
                    format!("(all at once): {}", stages.join(", "))
                }
                TestKind::RandomLogit => "(a random other class per image)".into(),
                TestKind::Localisation { metrics } => {
                    let ids: Vec<&str> = metrics.iter().map(|m| m.id()).collect();
                    format!(
                        "(maps against the masks of the images that hold the object, trained and randomised models): {}",
                        ids.join(", ")
                    )
                }
                TestKind::RandomLabels(RandomLabels { target_accuracy, max_epochs, weights, .. }) => match weights {
                    Some(path) => format!("(random-label model from {})", path.display()),
                    None => format!(
                        "(train on permuted labels to {target_accuracy} train accuracy, at most {max_epochs} epochs)"
                    ),
                },
                TestKind::MethodAgreement { pairs } => {
                    let pairs: Vec<String> =
                        pairs.iter().map(|&(a, b)| format!("{} ~ {}", methods[a].id(), methods[b].id())).collect();
                    format!(": {}", pairs.join(", "))
                }
            };
            let draws = match test.draws() {
                1 if test.stages().is_none() => String::new(),
                1 => ", 1 draw per stage".into(),
                n => format!(", {n} draws per stage"),
            };
            out += &format!("  test {} {line}{draws}\n", test.id);
        }
        let k = &c.controls;
        let random_models = format!("random_models (floor, {} pairs)", k.draws);
        let controls: Vec<&str> = [
            (k.repeat, "repeat (ceiling)"),
            (k.random_models, random_models.as_str()),
            (k.random_map, "random_map"),
            (k.sobel, "sobel"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        out += &format!("  controls: {}\n", if controls.is_empty() { "none".into() } else { controls.join(", ") });
        for comparison in &c.comparisons {
            let metrics: Vec<&str> = comparison.metrics.iter().map(|m| m.id()).collect();
            out += &format!("  compare after {}: {}\n", pipeline_label(&comparison.postprocess), metrics.join(", "));
        }
        out
    }
}

/// A `(key, message)` refusal of a config section's check, turned into a config error by
/// [`Plan::new`].
type Refusal = std::result::Result<(), (String, String)>;

/// A value resolved from the config, or the key at fault and why.
type Resolved<T> = std::result::Result<T, (String, String)>;

/// The experiment's name is usable as a directory name.
fn check_name(name: &str) -> Refusal {
    let bad = |key: &str, message: String| (key.to_string(), message);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        return Err(bad(
            "name",
            format!("{:?} is not usable as a directory name; accepted: letters, digits, '-', '_', '.'", name),
        ));
    }
    Ok(())
}

/// The training settings of a plan that trains a model, against its data.
fn check_training_plan(config: &Config, data: &DataPlan) -> Refusal {
    let bad = |key: &str, message: String| (key.to_string(), message);
    let t = &config.training;
    check_training(t, "training").map_err(|(key, m)| bad(&key, m))?;
    if config.model.weights.is_none() {
        check_count(t.epochs, MAX_EPOCHS).map_err(|m| bad("training.epochs", m))?;
    }
    if t.checkpoint_every > MAX_EPOCHS {
        return Err(bad(
            "training.checkpoint_every",
            format!("{}; accepted: 0 (none) to {MAX_EPOCHS}", t.checkpoint_every),
        ));
    }
    if config.model.weights.is_none() && data.n_classes_present().is_some_and(|n| n < 2) {
        return Err(bad(
            "data",
            "every training label is of one class: a classifier cannot be trained on it (give model.weights, or data with at least two classes)".into(),
        ));
    }
    Ok(())
}

/// The attribution settings with each method resolved against the architecture (its layer and
/// defaults filled in); `n_test` test images can be explained.
fn resolve_attribution(a: &AttributionConfig, net: &Net, n_test: usize) -> Resolved<AttributionConfig> {
    let bad = |key: &str, message: String| (key.to_string(), message);
    if a.n_images == 0 || a.n_images > n_test {
        return Err(bad("attribution.n_images", format!("{}; accepted: 1..={n_test} (data.n_test)", a.n_images)));
    }
    check_count(a.batch_size, MAX_ATTRIBUTION_BATCH).map_err(|m| bad("attribution.batch_size", m))?;
    if a.methods.is_empty() {
        return Err(bad("attribution.methods", "empty; list at least one method".into()));
    }
    let mut ids = BTreeSet::new();
    let mut methods = Vec::with_capacity(a.methods.len());
    for (i, m) in a.methods.iter().enumerate() {
        let m = sanity_attribution::resolve_on(m, net)
            .map_err(|e| bad(&format!("attribution.methods[{i}]"), e.to_string()))?;
        if !ids.insert(m.id()) {
            return Err(bad(&format!("attribution.methods[{i}]"), format!("method `{}` is listed twice", m.id())));
        }
        methods.push(m);
    }
    Ok(AttributionConfig { methods, ..a.clone() })
}

/// Each test checked against the architecture, the methods and the data: as the resolved
/// config records it (stages and pairs filled in) and as the engine reads it ([`Test`]).
fn resolve_tests(config: &Config, net: &Net, data: &DataPlan) -> Resolved<(Vec<TestConfig>, Vec<Test>)> {
    let bad = |key: &str, message: String| (key.to_string(), message);
    if config.tests.is_empty() {
        return Err(bad("tests", "empty; list at least one test, e.g. [[tests]] kind = \"cascading\"".into()));
    }
    let method_ids: Vec<&'static str> = config.attribution.methods.iter().map(|m| m.id()).collect();
    let has_entropy = config.comparisons.iter().any(|c| c.metrics.iter().any(|m| m.id() == "discrete_entropy"));
    let mut kinds = BTreeSet::new();
    let (mut written, mut checked) = (Vec::new(), Vec::new());
    for (i, test) in config.tests.iter().enumerate() {
        let key = format!("tests[{i}]");
        let at = |field: &str, message: String| (format!("{key}.{field}"), message);
        let order = match test {
            TestConfig::Cascading { order, .. } => order.name(),
            _ => "",
        };
        if !kinds.insert((test.id(), order)) {
            return Err(bad(&key, format!("test `{}` {order} is listed twice", test.id())));
        }
        let (resolved, kind) = match test {
            TestConfig::Cascading { stages, reinit, draws, .. }
            | TestConfig::Independent { stages, reinit, draws }
            | TestConfig::SmoothMprt { stages, reinit, draws, .. }
            | TestConfig::EfficientMprt { stages, reinit, draws } => {
                let stages = resolve_stages(stages.as_ref(), net).map_err(|m| at("stages", m))?;
                check_reinit(reinit).map_err(|m| at("reinit", m))?;
                check_count(*draws, MAX_DRAWS).map_err(|m| at("draws", m))?;
                let how = randomization(test, &key, has_entropy)?;
                let kind =
                    TestKind::Randomization { how, reinit: reinit.clone(), stages: stages.clone(), draws: *draws };
                (test.with_stages(stages), kind)
            }
            TestConfig::RandomLogit {} if net.num_outputs() < 2 => {
                return Err(bad(
                    &key,
                    "random_logit needs a model with at least 2 outputs; this one has a single logit".into(),
                ));
            }
            TestConfig::RandomLogit {} => (test.clone(), TestKind::RandomLogit),
            TestConfig::DataRandomization { .. } => {
                let labels = check_data_randomization(&key, test, &config.training, data.n_train())?;
                (test.clone(), TestKind::RandomLabels(labels))
            }
            TestConfig::MethodAgreement { pairs } => {
                let pairs = resolve_pairs(pairs.as_deref(), &method_ids).map_err(|m| at("pairs", m))?;
                let index = |id: &String| method_ids.iter().position(|m| m == id).unwrap_or(0);
                let indices = pairs.iter().map(|[a, b]| (index(a), index(b))).collect();
                (TestConfig::MethodAgreement { pairs: Some(pairs) }, TestKind::MethodAgreement { pairs: indices })
            }
            TestConfig::Localisation { metrics } => {
                if !data.has_masks() {
                    return Err(bad(
                        &key,
                        format!(
                            "localisation needs ground-truth masks, and the {} data has none; accepted: source = \"phantom\", or masks = \"m.npy\" beside arrays, mask_dir beside an image folder",
                            data.name()
                        ),
                    ));
                }
                if metrics.is_empty() {
                    return Err(at("metrics", "empty; list at least one, e.g. { metric = \"pointing_game\" }".into()));
                }
                let mut ids = BTreeSet::new();
                for (m, metric) in metrics.iter().enumerate() {
                    metric.validate().map_err(|e| at(&format!("metrics[{m}]"), e))?;
                    if let sanity_metrics::LocalisationSpec::TopKInMask { k, .. } = metric {
                        let [_, h, w] = data.image_shape();
                        if *k > h * w {
                            return Err(at(
                                &format!("metrics[{m}].k"),
                                format!("{k}; accepted: 1 to {} (the image's pixels)", h * w),
                            ));
                        }
                    }
                    // Rows name a metric by its id alone, so each id once.
                    if !ids.insert(metric.id()) {
                        return Err(at(
                            &format!("metrics[{m}]"),
                            format!(
                                "`{}` is listed twice; accepted: each metric once, with its parameters",
                                metric.id()
                            ),
                        ));
                    }
                }
                (test.clone(), TestKind::Localisation { metrics: metrics.clone() })
            }
        };
        written.push(resolved);
        checked.push(Test { id: test.id(), kind });
    }
    Ok((written, checked))
}

/// Which layers a parameter randomisation test re-initialises per model; smooth MPRT's noise
/// tunnel is checked here, and efficient MPRT needs the `discrete_entropy` metric
/// (`has_entropy`) it is read through.
fn randomization(test: &TestConfig, key: &str, has_entropy: bool) -> Resolved<Randomization> {
    let at = |field: &str, message: String| (format!("{key}.{field}"), message);
    Ok(match test {
        TestConfig::Cascading { order, .. } => Randomization::Cascade { order: *order, smoothing: None },
        TestConfig::SmoothMprt { order, samples, noise, .. } => {
            check_count(*samples, MAX_SMOOTHING_SAMPLES).map_err(|m| at("samples", m))?;
            if !(noise.is_finite() && (0.0..=MAX_SMOOTHING_NOISE).contains(noise)) {
                return Err(at(
                    "noise",
                    format!("{noise}; accepted: 0 to {MAX_SMOOTHING_NOISE} (a fraction of the input's range)"),
                ));
            }
            Randomization::Cascade { order: *order, smoothing: Some(Smoothing { samples: *samples, noise: *noise }) }
        }
        TestConfig::EfficientMprt { .. } if !has_entropy => {
            return Err((
                key.to_string(),
                "efficient_mprt is read through the discrete_entropy metric; add { metric = \"discrete_entropy\" } to a [[comparisons]]".into(),
            ));
        }
        TestConfig::EfficientMprt { .. } => Randomization::AllAtOnce,
        _ => Randomization::Independent,
    })
}

/// A data randomisation test's settings, at `key` (`tests[i]`): its own training over the run's
/// `training`, `n_train` within the `available` training images, the target accuracy, and
/// given weights or a bounded `max_epochs`.
fn check_data_randomization(
    key: &str,
    test: &TestConfig,
    training: &TrainingConfig,
    available: usize,
) -> Resolved<RandomLabels> {
    let TestConfig::DataRandomization { target_accuracy, max_epochs, weights, n_train, training: own } = test else {
        return Err((key.to_string(), format!("`{}` is not a data randomisation test", test.id())));
    };
    let at = |field: &str, message: String| (format!("{key}.{field}"), message);
    let applied = own.as_ref().map_or_else(|| training.clone(), |own| own.applied_to(training));
    if own.is_some() {
        check_training(&applied, &format!("{key}.training"))?;
    }
    if *n_train == Some(0) {
        return Err(at("n_train", "0; accepted: >= 1 (or omit it for all)".into()));
    }
    if !(*target_accuracy > 0.0 && *target_accuracy <= 1.0) {
        return Err(at("target_accuracy", format!("{target_accuracy}; accepted: 0 < target_accuracy <= 1")));
    }
    match weights {
        Some(w) => weights_file(w).map_err(|m| at("weights", m))?,
        None => check_count(*max_epochs, MAX_EPOCHS).map_err(|m| at("max_epochs", m))?,
    }
    if let Some(n) = n_train {
        check_count(*n, available).map_err(|m| at("n_train", format!("{m} (the training images; omit it for all)")))?;
    }
    Ok(RandomLabels {
        target_accuracy: *target_accuracy,
        max_epochs: *max_epochs,
        weights: weights.clone(),
        n_train: *n_train,
        training: applied,
    })
}

/// Each comparison's post-processing and metrics, and that every metric can score the maps
/// each method gives on this architecture.
fn check_comparisons(config: &Config, net: &Net) -> Refusal {
    let bad = |key: &str, message: String| (key.to_string(), message);
    if config.comparisons.is_empty() {
        return Err(bad("comparisons", "empty; list at least one [[comparisons]] with metrics".into()));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in config.comparisons.iter().enumerate() {
        if c.metrics.is_empty() {
            return Err(bad(&format!("comparisons[{i}].metrics"), "empty; list at least one metric".into()));
        }
        for (j, step) in c.postprocess.iter().enumerate() {
            step.validate().map_err(|e| bad(&format!("comparisons[{i}].postprocess[{j}]"), e))?;
        }
        check_agreement_shapes(config, net, c).map_err(|m| bad(&format!("comparisons[{i}].postprocess"), m))?;
        for (j, m) in c.metrics.iter().enumerate() {
            m.validate().map_err(|e| bad(&format!("comparisons[{i}].metrics[{j}]"), e))?;
            if !seen.insert((pipeline_label(&c.postprocess), m.id())) {
                return Err(bad(
                    &format!("comparisons[{i}].metrics[{j}]"),
                    format!("`{}` after `{}` is listed twice", m.id(), pipeline_label(&c.postprocess)),
                ));
            }
            // A metric that cannot score the maps this model gives would leave every row
            // `too_small`, and every verdict `not_tested`, without a word.
            for method in &config.attribution.methods {
                let shape = c.postprocess.iter().fold(map_shape(method, net), |s, step| step.output_shape(s));
                if let Some(why) = m.unfit_for(shape) {
                    return Err(bad(
                        &format!("comparisons[{i}].metrics[{j}]"),
                        format!(
                            "{} after `{}` on {}'s maps: {why}",
                            m.id(),
                            pipeline_label(&c.postprocess),
                            method.id()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// That the maps of each method pair a `method_agreement` test compares have one shape after
/// `comparison`'s steps (on inputs of several channels, a CAM's one-channel maps against
/// another method's per-channel maps need a step that makes one channel).
fn check_agreement_shapes(
    config: &Config,
    net: &Net,
    comparison: &ComparisonConfig,
) -> std::result::Result<(), String> {
    let methods = &config.attribution.methods;
    let shape = |id: &str| {
        methods
            .iter()
            .find(|m| m.id() == id)
            .map(|m| comparison.postprocess.iter().fold(map_shape(m, net), |s, step| step.output_shape(s)))
    };
    for test in &config.tests {
        let TestConfig::MethodAgreement { pairs: Some(pairs) } = test else { continue };
        for [a, b] in pairs {
            if let (Some(sa), Some(sb)) = (shape(a), shape(b))
                && sa != sb
            {
                return Err(format!(
                    "method_agreement compares {a}'s {sa:?} maps with {b}'s {sb:?} after `{}`; add a step that makes one channel, e.g. {{ step = \"channel_reduce\", reduce = \"mean\" }}",
                    pipeline_label(&comparison.postprocess)
                ));
            }
        }
    }
    Ok(())
}

/// Refuses size-like data values beyond their bounds, before any file is read or image made.
fn check_data_bounds(data: &DataConfig) -> std::result::Result<(), (&'static str, String)> {
    match data {
        DataConfig::Phantom { n_train, n_test, size, noise_std, effusion_fraction, shortcut_rate } => {
            check_count(*n_train, MAX_GENERATED_IMAGES).map_err(|m| ("data.n_train", m))?;
            check_count(*n_test, MAX_GENERATED_IMAGES).map_err(|m| ("data.n_test", m))?;
            let (size, noise_std, effusion_fraction, shortcut_rate) =
                (*size, *noise_std, *effusion_fraction, *shortcut_rate);
            PhantomSpec { n: *n_train, size, noise_std, effusion_fraction, shortcut_rate }
                .validate()
                .map_err(|e| ("data", e.to_string()))
        }
        DataConfig::FashionMnist { n_train, n_test, .. } => {
            if let Some(n) = n_train {
                check_count(*n, 60_000).map_err(|m| ("data.n_train", format!("{m} (Fashion-MNIST's training set)")))?;
            }
            if let Some(n) = n_test {
                check_count(*n, 10_000).map_err(|m| ("data.n_test", format!("{m} (Fashion-MNIST's test set)")))?;
            }
            Ok(())
        }
        DataConfig::ImageFolder { dir, height, width, channels, test_dir, .. } => {
            check_count(*height, MAX_IMAGE_SIDE).map_err(|m| ("data.height", m))?;
            check_count(*width, MAX_IMAGE_SIDE).map_err(|m| ("data.width", m))?;
            // Decoded images take height x width x channels floats each, whatever their files'
            // size: counted from the listing, before any is decoded.
            let mut files = 0usize;
            for folder in std::iter::once(dir).chain(test_dir) {
                if let Ok(classes) = class_folders(folder) {
                    files += classes.iter().map(|(_, f)| f.len()).sum::<usize>();
                }
            }
            if !(*channels == 1 || *channels == 3) {
                return Err(("data.channels", format!("{channels}; accepted: 1 (grey) or 3 (RGB)")));
            }
            let bytes = files as u128 * (*height * *width * *channels) as u128 * 4;
            check_memory(&format!("{files} images decoded at {height}x{width}"), bytes).map_err(|m| ("data.height", m))
        }
        DataConfig::Arrays { .. } => Ok(()),
    }
}

/// The memory the plan's data, training and attribution batches take, estimated from the
/// architecture's activations (float32; a forward keeps every activation and a backward
/// about as much again, so four bytes times four per value), refused beyond the memory limit
/// ([`crate::limits::memory_limit`]) naming the key that asks for it.
fn check_plan_memory(config: &Config, net: &Net, data: &DataPlan) -> std::result::Result<(), (&'static str, String)> {
    let image = data.image_shape().iter().product::<usize>() as u128;
    let data_bytes = (data.n_train() + data.n_test()) as u128 * image * 4;
    let activations = net.activation_values() as u128 * 16;
    let parameters = net.parameter_count() as u128 * 4;
    if trains_a_model(config) {
        // The random-label model may train with a batch of its own.
        let own = config.tests.iter().filter_map(|t| match t {
            TestConfig::DataRandomization { weights: None, training: Some(own), .. } => own.batch_size,
            _ => None,
        });
        let batch = own.fold(config.training.batch_size, usize::max) as u128;
        check_memory("the data set and a training minibatch", data_bytes + batch * activations + parameters * 4)
            .map_err(|m| ("training.batch_size", m))?;
    }
    // Every model a batch is explained under (the trained one, each stage of each test, the
    // controls' random models) is held at once.
    let stages: usize = config.tests.iter().map(|t| stages_of(t).map_or(1, <[String]>::len) * t.draws()).sum();
    let models = 1 + 2 * config.controls.draws as u128 + stages as u128;
    let widest = config.attribution.methods.iter().map(method_batch).max().unwrap_or(1);
    let batch = config.attribution.batch_size.max(widest) as u128;
    check_memory("the data set and an attribution batch", data_bytes + batch * activations + parameters * models)
        .map_err(|m| ("attribution.batch_size", m))
}

/// The shape `[c, h, w]` of `method`'s raw maps on `arch`'s inputs: a CAM's are one channel
/// (guided Grad-CAM's are the input's, as are every other method's).
fn map_shape(method: &sanity_attribution::MethodSpec, net: &Net) -> [usize; 3] {
    use sanity_attribution::MethodSpec as M;
    fn one_channel(method: &M) -> bool {
        match method {
            M::Gradcam { .. }
            | M::GradcamPlusPlus { .. }
            | M::Xgradcam { .. }
            | M::Layercam { .. }
            | M::Scorecam { .. } => true,
            M::Smoothgrad(t) | M::SmoothgradSquared(t) | M::Vargrad(t) => one_channel(&t.inner),
            _ => false,
        }
    }
    let [c, h, w] = net.input();
    if one_channel(method) { [1, h, w] } else { [c, h, w] }
}

/// Checks the optimiser settings of `t` (the config's `[training]`, or a random-label model's
/// own, under `key`); the error names the key.
fn check_training(t: &sanity_rundir::config::TrainingConfig, key: &str) -> std::result::Result<(), (String, String)> {
    if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
        return Err((format!("{key}.learning_rate"), format!("{}; accepted: a finite value > 0", t.learning_rate)));
    }
    if !(0.0..1.0).contains(&t.momentum) {
        return Err((format!("{key}.momentum"), format!("{}; accepted: 0 <= momentum < 1", t.momentum)));
    }
    check_count(t.batch_size, MAX_TRAIN_BATCH).map_err(|m| (format!("{key}.batch_size"), m))?;
    if !(t.weight_decay.is_finite() && (0.0..=1.0).contains(&t.weight_decay)) {
        return Err((format!("{key}.weight_decay"), format!("{}; accepted: 0 to 1", t.weight_decay)));
    }
    t.lr_schedule.check().map_err(|m| (format!("{key}.lr_schedule"), m))?;
    if let sanity_model::LrSchedule::Step { every, .. } = t.lr_schedule {
        check_count(every, MAX_EPOCHS).map_err(|m| (format!("{key}.lr_schedule.every"), m))?;
    }
    Ok(())
}

/// Whether a run of `config` trains a model: the explained one (without `model.weights`), or
/// a data randomisation test's without its `weights`.
fn trains_a_model(config: &Config) -> bool {
    (config.model.weights.is_none() && config.model.onnx.is_none())
        || config.tests.iter().any(|t| matches!(t, TestConfig::DataRandomization { weights: None, .. }))
}

/// The stages a test randomises (resolved), if it has any.
fn stages_of(test: &TestConfig) -> Option<&[String]> {
    match test {
        TestConfig::Cascading { stages: Some(Stages::Named(stages)), .. }
        | TestConfig::Independent { stages: Some(Stages::Named(stages)), .. }
        | TestConfig::SmoothMprt { stages: Some(Stages::Named(stages)), .. }
        | TestConfig::EfficientMprt { stages: Some(Stages::Named(stages)), .. } => Some(stages),
        _ => None,
    }
}

/// The images a method pushes through the model at once (its `batch`), 1 for the others.
fn method_batch(method: &sanity_attribution::MethodSpec) -> usize {
    use sanity_attribution::MethodSpec as M;
    match method {
        M::IntegratedGradients { batch, .. } | M::ExpectedGradients { batch, .. } | M::Occlusion { batch, .. } => {
            *batch
        }
        M::Smoothgrad(t) | M::SmoothgradSquared(t) | M::Vargrad(t) => t.batch.max(method_batch(&t.inner)),
        _ => 1,
    }
}

/// Refuses re-initialisation parameters no layer could use.
fn check_reinit(reinit: &Reinit) -> std::result::Result<(), String> {
    match *reinit {
        Reinit::TruncatedNormal { std } if !(std.is_finite() && std > 0.0) => {
            Err(format!("truncated_normal std = {std}; accepted: a finite value > 0"))
        }
        Reinit::GaussianPerturb { scale } if !(scale.is_finite() && scale >= 0.0) => {
            Err(format!("gaussian_perturb scale = {scale}; accepted: a finite value >= 0"))
        }
        _ => Ok(()),
    }
}

/// The layers listed (all parameterised layers when `stages` is unset), checked, in network
/// order; the message says what is accepted.
fn resolve_stages(stages: Option<&Stages>, net: &Net) -> std::result::Result<Vec<String>, String> {
    let mut chosen = match stages {
        None | Some(Stages::Layers) => net.layers(),
        Some(Stages::Blocks) => net.blocks(),
        Some(Stages::Named(names)) => names.clone(),
    };
    if chosen.is_empty() {
        return Err("empty; omit it for all layers".into());
    }
    let layers = net.layers();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for s in &chosen {
        let under = net.stage_layers(s).map_err(|_| {
            let known = net.stage_names();
            format!(
                "`{s}` is not a parameterised layer{}; this model has: {}{}",
                if net.is_graph() { " or a module of them" } else { "" },
                known.join(", "),
                sanity_rundir::diagnostics::did_you_mean(s, known.iter().map(String::as_str))
            )
        })?;
        if let Some(twice) = under.iter().find(|l| seen.contains(*l)) {
            return Err(format!("`{s}` is listed twice (its layer `{twice}` is in another stage too)"));
        }
        seen.extend(under);
    }
    // Stages run in network order (of their first layer) whatever order they were listed in.
    let first = |s: &String| net.stage_layers(s).ok().and_then(|u| layers.iter().position(|l| *l == u[0]));
    chosen.sort_by_key(first);
    Ok(chosen)
}

/// The method pairs listed (every pair of `methods`, in list order, when `pairs` is unset),
/// checked.
fn resolve_pairs(pairs: Option<&[[String; 2]]>, methods: &[&str]) -> std::result::Result<Vec<[String; 2]>, String> {
    let all: Vec<[String; 2]> = methods
        .iter()
        .enumerate()
        .flat_map(|(i, a)| methods[i + 1..].iter().map(move |b| [a.to_string(), b.to_string()]))
        .collect();
    let chosen = pairs.map_or(all, <[[String; 2]]>::to_vec);
    if chosen.is_empty() {
        return Err("no pairs: list two or more methods in attribution.methods, or give pairs".into());
    }
    let mut seen = BTreeSet::new();
    for [a, b] in &chosen {
        for id in [a, b] {
            if !methods.contains(&id.as_str()) {
                return Err(format!("`{id}` is not one of attribution.methods: {}", methods.join(", ")));
            }
        }
        if a == b {
            return Err(format!("`{a}` is paired with itself"));
        }
        if !seen.insert((a.clone(), b.clone())) {
            return Err(format!("`{a}` ~ `{b}` is listed twice"));
        }
    }
    Ok(chosen)
}

/// The network of `model` for `data`'s images: a sequential preset or architecture TOML, a
/// graph preset built for the data's image shape and classes, or an ONNX import (and its
/// weights). The error names the key at fault and says what is accepted.
// Long: four sources, each checked against the data.
pub fn resolve_model(
    model: &ModelConfig,
    data: &DataPlan,
) -> std::result::Result<(Net, Option<Weights>), (&'static str, String)> {
    let input = data.image_shape();
    let classes = data.num_classes();
    let (net, weights) = match (&model.onnx, model.arch.as_str()) {
        (Some(_), arch) if !arch.is_empty() => {
            return Err((
                "model.arch",
                format!("`{arch}` beside model.onnx; give one of them (the ONNX file holds the model)"),
            ));
        }
        (Some(_), _) if model.weights.is_some() => {
            return Err(("model.weights", "beside model.onnx, whose weights are inside it; give one of them".into()));
        }
        (Some(path), _) => {
            let imported = read_onnx(path).map_err(|e| ("model.onnx", e.to_string()))?;
            if imported.graph.input != input {
                return Err((
                    "model.onnx",
                    format!("{} takes inputs {:?} but the data are {input:?}", path.display(), imported.graph.input),
                ));
            }
            (Net::Graph(Arc::new(imported.graph)), Some(imported.weights))
        }
        (None, "") => return Err(("model.arch", "missing; give model.arch (a preset or a file) or model.onnx".into())),
        (None, name) if GRAPH_PRESETS.contains(&name) => {
            let graph = graph_preset(name, input, classes).map_err(|e| ("model.arch", e.to_string()))?;
            (Net::Graph(Arc::new(graph)), None)
        }
        (None, name) => (Net::Layers(Arc::new(resolve_arch(name, data).map_err(|m| ("model.arch", m))?)), None),
    };
    let outputs = net.num_outputs();
    if !(outputs == classes || (classes == 2 && outputs == 1)) {
        let key = if model.onnx.is_some() { "model.onnx" } else { "model.arch" };
        return Err((
            key,
            format!(
                "the model has {outputs} outputs but the data have {classes} classes (accepted: one output per class, or 1 logit for 2 classes)"
            ),
        ));
    }
    Ok((net, weights))
}

/// The architecture `name` (a preset, or an architecture TOML file) for `data`'s images,
/// checked against the data's shape and classes; the message says what is accepted.
pub fn resolve_arch(name: &str, data: &DataPlan) -> std::result::Result<Architecture, String> {
    let input = data.image_shape();
    let spec = if PRESETS.contains(&name) {
        preset(name, input).map_err(|e| e.to_string())?
    } else if Path::new(name).exists() {
        let spec = ArchitectureSpec::from_toml_file(Path::new(name)).map_err(|e| e.to_string())?;
        if spec.input != input {
            return Err(format!("{name} expects input {:?} but the data are {input:?}", spec.input));
        }
        spec
    } else {
        return Err(format!(
            "`{name}` is neither a preset ({}) nor an existing architecture file{}",
            PRESETS.join(", "),
            sanity_rundir::diagnostics::did_you_mean(name, PRESETS.iter().copied())
        ));
    };
    let arch = Architecture::new(spec).map_err(|e| e.to_string())?;
    let classes = data.num_classes();
    if !(arch.num_outputs() == classes || (classes == 2 && arch.num_outputs() == 1)) {
        return Err(format!(
            "the model has {} outputs but the data have {classes} classes (accepted: one output per class, or 1 logit for 2 classes)",
            arch.num_outputs()
        ));
    }
    Ok(arch)
}

/// What is wrong with a weights file named in a config: it must exist.
fn weights_file(path: &std::path::Path) -> std::result::Result<(), String> {
    if path.is_file() {
        return Ok(());
    }
    Err(format!("{}: no such file; accepted: a safetensors file with PyTorch names", path.display()))
}
