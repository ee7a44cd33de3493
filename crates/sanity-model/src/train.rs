//! Training: AdamW or SGD with momentum on minibatches, seeded shuffles and dropout,
//! checkpoints to go on from, accuracies. The forward, the backward and the optimiser run on
//! the project's own float32 engine (`graph_train.rs`, `optimizer.rs`), for sequential stacks
//! and model graphs alike; candle's forward stays as the float64 reference of the tests.

use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::error::{ModelError, Result};
use crate::graph_engine::{GraphModel, Parameters};
use crate::graph_train::{
    TrainingGraph, as_weights, loss_and_gradient, parameter_gradients, parameter_name_and_shape, parameter_tensor,
    train_forward, walk_layout,
};
use crate::net::NetModel;
use crate::optimizer::Optimizer;
use crate::weights::Weights;
use candle_core::DType;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sanity_data::{Dataset, stream_rng};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Which training code trained a model: a model cache keeps a model only for the trainer that
/// made it (the same seed gives other weights on another engine). Before issue 20 candle
/// trained; `walk-1` was the project's own float32 training walk (`graph_train.rs`,
/// `optimizer.rs`); `walk-2` sums a long-row convolution's routed weight gradient filter by
/// filter (`ops/nhwc_routed.rs`), which rounds differently.
pub const TRAINER: &str = "walk-2";

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW (Loshchilov & Hutter 2019) as PyTorch's; weight decay decoupled from the gradient.
    #[default]
    Adamw,
    /// SGD with momentum as PyTorch's `torch.optim.SGD` (dampening 0, not Nesterov):
    /// `g += weight_decay · w; v = momentum · v + g` (`v = g` at the first step); `w -= lr · v`.
    Sgd,
}

/// How the learning rate changes over the epochs (`torch.optim.lr_scheduler`'s, stepped once
/// per epoch). A schedule depends on the epoch alone, never on how many epochs there will be,
/// so training that stops early at an accuracy target, or goes on from a checkpoint with more
/// epochs, follows the same rates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The learning rate throughout.
    #[default]
    Constant,
    /// `StepLR`: the learning rate times `gamma` every `every` epochs, epoch `e` (1-based)
    /// training at `lr · gamma^⌊(e − 1) / every⌋`.
    Step {
        /// Epochs between two decays, at least 1.
        every: usize,
        /// The factor, 0 < gamma <= 1.
        gamma: f64,
    },
}

impl LrSchedule {
    /// The learning rate of epoch `epoch` (1-based) from the base rate `lr`.
    pub fn rate(&self, lr: f64, epoch: usize) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Step { every, gamma } => lr * gamma.powi(((epoch.max(1) - 1) / every.max(1)) as i32),
        }
    }

    /// Whether it is [`LrSchedule::Constant`] (not written into records, so that the records of
    /// models trained before schedules existed still match).
    pub fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }

    /// Why it cannot be used, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err("every = 0; accepted: at least 1 epoch".into());
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return Err(format!("gamma = {gamma}; accepted: 0 < gamma <= 1"));
                }
                Ok(())
            }
        }
    }
}

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// Passes over the training set.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Weight decay (decoupled for AdamW, an L2 term in the gradient for SGD).
    pub weight_decay: f64,
    /// Stop after the first epoch whose training-set accuracy (eval mode, measured after the
    /// epoch) reaches this; `epochs` is then the most epochs trained.
    pub stop_at_accuracy: Option<f64>,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// SGD's momentum (ignored by AdamW).
    pub momentum: f64,
    /// How the learning rate changes over the epochs.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub schedule: LrSchedule,
    /// Save the training state every this many epochs in `checkpoint_dir` (0: only when
    /// [`train_from`] is asked to stop); see [`crate::checkpoint`].
    pub checkpoint_every: usize,
    /// Where checkpoints go.
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            stop_at_accuracy: None,
            optimizer: OptimizerKind::Adamw,
            momentum: 0.9,
            schedule: LrSchedule::Constant,
            checkpoint_every: 0,
            checkpoint_dir: None,
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean minibatch loss.
    pub loss: f64,
    /// Accuracy on the minibatches as they were trained (dropout on).
    pub running_accuracy: f64,
    /// Training-set accuracy in eval mode after the epoch (measured when training stops at an
    /// accuracy).
    pub train_accuracy: Option<f64>,
}

