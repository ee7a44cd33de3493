//! AdamW and SGD with momentum on flat float32 buffers, op for op as PyTorch's single-tensor
//! CPU implementations (`torch.optim.AdamW`, `torch.optim.SGD` with `foreach=False`, the CPU
//! default): every update is elementwise, so a parameter may be kept in any layout (a
//! convolution's in the walk's reordered one) and the result does not depend on the thread
//! count. Checked against PyTorch's steps in `tests/training_step.rs`.

use crate::ops::simd::{has_avx2_fma, has_avx512_fma};
use crate::train::{OptimizerKind, TrainSpec};
use rayon::prelude::*;

/// AdamW's β1, β2 and ε (PyTorch's defaults; the weight decay is the spec's).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Values per parallel task of an update.
const CHUNK: usize = 1 << 14;

/// An optimiser's state: per parameter, its moments or momentum buffer, and the steps taken.
#[derive(Debug, Clone)]
pub enum Optimizer {
    /// AdamW (Loshchilov & Hutter 2019, Algorithm 2) as `torch.optim.AdamW`:
    /// `w ← w (1 − lr λ)`, `m ← lerp(m, g, 1 − β1)`, `v ← β2 v + (1 − β2) g²`,
    /// `w ← w − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + ε)`.
    Adamw {
        /// First moments, one buffer per parameter.
        m: Vec<Vec<f32>>,
        /// Second moments.
        v: Vec<Vec<f32>>,
        /// Steps taken.
        steps: usize,
        /// Learning rate of the steps to come.
        lr: f64,
        /// Decoupled weight decay λ.
        weight_decay: f64,
    },
    /// SGD with momentum as `torch.optim.SGD` (dampening 0, not Nesterov):
    /// `g ← g + λ w`; `b ← g` at the first step, else `b ← μ b + g`; `w ← w − lr b`.
    Sgd {
        /// Momentum buffers (none before the first step, or without momentum).
        velocity: Vec<Option<Vec<f32>>>,
        /// Steps taken.
        steps: usize,
        /// Learning rate of the steps to come.
        lr: f64,
        /// Momentum μ.
        momentum: f64,
        /// L2 weight decay λ, added to the gradient.
        weight_decay: f64,
    },
}

impl Optimizer {
    /// A fresh optimiser of `spec`'s kind for parameters of `sizes` values.
    pub fn new(sizes: &[usize], spec: &TrainSpec) -> Self {
        let (lr, weight_decay) = (spec.learning_rate, spec.weight_decay);
        match spec.optimizer {
            OptimizerKind::Adamw => {
                let zeros = || sizes.iter().map(|&s| vec![0.0f32; s]).collect();
                Optimizer::Adamw { m: zeros(), v: zeros(), steps: 0, lr, weight_decay }
            }
            OptimizerKind::Sgd => Optimizer::Sgd {
                velocity: vec![None; sizes.len()],
                steps: 0,
                lr,
                momentum: spec.momentum,
                weight_decay,
            },
        }
    }

