//! Training: AdamW or SGD with momentum on minibatches, seeded shuffles and dropout,
//! checkpoints to go on from, accuracies. The only code in the project that holds `Var`s.

use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::error::{ModelError, Result};
use crate::forward::Mode;
use crate::net::NetModel;
use crate::weights::Weights;
use candle_core::{D, DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use sanity_data::{Dataset, stream_rng};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW (Loshchilov & Hutter 2019), candle's; weight decay decoupled from the gradient.
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

/// AdamW's constants (candle's and PyTorch's defaults; the weight decay is the spec's).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One optimiser step after another, with a state that checkpoints save and restore.
enum Stepper {
    /// AdamW (Loshchilov & Hutter 2019, Algorithm 2) with candle's `AdamW` arithmetic, op for
    /// op: `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`,
    /// `w = w·(1 − lr·λ) − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + ε)`.
    Adamw { vars: Vec<Var>, m: Vec<Tensor>, v: Vec<Tensor>, steps: usize, lr: f64, weight_decay: f64 },
    /// SGD with momentum, see [`OptimizerKind::Sgd`].
    Sgd { vars: Vec<Var>, velocity: Vec<Option<Tensor>>, steps: usize, lr: f64, momentum: f64, weight_decay: f64 },
}

impl Stepper {
    fn new(vars: Vec<Var>, spec: &TrainSpec) -> Result<Self> {
        let (lr, weight_decay) = (spec.learning_rate, spec.weight_decay);
        Ok(match spec.optimizer {
            OptimizerKind::Adamw => {
                let zeros = |vars: &[Var]| vars.iter().map(|v| v.zeros_like()).collect::<candle_core::Result<Vec<_>>>();
                Stepper::Adamw { m: zeros(&vars)?, v: zeros(&vars)?, vars, steps: 0, lr, weight_decay }
            }
            OptimizerKind::Sgd => Stepper::Sgd {
                velocity: vec![None; vars.len()],
                vars,
                steps: 0,
                lr,
                momentum: spec.momentum,
                weight_decay,
            },
        })
    }

    /// Sets the learning rate of the steps to come.
    fn set_learning_rate(&mut self, rate: f64) {
        match self {
            Stepper::Adamw { lr, .. } | Stepper::Sgd { lr, .. } => *lr = rate,
        }
    }

    /// Backpropagates `loss` and updates every variable.
    fn step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        match self {
            Stepper::Adamw { vars, m, v, steps, lr, weight_decay } => {
                *steps += 1;
                let scale_m = 1f64 / (1f64 - BETA1.powi(*steps as i32));
                let scale_v = 1f64 / (1f64 - BETA2.powi(*steps as i32));
                for ((theta, m), v) in vars.iter().zip(m.iter_mut()).zip(v.iter_mut()) {
                    // Detached: a leaf's gradient can still hold the forward's op history
                    // (candle detaches only inner nodes' gradients), and the moments kept from
                    // it would hold every step's forward alive.
                    let Some(g) = grads.get(theta).map(Tensor::detach) else { continue };
                    let next_m = ((&*m * BETA1)? + (&g * (1.0 - BETA1))?)?;
                    let next_v = ((&*v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
                    let m_hat = (&next_m * scale_m)?;
                    let v_hat = (&next_v * scale_v)?;
                    let decayed = (theta.as_tensor() * (1f64 - *lr * *weight_decay))?;
                    let adjusted = (m_hat / (v_hat.sqrt()? + EPS)?)?;
                    theta.set(&(decayed - (adjusted * *lr)?)?)?;
                    (*m, *v) = (next_m, next_v);
                }
            }
            Stepper::Sgd { vars, velocity, steps, lr, momentum, weight_decay } => {
                *steps += 1;
                for (var, v) in vars.iter().zip(velocity.iter_mut()) {
                    let Some(mut g) = grads.get(var).map(Tensor::detach) else { continue };
                    if *weight_decay != 0.0 {
                        g = (g + var.as_tensor().detach().affine(*weight_decay, 0.0)?)?;
                    }
                    if *momentum != 0.0 {
                        g = match v.take() {
                            Some(previous) => (previous.affine(*momentum, 0.0)? + g)?,
                            None => g,
                        };
                        *v = Some(g.clone());
                    }
                    var.set(&(var.as_tensor() - g.affine(*lr, 0.0)?)?)?;
                }
            }
        }
        Ok(())
    }

    /// The state tensors under PyTorch's names for the variables `names`, and the steps taken.
    fn state(&self, names: &[String]) -> Result<(Weights, usize)> {
        let mut state = Weights::new();
        let steps = match self {
            Stepper::Adamw { m, v, steps, .. } => {
                for ((name, m), v) in names.iter().zip(m).zip(v) {
                    state.insert(format!("{name}.exp_avg"), m.clone());
                    state.insert(format!("{name}.exp_avg_sq"), v.clone());
                }
                *steps
            }
            Stepper::Sgd { velocity, steps, .. } => {
                for (name, v) in names.iter().zip(velocity) {
                    if let Some(v) = v {
                        state.insert(format!("{name}.momentum_buffer"), v.clone());
                    }
                }
                *steps
            }
        };
        Ok((state, steps))
    }

    /// Takes the state [`Stepper::state`] gave; a missing or misshapen tensor is an error.
    fn restore(&mut self, names: &[String], state: &Weights, steps: usize) -> Result<()> {
        let get = |name: String, like: &Var| -> Result<Tensor> {
            let t = state.get(&name).map_err(|_| ModelError::Training(format!("the checkpoint has no `{name}`")))?;
            match t.dims() == like.dims() {
                true => Ok(t.to_dtype(like.dtype())?),
                false => {
                    Err(ModelError::Training(format!("`{name}` has shape {:?}, expected {:?}", t.dims(), like.dims())))
                }
            }
        };
        match self {
            Stepper::Adamw { vars, m, v, steps: taken, .. } => {
                for (i, (name, var)) in names.iter().zip(vars.iter()).enumerate() {
                    m[i] = get(format!("{name}.exp_avg"), var)?;
                    v[i] = get(format!("{name}.exp_avg_sq"), var)?;
                }
                *taken = steps;
            }
            Stepper::Sgd { vars, velocity, steps: taken, .. } => {
                for (i, (name, var)) in names.iter().zip(vars.iter()).enumerate() {
                    let key = format!("{name}.momentum_buffer");
                    velocity[i] = state.get(&key).ok().map(|_| get(key, var)).transpose()?;
                }
                *taken = steps;
            }
        }
        Ok(())
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

/// The first tensor of `weights` holding a NaN or an infinity, described, if any.
fn non_finite_weight(weights: &Weights) -> Result<Option<String>> {
    for (name, tensor) in weights.iter() {
        let values = tensor.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Ok(Some(format!("`{name}` holds {bad} non-finite values after the epoch's updates")));
        }
    }
    Ok(None)
}

/// Loss of logits against labels: binary cross-entropy with logits for a single-logit model
/// (`max(z, 0) − z·y + log(1 + e^{−|z|})`, stable), softmax cross-entropy otherwise.
fn loss(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let n = labels.len();
    if logits.dim(1)? == 1 {
        let z = logits.flatten_all()?;
        let y = Tensor::from_vec(labels.iter().map(|&l| l as f32).collect::<Vec<_>>(), n, logits.device())?
            .to_dtype(z.dtype())?;
        let softplus = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
        Ok((z.relu()? - (z * y)? + softplus)?.mean_all()?)
    } else {
        let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let idx = Tensor::from_vec(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), (n, 1), logits.device())?;
        Ok(log_p.gather(&idx, 1)?.neg()?.mean_all()?)
    }
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
        state.optimizer.restore(&state.var_names, &checkpoint.optimizer, checkpoint.meta.steps)?;
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
            let (optimizer, steps) = state.optimizer.state(&state.var_names)?;
            let meta = CheckpointMeta {
                epoch,
                steps,
                seed: seed.to_string(),
                spec: TrainSpec { checkpoint_dir: None, ..spec.clone() },
                data: fingerprint.get_or_insert_with(|| data.fingerprint()).clone(),
                architecture: model.net.spec(),
                history: history.clone(),
            };
            Checkpoint { meta, weights: state.current().weights, optimizer, source: None }.save(dir)?;
        }
        if stop {
            return Ok(Training::Stopped { epoch });
        }
    }
    // Detach from the Vars: the returned weights are plain values that training no longer owns.
    let mut weights = Weights::new();
    for (k, t) in state.current().weights.iter() {
        weights.insert(k.clone(), t.detach().copy()?);
    }
    Ok(Training::Finished { weights, history })
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

/// What a training holds between minibatches: the trained parameters as Vars, the batch-norm
/// running statistics (buffers that each training forward replaces), and the optimiser.
struct TrainState<'a> {
    model: &'a NetModel,
    vars: Vec<(String, Var)>,
    var_names: Vec<String>,
    running: Weights,
    optimizer: Stepper,
}