/// Predicted classes from logits: `z > 0` for one logit, the argmax otherwise.
pub fn classes_of(logits: &[f32], outputs: usize) -> Vec<usize> {
    logits
        .chunks_exact(outputs)
        .map(|row| {
            if outputs == 1 {
                usize::from(row[0] > 0.0)
            } else {
                let mut best = 0;
                for (k, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = k;
                    }
                }
                best
            }
        })
        .collect()
}

/// The output each row of `logits` is explained by: the single logit (0) of a one-logit model,
/// else the predicted class ([`classes_of`]).
pub fn predicted_targets(logits: &[f32], outputs: usize) -> Vec<usize> {
    match outputs {
        1 => vec![0; logits.len()],
        _ => classes_of(logits, outputs),
    }
}

/// Trains `model` on `data` with the spec's optimiser; shuffles draw from `stream_rng(seed, "train-shuffle",
/// epoch)` and dropout from `stream_rng(seed, "train-dropout", epoch)`. Calls `on_epoch` after
/// each epoch. Returns the trained weights (a new value; `model` is untouched).
pub fn train(
    model: &NetModel,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<(Weights, Vec<EpochStats>)> {
    let mut go_on = |s: &EpochStats| {
        on_epoch(s);
        ControlFlow::Continue(())
    };
    match train_from(model, data, spec, seed, None, &mut go_on)? {
        Training::Finished { weights, history } => Ok((weights, history)),
        Training::Stopped { epoch } => Err(ModelError::Training(format!("stopped after epoch {epoch}"))),
    }
}

/// How [`train_from`] ended.
#[derive(Debug)]
pub enum Training {
    /// Every epoch was trained, or training stopped at its accuracy target.
    Finished {
        /// The trained weights.
        weights: Weights,
        /// Every epoch's statistics, from the first (also those before a checkpoint).
        history: Vec<EpochStats>,
    },
    /// `on_epoch` asked to stop after `epoch`, before the last; the state is saved as a
    /// checkpoint when the spec has a checkpoint folder.
    Stopped {
        /// The last epoch trained.
        epoch: usize,
    },
}

/// [`train`], starting from `start` when given: the epochs after the checkpoint's are trained
/// exactly as an uninterrupted run trains them (the same shuffles, dropout draws, optimiser
/// state and batch-norm buffers; tested bit for bit). `on_epoch` may ask to stop
/// ([`ControlFlow::Break`]) after any epoch; the state is then saved as a checkpoint in
/// `spec.checkpoint_dir` (as every `checkpoint_every` epochs) and [`Training::Stopped`] returned.
/// A checkpoint of another seed, training spec, architecture or data set, or of a later epoch
/// than `spec.epochs`, is refused with [`ModelError::CheckpointMismatch`]. The data are hashed
/// (their fingerprint) only to check `start` or when a checkpoint is saved.
pub fn train_from(
    model: &NetModel,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
    start: Option<Checkpoint>,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<Training> {
    train_observed(model, data, spec, seed, start, on_epoch, &mut |_| {})
}

/// Where a training is within an epoch, after each minibatch (for progress bars).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchProgress {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Minibatches done in it.
    pub batch: usize,
    /// Minibatches in an epoch.
    pub batches: usize,
    /// The mean loss of the epoch's minibatches so far.
    pub loss: f64,
    /// Images trained on in the epoch so far.
    pub images: usize,
}

/// [`train_from`], telling `on_batch` after every minibatch where it is (no effect on the
/// training).
pub fn train_observed(
    model: &NetModel,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
    start: Option<Checkpoint>,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
    on_batch: &mut dyn FnMut(&BatchProgress),
) -> Result<Training> {
    check_training(model, data, spec)?;
    let mut fingerprint = match &start {
        Some(checkpoint) => Some(check_start(checkpoint, model, data, spec, seed)?),
        None => None,
    };
    let first = match &start {
        Some(checkpoint) => model.with_weights(checkpoint.weights.clone()),
        None => model.clone(),
    };
    let mut state = TrainState::new(model, &first, spec)?;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut history = Vec::with_capacity(spec.epochs);
    let mut done = 0;
    if let Some(checkpoint) = start {
        state.restore_optimizer(&checkpoint.optimizer, checkpoint.meta.steps)?;
        done = checkpoint.meta.epoch;
        history = checkpoint.meta.history;
        // Each epoch shuffles the previous epoch's order: replay the shuffles done.
        for epoch in 1..=done {
            order.shuffle(&mut stream_rng(seed, "train-shuffle", epoch as u64));
        }
    }
    let target_reached = |stats: Option<&EpochStats>| matches!((stats.and_then(|s| s.train_accuracy), spec.stop_at_accuracy), (Some(a), Some(t)) if a >= t);
    let mut epoch = done;
    while epoch < spec.epochs && !target_reached(history.last()) {
        epoch += 1;
        state.optimizer.set_learning_rate(spec.schedule.rate(spec.learning_rate, epoch));
        order.shuffle(&mut stream_rng(seed, "train-shuffle", epoch as u64));
        let stats = state.epoch(data, spec, seed, epoch, &order, on_batch)?;
        let flow = on_epoch(&stats);
        history.push(stats);
        let finished = epoch == spec.epochs || target_reached(history.last());
        let stop = flow.is_break() && !finished;
        let due = spec.checkpoint_every > 0 && epoch % spec.checkpoint_every == 0;
        if let Some(dir) = &spec.checkpoint_dir
            && (due || stop)
        {
            let (optimizer, steps) = state.optimizer_state()?;
            let meta = CheckpointMeta {
                epoch,
                steps,
                seed: seed.to_string(),
                spec: TrainSpec { checkpoint_dir: None, ..spec.clone() },
                data: fingerprint.get_or_insert_with(|| data.fingerprint()).clone(),
                architecture: model.net.spec(),
                history: history.clone(),
            };
            Checkpoint { meta, weights: state.current()?.weights, optimizer, source: None }.save(dir)?;
        }
        if stop {
            return Ok(Training::Stopped { epoch });
        }
    }
    Ok(Training::Finished { weights: state.current()?.weights, history })
}

/// Refuses a training that cannot run: outputs that do not fit the classes, no images or a
/// zero batch, a learning rate or momentum out of range, a bad schedule.
fn check_training(model: &NetModel, data: &Dataset, spec: &TrainSpec) -> Result<()> {
    let outputs = model.net.num_outputs();
    if !(outputs == data.num_classes || (outputs == 1 && data.num_classes == 2)) {
        return Err(ModelError::Training(format!(
            "the model has {outputs} outputs but the data has {} classes; accepted: one output per class, or a single logit for 2 classes",
            data.num_classes
        )));
    }
    if spec.batch_size == 0 || data.is_empty() {
        return Err(ModelError::Training("batch_size and the number of training images must be >= 1".into()));
    }
    if !(spec.learning_rate > 0.0 && spec.learning_rate.is_finite() && (0.0..1.0).contains(&spec.momentum)) {
        return Err(ModelError::Training(format!(
            "learning_rate {} and momentum {}; accepted: learning_rate > 0, 0 <= momentum < 1",
            spec.learning_rate, spec.momentum
        )));
    }
    spec.schedule.check().map_err(|why| ModelError::Training(format!("learning-rate schedule: {why}")))
}

/// Refuses a checkpoint this training cannot go on from (another seed, spec, architecture or
/// data set, or a later epoch than `spec.epochs`); returns the data's fingerprint.
fn check_start(
    checkpoint: &Checkpoint,
    model: &NetModel,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
) -> Result<String> {
    let data_print = data.fingerprint();
    let why = match checkpoint.meta.epoch > spec.epochs {
        true => Some(format!("training has {} epochs", spec.epochs)),
        false => checkpoint.meta.mismatch(&model.net, spec, seed, &data_print),
    };
    match why {
        Some(why) => {
            let place = checkpoint.source.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default();
            Err(ModelError::CheckpointMismatch { epoch: checkpoint.meta.epoch, place, why })
        }
        None => Ok(data_print),
    }
}

/// What a training holds between minibatches: the network as the training walk runs it, every
/// parameter and batch-norm buffer in the walk's layout (`GraphModel`'s: a convolution's weight
/// reordered), and the optimiser, whose buffers follow the trained parameters in graph order.
struct TrainState<'a> {
    model: &'a NetModel,
    training: TrainingGraph,
    parameters: Parameters,
    optimizer: Optimizer,
}