    /// Sets the learning rate of the steps to come.
    pub fn set_learning_rate(&mut self, rate: f64) {
        match self {
            Optimizer::Adamw { lr, .. } | Optimizer::Sgd { lr, .. } => *lr = rate,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        match self {
            Optimizer::Adamw { steps, .. } | Optimizer::Sgd { steps, .. } => *steps,
        }
    }

    /// One step: updates `params[i]` with `grads[i]` for every parameter that has a gradient
    /// (one without, `None`, is passed over, decay and momentum included, as PyTorch passes
    /// over a parameter whose `grad` is `None`).
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[Option<Vec<f32>>]) {
        match self {
            Optimizer::Adamw { m, v, steps, lr, weight_decay } => {
                *steps += 1;
                let t = *steps as i32;
                // Python floats (f64) until they meet a float32 tensor.
                let decay = (1.0 - *lr * *weight_decay) as f32;
                let lerp_weight = (1.0 - BETA1) as f32;
                let (beta2, one_minus_beta2) = (BETA2 as f32, (1.0 - BETA2) as f32);
                let step_size = -(*lr / (1.0 - BETA1.powi(t))) as f32;
                let correction2_sqrt = (1.0 - BETA2.powi(t)).sqrt() as f32;
                let k = AdamwStep {
                    decay,
                    lerp_weight,
                    beta2,
                    one_minus_beta2,
                    step_size,
                    correction2_sqrt,
                    eps: EPS as f32,
                };
                for (((w, g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let Some(g) = g else { continue };
                    w.par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                        .for_each(|((w, g), (m, v))| k.run(w, g, m, v));
                }
            }
            Optimizer::Sgd { velocity, steps, lr, momentum, weight_decay } => {
                *steps += 1;
                let (decay, mu, minus_lr) = (*weight_decay as f32, *momentum as f32, -*lr as f32);
                for ((w, g), buffer) in params.iter_mut().zip(grads).zip(velocity.iter_mut()) {
                    let Some(g) = g else { continue };
                    // ATen's add with alpha: fmadd(other, alpha, self).
                    let mut d: Vec<f32> = if decay != 0.0 {
                        g.iter().zip(w.iter()).map(|(&g, &w)| w.mul_add(decay, g)).collect()
                    } else {
                        g.clone()
                    };
                    if mu != 0.0 {
                        match buffer {
                            Some(b) => {
                                b.iter_mut().zip(&d).for_each(|(b, &d)| *b = *b * mu + d);
                                d.clone_from(b);
                            }
                            None => *buffer = Some(d.clone()),
                        }
                    }
                    w.iter_mut().zip(&d).for_each(|(w, &d)| *w = d.mul_add(minus_lr, *w));
                }
            }
        }
    }

    /// The state buffers under PyTorch's suffixes (`exp_avg` and `exp_avg_sq`, or
    /// `momentum_buffer` where there is one): `(parameter index, suffix, values)`.
    pub fn buffers(&self) -> Vec<(usize, &'static str, &[f32])> {
        match self {
            Optimizer::Adamw { m, v, .. } => (0..m.len())
                .flat_map(|i| [(i, "exp_avg", m[i].as_slice()), (i, "exp_avg_sq", v[i].as_slice())])
                .collect(),
            Optimizer::Sgd { velocity, .. } => velocity
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.as_deref().map(|b| (i, "momentum_buffer", b)))
                .collect(),
        }
    }

    /// Takes a saved state: `get(parameter index, suffix)` gives a buffer's values, `None` where
    /// the checkpoint has none (an error for AdamW's moments, no buffer yet for SGD).
    pub fn restore<E>(
        &mut self,
        steps: usize,
        mut get: impl FnMut(usize, &'static str, bool) -> Result<Option<Vec<f32>>, E>,
    ) -> Result<(), E> {
        match self {
            Optimizer::Adamw { m, v, steps: taken, .. } => {
                for i in 0..m.len() {
                    if let Some(values) = get(i, "exp_avg", true)? {
                        m[i] = values;
                    }
                    if let Some(values) = get(i, "exp_avg_sq", true)? {
                        v[i] = values;
                    }
                }
                *taken = steps;
            }
            Optimizer::Sgd { velocity, steps: taken, .. } => {
                for (i, b) in velocity.iter_mut().enumerate() {
                    *b = get(i, "momentum_buffer", false)?;
                }
                *taken = steps;
            }
        }
        Ok(())
    }
}

/// One AdamW update's constants, as float32 (PyTorch's Python scalars meeting float32 tensors).
#[derive(Clone, Copy)]
struct AdamwStep {
    decay: f32,
    lerp_weight: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,
    correction2_sqrt: f32,
    eps: f32,
}

impl AdamwStep {
    /// Updates `w`, `m`, `v` with `g`: compiled for AVX-512 or AVX2 with FMA where the CPU has
    /// them (`f32::mul_add` is the same fused operation on every path, so the bytes agree).
    fn run(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        if has_avx512_fma() {
            // SAFETY: the function only enables AVX-512F and FMA, which `has_avx512_fma` found.
            #[allow(unsafe_code)]
            unsafe {
                self.run_avx512(w, g, m, v)
            }
        } else if has_avx2_fma() {
            // SAFETY: the function only enables AVX2 and FMA, which `has_avx2_fma` found.
            #[allow(unsafe_code)]
            unsafe {
                self.run_avx2(w, g, m, v)
            }
        } else {
            self.body(w, g, m, v)
        }
    }

    #[allow(unsafe_code)]
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,fma"))]
    unsafe fn run_avx512(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        self.body(w, g, m, v)
    }

    #[allow(unsafe_code)]
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn run_avx2(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        self.body(w, g, m, v)
    }

    #[inline(always)]
    fn body(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *w *= self.decay;
            // ATen's vectorised lerp: fmadd(weight, end − start, start).
            *m = self.lerp_weight.mul_add(g - *m, *m);
            *v = *v * self.beta2 + self.one_minus_beta2 * g * g;
            let denom = v.sqrt() / self.correction2_sqrt + self.eps;
            *w += self.step_size * *m / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_with_momentum_and_weight_decay_follows_pytorch_s_update() {
        // loss = Σ (w − t)²: g = 2 (w − t). torch.optim.SGD(lr, momentum, weight_decay):
        // g += wd·w; v = g (first step) or μ·v + g; w −= lr·v.
        let (t, lr, mu, wd) = ([1.0f64, -2.0], 0.1, 0.9, 0.01);
        let spec = TrainSpec {
            learning_rate: lr,
            momentum: mu,
            weight_decay: wd,
            optimizer: OptimizerKind::Sgd,
            ..TrainSpec::default()
        };
        let mut optimizer = Optimizer::new(&[2], &spec);
        let mut ours = vec![0.5f32, 0.25];
        let (mut w, mut v) = ([0.5f64, 0.25], [0.0f64; 2]);
        for step in 0..3 {
            let g: Vec<f32> = ours.iter().zip(&t).map(|(&w, &t)| (2.0 * (f64::from(w) - t)) as f32).collect();
            optimizer.step(&mut [&mut ours], &[Some(g)]);
            for i in 0..2 {
                let g = 2.0 * (w[i] - t[i]) + wd * w[i];
                v[i] = if step == 0 { g } else { mu * v[i] + g };
                w[i] -= lr * v[i];
            }
            for (a, b) in ours.iter().zip(&w) {
                assert!((f64::from(*a) - b).abs() < 1e-6, "step {step}: {a} vs {b}");
            }
        }
        assert_eq!(optimizer.steps(), 3);
        assert_eq!(optimizer.buffers().len(), 1);
    }
}
