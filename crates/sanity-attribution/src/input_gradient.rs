//! The gradient of each input's target logit with respect to that input (or to the input of
//! any later layer), with a chosen ReLU backward rule: the building block of the gradient-based
//! methods and of Grad-CAM.

use crate::error::Result;
use crate::target::one_hot;
use candle_core::{DType, Device, Tensor, Var};
use sanity_model::{Mode, Model, ReluMode};
use std::ops::Range;

/// `∂ logit_{t_i}(x_i) / ∂ x_i` for every row `i` of `x` `[n, c, h, w]`, as `[n, c, h, w]`.
pub fn input_gradient(
    model: &Model,
    x: &Tensor,
    targets: &[usize],
    relu: ReluMode,
    method: &'static str,
) -> Result<Tensor> {
    gradient_from(model, x, 0, targets, relu, method)
}

/// [`input_gradient`] under each of `models`, sharing unchanged layers (see [`gradients_from`]).
pub fn input_gradients(
    models: &[&Model],
    x: &Tensor,
    targets: &[&[usize]],
    relu: ReluMode,
    method: &'static str,
) -> Result<Vec<Tensor>> {
    gradients_from(models, x, 0, targets, relu, method)
}

/// `∂ logit_{t_i} / ∂ h_i` where `h` is the input of layer `start` (the output of layer
/// `start − 1`), for every row `i`: candle's autograd over the project's ops, one backward of
/// `Σ_i logit_{t_i}` (rows do not interact in evaluation mode). These sequential methods are
/// the reference the graph walk's (`graph_methods.rs`) are checked against.
pub fn gradient_from(
    model: &Model,
    h: &Tensor,
    start: usize,
    targets: &[usize],
    relu: ReluMode,
    method: &'static str,
) -> Result<Tensor> {
    let mut grads = gradients_from(&[model], h, start, &[targets], relu, method)?;
    Ok(grads.remove(0))
}

/// [`gradient_from`] under each of `models` with `targets[m]` for `models[m]`; float32 models
/// share the evaluation of the layers whose weights are the same as `models[0]`'s.
pub fn gradients_from(
    models: &[&Model],
    h: &Tensor,
    start: usize,
    targets: &[&[usize]],
    relu: ReluMode,
    method: &'static str,
) -> Result<Vec<Tensor>> {
    let Some(first) = models.first() else { return Ok(Vec::new()) };
    let n = h.dim(0)?;
    let outputs = first.arch.num_outputs();
    let seeds: Vec<Vec<f64>> = targets
        .iter()
        .map(|t| Ok(one_hot(t, n, outputs, method)?.into_iter().map(f64::from).collect()))
        .collect::<Result<_>>()?;
    seeded_gradients(models, h, start, &seeds, relu, None)
}

/// `∂(Σ_i Σ_j seeds[m]_ij · logit_j(h_i)) / ∂h_i` under each of `models[m]` for `h` the input of
/// layer `start`; with `segments`, summed over runs of consecutive inputs:
/// `[segments.len(), ..]`. Candle's autograd over the project's ops, in the input's dtype.
fn seeded_gradients(
    models: &[&Model],
    h: &Tensor,
    start: usize,
    seeds: &[Vec<f64>],
    relu: ReluMode,
    segments: Option<&[usize]>,
) -> Result<Vec<Tensor>> {
    let Some(first) = models.first() else { return Ok(Vec::new()) };
    let layers = start..first.arch.layers.len();
    let mut grads = Vec::with_capacity(models.len());
    for (model, seed) in models.iter().zip(seeds) {
        let input = Var::from_tensor(h)?;
        let logits = model.forward_with(input.as_tensor(), layers.clone(), &mut Mode::Eval, relu)?;
        let seed = Tensor::from_slice(seed, logits.shape(), &Device::Cpu)?.to_dtype(logits.dtype())?;
        let all = (logits * seed)?.sum_all()?.backward()?;
        let g = match all.get(input.as_tensor()) {
            Some(g) => g.clone(),
            None => h.zeros_like()?,
        };
        grads.push(match segments {
            Some(segments) => {
                let mut sums = Vec::with_capacity(segments.len());
                let mut at = 0;
                for &count in segments {
                    sums.push(g.narrow(0, at, count)?.sum_keepdim(0)?);
                    at += count;
                }
                Tensor::cat(&sums, 0)?
            }
            None => g,
        });
    }
    Ok(grads)
}