/// Whether a parameter suffix is trained (not a batch norm's running statistics).
fn trained(what: &str) -> bool {
    !what.starts_with("running_")
}

impl<'a> TrainState<'a> {
    /// The state of a training of `model` from the weights of `first`.
    fn new(model: &'a NetModel, first: &NetModel, spec: &TrainSpec) -> Result<Self> {
        let training = TrainingGraph::of(&model.net)?;
        let parameters = GraphModel::new(&training.graph, &first.weights)?.parameters;
        let sizes: Vec<usize> =
            parameters.iter().flatten().filter(|(what, _)| trained(what)).map(|(_, v)| v.len()).collect();
        let optimizer = Optimizer::new(&sizes, spec);
        Ok(Self { model, training, parameters, optimizer })
    }

    /// `(node, suffix)` of every trained parameter, in the optimiser's order.
    fn trained_slots(&self) -> Vec<(usize, &'static str)> {
        let nodes = self.parameters.iter().enumerate();
        nodes.flat_map(|(k, ps)| ps.iter().filter(|(w, _)| trained(w)).map(move |(w, _)| (k, *w))).collect()
    }

    /// The name and PyTorch shape of parameter `what` of node `k`.
    fn describe(&self, k: usize, what: &str) -> (String, Vec<usize>) {
        parameter_name_and_shape(&self.training.graph, k, what)
    }