impl<'a> TrainState<'a> {
    /// The state of a training of `model` from the weights of `first`.
    fn new(model: &'a NetModel, first: &NetModel, spec: &TrainSpec) -> Result<Self> {
        let buffer_names = model.net.buffer_names();
        let vars: Vec<(String, Var)> = first
            .weights
            .iter()
            .filter(|(k, _)| !buffer_names.contains(k))
            .map(|(k, t)| Ok((k.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?)))
            .collect::<Result<_>>()?;
        let var_names: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
        let mut running = Weights::new();
        for name in &buffer_names {
            running.insert(name.clone(), first.weights.get(name)?.to_dtype(DType::F32)?);
        }
        let optimizer = Stepper::new(vars.iter().map(|(_, v)| v.clone()).collect(), spec)?;
        Ok(Self { model, vars, var_names, running, optimizer })
    }

    /// The model with the current parameters and buffers.
    fn current(&self) -> NetModel {
        let mut weights = self.running.clone();
        for (k, v) in &self.vars {
            weights.insert(k.clone(), v.as_tensor().clone());
        }
        self.model.with_weights(weights)
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
        let [c, h, w] = data.image_shape;
        let outputs = self.model.net.num_outputs();
        let mut dropout_rng = stream_rng(seed, "train-dropout", epoch as u64);
        let (mut loss_sum, mut batches, mut correct) = (0.0, 0usize, 0usize);
        for batch in order.chunks(spec.batch_size) {
            let x = Tensor::from_vec(data.gather_images(batch), (batch.len(), c, h, w), &Device::Cpu)?;
            let labels: Vec<usize> = batch.iter().map(|&i| data.labels[i]).collect();
            let mut updated = self.running.clone();
            let logits = self.current().forward_in(&x, &mut Mode::Train(&mut dropout_rng, &mut updated))?;
            self.running = updated;
            let l = loss(&logits, &labels)?;
            let value = l.to_scalar::<f32>()?;
            if !value.is_finite() {
                let what = format!("the loss of minibatch {} is {value}", batches + 1);
                return Err(ModelError::Diverged { epoch, what, learning_rate: spec.learning_rate });
            }
            self.optimizer.step(&l)?;
            loss_sum += f64::from(value);
            batches += 1;
            on_batch(&BatchProgress {
                epoch,
                batch: batches,
                batches: data.len().div_ceil(spec.batch_size),
                loss: loss_sum / batches as f64,
                images: (batches * spec.batch_size).min(data.len()),
            });
            let predicted = classes_of(&logits.flatten_all()?.to_vec1::<f32>()?, outputs);
            correct += predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        }
        let trained = self.current();
        if let Some(what) = non_finite_weight(&trained.weights)? {
            return Err(ModelError::Diverged { epoch, what, learning_rate: spec.learning_rate });
        }
        let train_accuracy = match spec.stop_at_accuracy {
            Some(_) => Some(trained.accuracy(data)?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_steps_equal_candle_s_adamw_bit_for_bit() {
        use candle_nn::Optimizer;
        let values = |seed: u32, n: usize| {
            (0..n).map(move |i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        };
        let ours = [Var::from_vec(values(1, 12).collect(), (3, 4), &Device::Cpu).expect("var")];
        let theirs = [Var::from_vec(values(1, 12).collect(), (3, 4), &Device::Cpu).expect("var")];
        let target = Tensor::from_vec(values(7, 12).collect::<Vec<f32>>(), (3, 4), &Device::Cpu).expect("target");
        let spec = TrainSpec { learning_rate: 0.05, weight_decay: 0.01, ..TrainSpec::default() };
        let mut stepper = Stepper::new(ours.to_vec(), &spec).expect("ours");
        let params = candle_nn::ParamsAdamW { lr: 0.05, weight_decay: 0.01, ..Default::default() };
        let mut adamw = candle_nn::AdamW::new(theirs.to_vec(), params).expect("candle's");
        let loss = |w: &Var| (w.as_tensor() - &target).and_then(|d| d.sqr()).and_then(|d| d.sum_all()).expect("loss");
        for step in 0..5 {
            stepper.step(&loss(&ours[0])).expect("step");
            adamw.backward_step(&loss(&theirs[0])).expect("step");
            let [a, b] =
                [&ours[0], &theirs[0]].map(|v| v.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values"));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "step {step}");
        }
    }

    #[test]
    fn sgd_with_momentum_and_weight_decay_follows_pytorch_s_update() {
        // loss = Σ (w − t)²: g = 2 (w − t). torch.optim.SGD(lr, momentum, weight_decay):
        // g += wd·w; v = g (first step) or μ·v + g; w −= lr·v.
        let (t, lr, mu, wd) = ([1.0f64, -2.0], 0.1, 0.9, 0.01);
        let var = Var::from_vec(vec![0.5f64, 0.25], 2, &Device::Cpu).expect("var");
        let target = Tensor::from_vec(t.to_vec(), 2, &Device::Cpu).expect("target");
        let spec = TrainSpec {
            learning_rate: lr,
            momentum: mu,
            weight_decay: wd,
            optimizer: OptimizerKind::Sgd,
            ..TrainSpec::default()
        };
        let mut stepper = Stepper::new(vec![var.clone()], &spec).expect("sgd");
        let (mut w, mut v) = ([0.5f64, 0.25], [0.0f64; 2]);
        for step in 0..3 {
            let loss = (var.as_tensor() - &target).and_then(|d| d.sqr()).and_then(|d| d.sum_all()).expect("loss");
            stepper.step(&loss).expect("step");
            for i in 0..2 {
                let g = 2.0 * (w[i] - t[i]) + wd * w[i];
                v[i] = if step == 0 { g } else { mu * v[i] + g };
                w[i] -= lr * v[i];
            }
            let got = var.as_tensor().to_vec1::<f64>().expect("values");
            for (a, b) in got.iter().zip(&w) {
                assert!((a - b).abs() < 1e-12, "step {step}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn the_optimiser_state_holds_no_forward_alive() {
        // A leaf's gradient from candle's backward can carry the forward's op history (here
        // through `x`, a computed tensor); moments kept from it held every step's forward
        // alive (a ResNet-18 grew by 700 MB a step).
        let x = (Tensor::from_vec(vec![1.0f32, 2.0], 2, &Device::Cpu).expect("x") * 3.0).expect("computed");
        for optimizer in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            let var = Var::from_vec(vec![0.5f32, 0.25], 2, &Device::Cpu).expect("var");
            let spec = TrainSpec { optimizer, ..TrainSpec::default() };
            let mut stepper = Stepper::new(vec![var.clone()], &spec).expect("stepper");
            let x = Var::from_tensor(&x).expect("tracked");
            let loss = (var.as_tensor() * x.as_tensor()).and_then(|p| p.sqr()).and_then(|p| p.sum_all()).expect("loss");
            stepper.step(&loss).expect("step");
            let kept: Vec<&Tensor> = match &stepper {
                Stepper::Adamw { m, v, .. } => m.iter().chain(v).collect(),
                Stepper::Sgd { velocity, .. } => velocity.iter().flatten().collect(),
            };
            assert!(!kept.is_empty() && kept.iter().all(|t| !t.track_op()), "{optimizer:?} keeps an op history");
        }
    }
}
