//! The explained output: one logit index per input, as the seed of the backward pass.

use crate::error::{AttributionError, Result};

/// One-hot rows `[n, outputs]` selecting each input's target logit: the gradient seed for
/// `Σ_i logit_{t_i}(x_i)`, whose one backward gives every input's gradient of its own target
/// (inputs do not interact in evaluation mode). Targets are checked here, once, for both the
/// direct and the autograd path. For a single-logit binary model the only target is 0.
pub fn one_hot(targets: &[usize], n: usize, outputs: usize, method: &'static str) -> Result<Vec<f32>> {
    if targets.len() != n {
        return Err(AttributionError::Invalid {
            method,
            reason: format!("{} targets for {n} inputs; give one target per input", targets.len()),
        });
    }
    let mut seed = vec![0.0f32; n * outputs];
    for (i, &t) in targets.iter().enumerate() {
        if t >= outputs {
            return Err(AttributionError::Invalid {
                method,
                reason: format!(
                    "target {t} for input {i} is out of range; the model has {outputs} outputs (0..{outputs})"
                ),
            });
        }
        seed[i * outputs + t] = 1.0;
    }
    Ok(seed)
}

/// Checks that there is one target list per model and one target per input in each.
pub fn check_target_lists(targets: &[&[usize]], models: usize, n: usize, method: &'static str) -> Result<()> {
    if targets.len() != models {
        return Err(AttributionError::Invalid {
            method,
            reason: format!("{} target lists for {models} models; give one per model", targets.len()),
        });
    }
    match targets.iter().find(|t| t.len() != n) {
        Some(t) => Err(AttributionError::Invalid {
            method,
            reason: format!("{} targets for {n} inputs; give one target per input", t.len()),
        }),
        None => Ok(()),
    }
}