    /// The model with the current parameters and buffers (PyTorch layouts).
    fn current(&self) -> Result<NetModel> {
        Ok(self.model.with_weights(as_weights(&self.training.graph, &self.parameters)?))
    }

    /// The optimiser's state under PyTorch's names (`<parameter>.<buffer>`), and the steps taken.
    fn optimizer_state(&self) -> Result<(Weights, usize)> {
        let slots = self.trained_slots();
        let mut state = Weights::new();
        for (i, suffix, values) in self.optimizer.buffers() {
            let (k, what) = slots[i];
            state.insert(
                format!("{}.{suffix}", self.describe(k, what).0),
                parameter_tensor(&self.training.graph, k, what, values)?,
            );
        }
        Ok((state, self.optimizer.steps()))
    }

    /// Takes the optimiser state [`TrainState::optimizer_state`] gave; a missing (AdamW) or
    /// misshapen buffer is an error.
    fn restore_optimizer(&mut self, state: &Weights, steps: usize) -> Result<()> {
        let slots = self.trained_slots();
        let mut optimizer = self.optimizer.clone();
        optimizer.restore(steps, |i, suffix, required| {
            let (k, what) = slots[i];
            let (name, shape) = self.describe(k, what);
            let key = format!("{name}.{suffix}");
            let t = match state.get(&key) {
                Ok(t) => t,
                Err(_) if !required => return Ok(None),
                Err(_) => return Err(ModelError::Training(format!("the checkpoint has no `{key}`"))),
            };
            if t.dims() != shape.as_slice() {
                return Err(ModelError::Training(format!("`{key}` has shape {:?}, expected {shape:?}", t.dims())));
            }
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Ok(Some(walk_layout(&self.training.graph, k, what, values)))
        })?;
        self.optimizer = optimizer;
        Ok(())
    }

    /// The first parameter or buffer holding a NaN or an infinity, described, if any.
    fn non_finite_parameter(&self) -> Option<String> {
        for (k, ps) in self.parameters.iter().enumerate() {
            for (what, values) in ps {
                let bad = values.iter().filter(|v| !v.is_finite()).count();
                if bad > 0 {
                    let name = self.describe(k, what).0;
                    return Some(format!("`{name}` holds {bad} non-finite values after the epoch's updates"));
                }
            }
        }
        None
    }

