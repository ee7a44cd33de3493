//! The explained output: one logit index per input.

use crate::error::{AttributionError, Result};
use candle_core::{Device, Tensor};

/// `Σ_i logits[i, targets[i]]`: one backward of this scalar gives every sample's gradient of
/// its own target logit, since samples do not interact in evaluation mode.
///
/// For a single-logit binary model the only target is 0, the logit itself.
pub fn selected_logit_sum(logits: &Tensor, targets: &[usize], method: &'static str) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    if targets.len() != n {
        return Err(AttributionError::Invalid {
            method,
            reason: format!("{} targets for {n} inputs; give one target per input", targets.len()),
        });
    }
    let mut mask = vec![0.0f32; n * k];
    for (i, &t) in targets.iter().enumerate() {
        if t >= k {
            return Err(AttributionError::Invalid {
                method,
                reason: format!("target {t} for input {i} is out of range; the model has {k} outputs (0..{k})"),
            });
        }
        mask[i * k + t] = 1.0;
    }
    let mask = Tensor::from_vec(mask, (n, k), &Device::Cpu)?.to_dtype(logits.dtype())?;
    Ok((logits * mask)?.sum_all()?)
}
