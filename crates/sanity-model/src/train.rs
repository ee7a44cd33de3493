//! Training: AdamW on minibatches, seeded shuffles and dropout, accuracies.
//! The only code in the project that holds `Var`s.

use crate::error::{ModelError, Result};
use crate::forward::{Mode, Model};
use crate::weights::Weights;
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use candle_nn::optim::{AdamW, ParamsAdamW};
use rand::seq::SliceRandom;
use sanity_data::{Dataset, stream_rng};
use serde::{Deserialize, Serialize};

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// Passes over the training set.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Stop after the first epoch whose training-set accuracy (eval mode, measured after the
    /// epoch) reaches this; `epochs` is then the most epochs trained.
    pub stop_at_accuracy: Option<f64>,
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

/// Logits of every image of `data`, `[n · outputs]` row-major, evaluated in batches.
pub fn predict_logits(model: &Model, data: &Dataset, batch_size: usize) -> Result<Vec<f32>> {
    let [c, h, w] = data.image_shape;
    let mut out = Vec::with_capacity(data.len() * model.arch.num_outputs());
    for start in (0..data.len()).step_by(batch_size.max(1)) {
        let end = (start + batch_size).min(data.len());
        let x = Tensor::from_slice(data.images_in(start..end), (end - start, c, h, w), &Device::Cpu)?;
        out.extend(model.forward(&x)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Fraction of `data` classified correctly by `model` in evaluation mode.
pub fn accuracy(model: &Model, data: &Dataset) -> Result<f64> {
    let logits = predict_logits(model, data, 256)?;
    let predicted = classes_of(&logits, model.arch.num_outputs());
    let correct = predicted.iter().zip(&data.labels).filter(|(p, l)| p == l).count();
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Trains `model` on `data` with AdamW; shuffles draw from `stream_rng(seed, "train-shuffle",
/// epoch)` and dropout from `stream_rng(seed, "train-dropout", epoch)`. Calls `on_epoch` after
/// each epoch. Returns the trained weights (a new value; `model` is untouched).
pub fn train(
    model: &Model,
    data: &Dataset,
    spec: &TrainSpec,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<(Weights, Vec<EpochStats>)> {
    let outputs = model.arch.num_outputs();
    if !(outputs == data.num_classes || (outputs == 1 && data.num_classes == 2)) {
        return Err(ModelError::Training(format!(
            "the model has {outputs} outputs but the data has {} classes; accepted: one output per class, or a single logit for 2 classes",
            data.num_classes
        )));
    }
    if spec.batch_size == 0 || data.is_empty() {
        return Err(ModelError::Training("batch_size and the number of training images must be >= 1".into()));
    }
    let [c, h, w] = data.image_shape;
    let vars: Vec<(String, Var)> = model
        .weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?)))
        .collect::<Result<_>>()?;
    let params = ParamsAdamW { lr: spec.learning_rate, weight_decay: spec.weight_decay, ..Default::default() };
    let mut optimizer = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params)?;
    let current = |vars: &[(String, Var)]| {
        let mut weights = Weights::new();
        for (k, v) in vars {
            weights.insert(k.clone(), v.as_tensor().clone());
        }
        model.with_weights(weights)
    };
    let mut history = Vec::with_capacity(spec.epochs);
    let mut order: Vec<usize> = (0..data.len()).collect();
    for epoch in 1..=spec.epochs {
        order.shuffle(&mut stream_rng(seed, "train-shuffle", epoch as u64));
        let mut dropout_rng = stream_rng(seed, "train-dropout", epoch as u64);
        let (mut loss_sum, mut batches, mut correct) = (0.0, 0usize, 0usize);
        for batch in order.chunks(spec.batch_size) {
            let x = Tensor::from_vec(data.gather_images(batch), (batch.len(), c, h, w), &Device::Cpu)?;
            let labels: Vec<usize> = batch.iter().map(|&i| data.labels[i]).collect();
            let logits =
                current(&vars).forward_range(&x, 0..model.arch.layers.len(), &mut Mode::Train(&mut dropout_rng))?;
            let l = loss(&logits, &labels)?;
            optimizer.backward_step(&l)?;
            loss_sum += f64::from(l.to_scalar::<f32>()?);
            batches += 1;
            let predicted = classes_of(&logits.flatten_all()?.to_vec1::<f32>()?, outputs);
            correct += predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        }
        let train_accuracy = match spec.stop_at_accuracy {
            Some(_) => Some(accuracy(&current(&vars), data)?),
            None => None,
        };
        let stats = EpochStats {
            epoch,
            loss: loss_sum / batches as f64,
            running_accuracy: correct as f64 / data.len() as f64,
            train_accuracy,
        };
        on_epoch(&stats);
        history.push(stats);
        if let (Some(reached), Some(target)) = (train_accuracy, spec.stop_at_accuracy)
            && reached >= target
        {
            break;
        }
    }
    let trained = current(&vars).weights;
    // Detach from the Vars: the returned weights are plain values that training no longer owns.
    let mut out = Weights::new();
    for (k, t) in trained.iter() {
        out.insert(k.clone(), t.detach().copy()?);
    }
    Ok((out, history))
}
