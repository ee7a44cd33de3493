//! The tests of a plan as `Plan::new` checked them: every default resolved (stages in network
//! order, method pairs as indices, a random-label model's own training applied), so the engine
//! reads values and never defaults or checks them again. The config's own form (`TestConfig`,
//! sanity-rundir) is what a user writes and what `config.resolved.toml` records.

use sanity_model::Reinit;
use sanity_rundir::config::{Order, TrainingConfig};
use std::path::PathBuf;

/// One checked test.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    /// Its id in the CSV files (`cascading`, `smooth_mprt`, ...).
    pub id: &'static str,
    /// What it compares.
    pub kind: TestKind,
}

/// What a test compares the trained model's maps with.
#[derive(Debug, Clone, PartialEq)]
pub enum TestKind {
    /// The maps of models whose `stages` (at least one, in network order) are re-initialised by
    /// `reinit`, `draws` times each (Adebayo et al. 2018 §4.1; Hedström et al. 2023).
    Randomization {
        /// Which layers each model re-initialises.
        how: Randomization,
        /// How a layer is re-initialised.
        reinit: Reinit,
        /// The layers randomised, in network order.
        stages: Vec<String>,
        /// Independent re-initialisations per stage (at least 1).
        draws: usize,
    },
    /// The maps of a model trained on permuted labels (Adebayo et al. 2018 §5).
    RandomLabels(RandomLabels),
    /// The maps of a random other class (Sixt et al. 2020).
    RandomLogit,
    /// The maps of another method: pairs of indices into the plan's methods.
    MethodAgreement {
        /// `(first, second)` method indices, each pair once.
        pairs: Vec<(usize, usize)>,
    },
    /// Each map of the trained model and of the randomised models against the image's
    /// ground-truth mask, by these metrics.
    Localisation {
        /// The metrics, checked.
        metrics: Vec<sanity_metrics::LocalisationSpec>,
    },
}

/// Which layers a parameter randomisation test re-initialises per model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Randomization {
    /// Cumulatively in `order` (`cascading`; `smooth_mprt` with its maps smoothed).
    Cascade {
        /// Top-down (logits first) or bottom-up.
        order: Order,
        /// Smooth MPRT's noise tunnel around every method, or none.
        smoothing: Option<Smoothing>,
    },
    /// One layer at a time, the others trained (`independent`).
    Independent,
    /// Every listed layer at once (`efficient_mprt`).
    AllAtOnce,
}

/// Maps averaged over noisy copies of the input (smooth MPRT): a noise tunnel around each
/// method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    /// Noisy copies.
    pub samples: usize,
    /// Noise std as a fraction of the image's value range.
    pub noise: f64,
}

/// The data randomisation test's model.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomLabels {
    /// The training accuracy on the permuted labels it must reach (0 < a <= 1).
    pub target_accuracy: f64,
    /// The most epochs it trains.
    pub max_epochs: usize,
    /// Its weights, when given (then it is not trained).
    pub weights: Option<PathBuf>,
    /// The first n training images it trains on (None: all of them; part of its cache key as
    /// written).
    pub n_train: Option<usize>,
    /// Its training: the run's with the test's own settings applied.
    pub training: TrainingConfig,
}

impl Test {
    /// How many models per stage it randomises: `draws`, or 1.
    pub fn draws(&self) -> usize {
        match self.kind {
            TestKind::Randomization { draws, .. } => draws,
            _ => 1,
        }
    }

    /// The layers it randomises, if any.
    pub fn stages(&self) -> Option<&[String]> {
        match &self.kind {
            TestKind::Randomization { stages, .. } => Some(stages),
            _ => None,
        }
    }
}
