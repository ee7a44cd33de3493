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
    let n = h.dim(0)?;
    let outputs = model.arch.num_outputs();
    let seed = one_hot(targets, n, outputs, method)?;
    let layers = start..model.arch.layers.len();
    if h.dtype() == DType::F32 {
        let values = h.flatten_all()?.to_vec1::<f32>()?;
        let grad = native::input_gradient(model, &values, n, layers, &seed, relu)?;
        return Ok(Tensor::from_vec(grad, h.shape(), &Device::Cpu)?);
    }
    let input = Var::from_tensor(h)?;
    let logits = model.forward_with(input.as_tensor(), layers, &mut Mode::Eval, relu)?;
    let seed = Tensor::from_vec(seed, logits.shape(), &Device::Cpu)?.to_dtype(logits.dtype())?;
    let grads = (logits * seed)?.sum_all()?.backward()?;
    match grads.get(input.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => Ok(h.zeros_like()?),
    }
}
