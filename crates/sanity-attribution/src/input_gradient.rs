//! The gradient of each input's target logit with respect to that input (or to the input of
//! any later layer), with a chosen ReLU backward rule: the building block of the gradient-based
//! methods and of Grad-CAM.

use crate::error::Result;
use crate::target::one_hot;
use candle_core::{DType, Device, Tensor, Var};
use sanity_model::{Mode, Model, ReluMode, native};

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
/// `start − 1`), for every row `i`. Float32 models take the project's direct forward/backward
/// ([`sanity_model::native`]); other dtypes (the f64 checks) go through candle's autograd over
/// the same ops, one backward of `Σ_i logit_{t_i}` (rows do not interact in evaluation mode).
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
    let seeds: Vec<Vec<f32>> = targets.iter().map(|t| one_hot(t, n, outputs, method)).collect::<Result<_>>()?;
    let layers = start..first.arch.layers.len();
    if h.dtype() == DType::F32 {
        let values = h.flatten_all()?.to_vec1::<f32>()?;
        let seed_refs: Vec<&[f32]> = seeds.iter().map(|s| s.as_slice()).collect();
        let grads = native::input_gradients(models, &values, n, layers, &seed_refs, relu)?;
        return grads.into_iter().map(|g| Ok(Tensor::from_vec(g, h.shape(), &Device::Cpu)?)).collect();
    }
    let mut grads = Vec::with_capacity(models.len());
    for (model, seed) in models.iter().zip(seeds) {
        let input = Var::from_tensor(h)?;
        let logits = model.forward_with(input.as_tensor(), layers.clone(), &mut Mode::Eval, relu)?;
        let seed = Tensor::from_vec(seed, logits.shape(), &Device::Cpu)?.to_dtype(logits.dtype())?;
        let all = (logits * seed)?.sum_all()?.backward()?;
        grads.push(match all.get(input.as_tensor()) {
            Some(g) => g.clone(),
            None => h.zeros_like()?,
        });
    }
    Ok(grads)
}

/// The input gradients at many points, each derived from one of the `n` inputs of `x`
/// (`points[p].0`): `fill(p, buffer)` appends point `p`'s values (the `[c, h, w]` of an input
/// of `x`). Points are evaluated `batch` at a time under every model, the target of a point
/// being its input's; `visit(m, p, gradient)` receives each point's gradient under model `m`
/// as f64. The common loop of integrated gradients and expected gradients.
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