    /// One minibatch: the training forward, the loss and every parameter's gradient on the
    /// walk, the batch norms' running statistics updated, one optimiser step. Returns the loss
    /// and the logits.
    fn step(&mut self, x: &[f32], labels: &[usize], rng: &mut ChaCha8Rng) -> Result<(f64, Vec<f32>)> {
        let outputs = self.model.net.num_outputs();
        let model = GraphModel::with_parameters(&self.training.graph, std::mem::take(&mut self.parameters));
        let result = train_forward(&model, &self.training, x, labels.len(), rng).and_then(|pass| {
            let (loss, seed) = loss_and_gradient(pass.logits(), labels, outputs);
            let grads = if loss.is_finite() { parameter_gradients(&model, &pass, &seed)? } else { Vec::new() };
            Ok((loss, pass, grads))
        });
        self.parameters = model.parameters;
        let (loss, pass, mut grads) = result?;
        let logits = pass.logits().to_vec();
        if !loss.is_finite() {
            return Ok((loss, logits));
        }
        for (k, [mean, var]) in pass.running_statistics() {
            for (what, values) in &mut self.parameters[k] {
                match *what {
                    "running_mean" => *values = Arc::from(mean.as_slice()),
                    "running_var" => *values = Arc::from(var.as_slice()),
                    _ => {}
                }
            }
        }
        // A parameter the loss does not reach has no gradient (PyTorch's `grad is None`): the
        // optimiser passes it over.
        let mut ordered = Vec::new();
        let mut params: Vec<&mut [f32]> = Vec::new();
        for (k, ps) in self.parameters.iter_mut().enumerate() {
            for (what, values) in ps.iter_mut().filter(|(w, _)| trained(w)) {
                ordered.push(grads[k].iter_mut().find(|(w, _)| w == what).map(|(_, g)| std::mem::take(g)));
                params.push(Arc::make_mut(values));
            }
        }
        self.optimizer.step(&mut params, &ordered);
        Ok((loss, logits))
    }

    /// Trains epoch `epoch` over the images in `order`, minibatch by minibatch; a non-finite
    /// loss or weight is [`ModelError::Diverged`].
    fn epoch(
        &mut self,
        data: &Dataset,
        spec: &TrainSpec,
        seed: u64,
        epoch: usize,
        order: &[usize],
        on_batch: &mut dyn FnMut(&BatchProgress),
    ) -> Result<EpochStats> {
        let outputs = self.model.net.num_outputs();
        let mut dropout_rng = stream_rng(seed, "train-dropout", epoch as u64);
        let (mut loss_sum, mut batches, mut correct) = (0.0, 0usize, 0usize);
        for batch in order.chunks(spec.batch_size) {
            let x = data.gather_images(batch);
            let labels: Vec<usize> = batch.iter().map(|&i| data.labels[i]).collect();
            let (value, logits) = self.step(&x, &labels, &mut dropout_rng)?;
            if !value.is_finite() {
                let what = format!("the loss of minibatch {} is {value}", batches + 1);
                return Err(ModelError::Diverged { epoch, what, learning_rate: spec.learning_rate });
            }
            loss_sum += value;
            batches += 1;
            on_batch(&BatchProgress {
                epoch,
                batch: batches,
                batches: data.len().div_ceil(spec.batch_size),
                loss: loss_sum / batches as f64,
                images: (batches * spec.batch_size).min(data.len()),
            });
            let predicted = classes_of(&logits, outputs);
            correct += predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        }
        if let Some(what) = self.non_finite_parameter() {
            return Err(ModelError::Diverged { epoch, what, learning_rate: spec.learning_rate });
        }
        let train_accuracy = match spec.stop_at_accuracy {
            Some(_) => Some(self.current()?.accuracy(data)?),
            None => None,
        };
        Ok(EpochStats {
            epoch,
            loss: loss_sum / batches as f64,
            running_accuracy: correct as f64 / data.len() as f64,
            train_accuracy,
        })
    }
}