/// `Σ_k w_k · ∂ logit_{t_i}(p_ik) / ∂ p_ik` for every input `i` of `x` over its `per_input`
/// points `p_ik` (`fill(i, k, buffer)` appends the `[c, h, w]` values of `p_ik`, `weight(k)`
/// gives `w_k`), under each of `models` with the targets `targets[m]`: per model, `[n, c, h, w]`
/// row-major as f64. Points go `batch` at a time in chunks that hold whole inputs (or, when an
/// input has more than `batch` points, `batch`-long runs of one input), so the sums do not
/// depend on which other inputs are evaluated with them. The weights ride in the backward's
/// seeds and the sums over a chunk are taken after it; chunks add up in f64. The common loop of integrated
/// gradients and SmoothGrad.
///
/// The weights must be `>= 0` unless `relu` is [`ReluMode::Standard`]: guided backprop's and
/// deconvnet's rules clip negative gradients, so they commute only with non-negative scaling.
#[allow(clippy::too_many_arguments)]
pub fn weighted_gradient_sums(
    models: &[&Model],
    x: &Tensor,
    targets: &[&[usize]],
    per_input: usize,
    batch: usize,
    relu: ReluMode,
    method: &'static str,
    mut fill: impl FnMut(usize, usize, &mut Vec<f64>),
    weight: impl Fn(usize) -> f64,
) -> Result<Vec<Vec<f64>>> {
    let Some(first) = models.first() else { return Ok(Vec::new()) };
    let (n, c, h, w) = x.dims4()?;
    let (per, outputs) = (c * h * w, first.arch.num_outputs());
    let mut sums = vec![vec![0.0f64; n * per]; models.len()];
    let mut inputs = Vec::with_capacity(batch.max(1).min(n * per_input) * per);
    for chunk in aligned_chunks(n, per_input, batch.max(1)) {
        inputs.clear();
        let mut seeds = vec![Vec::new(); models.len()];
        for &(i, ref steps) in &chunk {
            for k in steps.clone() {
                fill(i, k, &mut inputs);
            }
            for (seed, t) in seeds.iter_mut().zip(targets) {
                let row = one_hot(&t[i..=i], 1, outputs, method)?;
                for k in steps.clone() {
                    let w = weight(k);
                    debug_assert!(w >= 0.0 || relu == ReluMode::Standard, "negative weight {w} under {relu:?}");
                    seed.extend(row.iter().map(|&v| f64::from(v) * w));
                }
            }
        }
        let segments: Vec<usize> = chunk.iter().map(|(_, steps)| steps.len()).collect();
        let points: usize = segments.iter().sum();
        let point_values = Tensor::from_slice(&inputs, (points, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?;
        let grads = seeded_gradients(models, &point_values, 0, &seeds, relu, Some(&segments))?;
        for (sums, grads) in sums.iter_mut().zip(grads) {
            let values = grads.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            for (g, &(i, _)) in values.chunks_exact(per).zip(&chunk) {
                sums[i * per..(i + 1) * per].iter_mut().zip(g).for_each(|(s, v)| *s += v);
            }
        }
    }
    Ok(sums)
}

/// The chunks of [`weighted_gradient_sums`]: lists of `(input, its points)`, at most `batch`
/// points each, whole inputs together when `per_input <= batch`.
pub(crate) fn aligned_chunks(n: usize, per_input: usize, batch: usize) -> Vec<Vec<(usize, Range<usize>)>> {
    if per_input <= batch {
        let inputs: Vec<usize> = (0..n).collect();
        inputs.chunks(batch / per_input.max(1)).map(|c| c.iter().map(|&i| (i, 0..per_input)).collect()).collect()
    } else {
        (0..n)
            .flat_map(|i| (0..per_input).step_by(batch).map(move |k| vec![(i, k..(k + batch).min(per_input))]))
            .collect()
    }
}

/// The input gradients at many points, each derived from one of the `n` inputs of `x`
/// (`points[p].0`): `fill(p, buffer)` appends point `p`'s values (the `[c, h, w]` of an input
/// of `x`). Points are evaluated `batch` at a time under every model, the target of a point
/// being its input's; `visit(m, p, gradient)` receives each point's gradient under model `m`
/// as f64. The loop of expected gradients (whose points each carry their own reference).
#[allow(clippy::too_many_arguments)]
pub fn path_gradients<P: Copy>(
    models: &[&Model],
    x: &Tensor,
    targets: &[&[usize]],
    points: &[(usize, P)],
    batch: usize,
    method: &'static str,
    mut fill: impl FnMut((usize, P), &mut Vec<f64>),
    mut visit: impl FnMut(usize, (usize, P), &[f64]),
) -> Result<()> {
    let (_, c, h, w) = x.dims4()?;
    let per = c * h * w;
    let mut inputs = Vec::with_capacity(batch.max(1) * per);
    for chunk in points.chunks(batch.max(1)) {
        inputs.clear();
        for &point in chunk {
            fill(point, &mut inputs);
        }
        let chunk_targets: Vec<Vec<usize>> =
            targets.iter().map(|t| chunk.iter().map(|&(i, _)| t[i]).collect()).collect();
        let target_refs: Vec<&[usize]> = chunk_targets.iter().map(|t| t.as_slice()).collect();
        let batch = Tensor::from_slice(&inputs, (chunk.len(), c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?;
        let grads = input_gradients(models, &batch, &target_refs, ReluMode::Standard, method)?;
        for (m, grads) in grads.into_iter().enumerate() {
            let values = grads.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            for (g, &point) in values.chunks_exact(per).zip(chunk) {
                visit(m, point, g);
            }
        }
    }
    Ok(())
}

/// The [`crate::method::Attribution`] impl of a method that is the input gradient of the target
/// logit under one ReLU backward `rule` (gradient, guided backprop, deconvnet): `RULE` names
/// the rule once, for the maps and for SmoothGrad's summed gradients
/// ([`crate::method::Attribution::gradient_rule`]).
macro_rules! relu_rule_attribution {
    ($method:ty, $id:literal, $rule:expr) => {
        impl $method {
            /// Its ReLU backward.
            const RULE: ::sanity_model::ReluMode = $rule;
        }

        impl $crate::method::Attribution for $method {
            fn id(&self) -> &'static str {
                $id
            }

            fn attribute(
                &self,
                model: &::sanity_model::Model,
                x: &::candle_core::Tensor,
                targets: &[usize],
                _ids: &[u64],
            ) -> $crate::error::Result<::candle_core::Tensor> {
                $crate::input_gradient::input_gradient(model, x, targets, Self::RULE, self.id())
            }

            fn attribute_models(
                &self,
                models: &[&::sanity_model::Model],
                x: &::candle_core::Tensor,
                targets: &[&[usize]],
                _: &[u64],
            ) -> $crate::error::Result<Vec<::candle_core::Tensor>> {
                $crate::input_gradient::input_gradients(models, x, targets, Self::RULE, self.id())
            }

            fn gradient_rule(&self) -> Option<::sanity_model::ReluMode> {
                Some(Self::RULE)
            }
        }
    };
}
pub(crate) use relu_rule_attribution;
