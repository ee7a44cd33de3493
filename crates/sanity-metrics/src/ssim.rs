//! Mean structural similarity, as scikit-image's `structural_similarity` (v0.26).
//!
//! Wang et al. 2004, IEEE TIP 13(4), Eq. 13:
//! ```text
//! SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)),
//! C1 = (K1 R)², C2 = (K2 R)², R = data_range
//! ```
//! Local moments come from a separable filter with scipy.ndimage's `reflect` boundary
//! (`d c b a | a b c d | d c b a`): a Gaussian (σ = 1.5, truncate 3.5, hence 11 taps, the
//! `gaussian_weights=True` setting of Wang et al. and of Adebayo et al.'s code) or a uniform
//! window. Variances use the sample normalisation `NP / (NP − 1)`, NP = window pixels
//! (`use_sample_covariance=True`). The mean is taken over the image without a border of
//! `(win − 1) / 2` pixels, as scikit-image does. Multichannel maps: the mean over channels.
//! All arithmetic in f64. Deviations from scikit-image: none known; fixtures in
//! `tests/fixtures/metrics.json`.

use crate::map::Map;
use crate::metric::{MetricSpec, Score, Status};
use sanity_data::{gaussian_taps, reflect};
use serde::{Deserialize, Serialize};

/// The local window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SsimWindow {
    /// Gaussian weights: `exp(−x²/2σ²)`, normalised, radius `⌊truncate·σ + 0.5⌋`.
    Gaussian {
        /// σ in pixels.
        #[serde(default = "default_sigma")]
        sigma: f64,
        /// Radius in σ.
        #[serde(default = "default_truncate")]
        truncate: f64,
    },
    /// Equal weights over an odd `size`² window (scikit-image's default, size 7).
    Uniform {
        /// Odd window side.
        #[serde(default = "default_uniform_size")]
        size: usize,
    },
}

/// 1.5, as Wang et al. 2004.
pub fn default_sigma() -> f64 {
    1.5
}
/// 3.5, scikit-image's truncate for SSIM.
pub fn default_truncate() -> f64 {
    3.5
}
/// 7, scikit-image's default window.
pub fn default_uniform_size() -> usize {
    7
}
/// 0.01, as Wang et al. 2004.
pub fn default_k1() -> f64 {
    0.01
}
/// 0.03, as Wang et al. 2004.
pub fn default_k2() -> f64 {
    0.03
}
/// The 11-tap Gaussian window (σ 1.5, truncate 3.5).
pub fn default_window() -> SsimWindow {
    SsimWindow::Gaussian { sigma: default_sigma(), truncate: default_truncate() }
}

/// SSIM parameters. `data_range` has no default: it must match the maps' post-processing
/// (1 for maps scaled to [0, 1], 2 for [−1, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsimParams {
    /// The dynamic range R of the values (`max − min` possible).
    pub data_range: f64,
    /// Local window; default Gaussian σ 1.5.
    #[serde(default = "default_window")]
    pub window: SsimWindow,
    /// K1, default 0.01.
    #[serde(default = "default_k1")]
    pub k1: f64,
    /// K2, default 0.03.
    #[serde(default = "default_k2")]
    pub k2: f64,
}

/// The widest SSIM window, in taps (wider than any map [`crate::postprocess::MAX_RESIZE`]
/// allows).
pub const MAX_WINDOW: usize = 8193;

impl SsimParams {
    /// Checks the parameters; the message says what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.data_range.is_finite() && self.data_range > 0.0) {
            return Err(format!("data_range = {}; accepted: a finite value > 0", self.data_range));
        }
        if !(self.k1 > 0.0 && self.k2 > 0.0) {
            return Err("k1 and k2 must be > 0".into());
        }
        if !(self.k1.is_finite() && self.k2.is_finite()) {
            return Err(format!("k1 = {}, k2 = {}; accepted: finite values > 0", self.k1, self.k2));
        }
        match self.window {
            SsimWindow::Gaussian { sigma, truncate }
                if !(sigma > 0.0 && truncate > 0.0 && sigma * truncate <= MAX_WINDOW as f64 / 2.0) =>
            {
                Err(format!(
                    "gaussian window sigma = {sigma}, truncate = {truncate}; both must be > 0, and the window (2 * sigma * truncate + 1 taps) at most {MAX_WINDOW} wide"
                ))
            }
            SsimWindow::Uniform { size } if size < 3 || size % 2 == 0 || size > MAX_WINDOW => {
                Err(format!("uniform window size = {size}; accepted: an odd size from 3 to {MAX_WINDOW}"))
            }
            _ => Ok(()),
        }
    }

    /// The window's side in pixels (scikit-image's `win_size`).
    pub fn window_side(&self) -> usize {
        self.taps().len()
    }

    /// The 1-D filter taps (odd length, sum 1).
    fn taps(&self) -> Vec<f64> {
        match self.window {
            SsimWindow::Gaussian { sigma, truncate } => gaussian_taps(sigma, truncate),
            SsimWindow::Uniform { size } => vec![1.0 / size as f64; size],
        }
    }
}

/// Separable correlation of `src` `[h, w]` with `taps` along axis 0 then axis 1 (as scipy),
/// reflect border. Axis 0 accumulates whole rows (vectorisable); axis 1 works on a row copied
/// into `line` with its reflected border, each tap adding a shifted slice (vectorisable too).
fn filter2(src: &[f64], h: usize, w: usize, taps: &[f64], tmp: &mut [f64], out: &mut [f64], line: &mut Vec<f64>) {
    let r = taps.len() / 2;
    for y in 0..h {
        let dst = &mut tmp[y * w..(y + 1) * w];
        dst.fill(0.0);
        for (k, &t) in taps.iter().enumerate() {
            let sy = reflect(y as isize + k as isize - r as isize, h);
            for (d, &v) in dst.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
                *d += t * v;
            }
        }
    }
    for y in 0..h {
        let row = &tmp[y * w..(y + 1) * w];
        line.clear();
        line.extend((0..r).map(|i| row[reflect(i as isize - r as isize, w)]));
        line.extend_from_slice(row);
        line.extend((w + r..w + 2 * r).map(|i| row[reflect(i as isize - r as isize, w)]));
        let dst = &mut out[y * w..(y + 1) * w];
        dst.fill(0.0);
        for (k, &t) in taps.iter().enumerate() {
            for (o, &v) in dst.iter_mut().zip(&line[k..k + w]) {
                *o += t * v;
            }
        }
    }
}

/// One channel of a reference map with its local means `μx` and `E[x²]`, computed once for
/// the comparisons of the reference with many maps.
pub(crate) struct ChannelMoments {
    x: Vec<f64>,
    ux: Vec<f64>,
    uxx: Vec<f64>,
}

/// Filter scratch: the row buffer and the axis-0 pass.
struct Scratch {
    tmp: Vec<f64>,
    line: Vec<f64>,
}

impl Scratch {
    fn new(n: usize, w: usize, taps: usize) -> Self {
        Self { tmp: vec![0.0; n], line: Vec::with_capacity(w + taps) }
    }

    fn filtered(&mut self, src: &[f64], h: usize, w: usize, taps: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; h * w];
        filter2(src, h, w, taps, &mut self.tmp, &mut out, &mut self.line);
        out
    }
}

fn moments_of(a: &[f32], h: usize, w: usize, taps: &[f64]) -> ChannelMoments {
    let x: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
    let mut scratch = Scratch::new(h * w, w, taps.len());
    let (ux, uxx) = (scratch.filtered(&x, h, w, taps), scratch.filtered(&xx, h, w, taps));
    ChannelMoments { x, ux, uxx }
}

/// The buffers of one comparison, kept per thread so that scoring a pair allocates nothing.
#[derive(Default)]
struct PairBuffers {
    y: Vec<f64>,
    yy: Vec<f64>,
    xy: Vec<f64>,
    uy: Vec<f64>,
    uyy: Vec<f64>,
    uxy: Vec<f64>,
    tmp: Vec<f64>,
    line: Vec<f64>,
}

thread_local! {
    static PAIR_BUFFERS: std::cell::RefCell<PairBuffers> = std::cell::RefCell::default();
}

/// SSIM of one channel pair `[h, w]`, the first given by its moments.
fn ssim_channel(reference: &ChannelMoments, b: &[f32], h: usize, w: usize, p: &SsimParams, taps: &[f64]) -> f64 {
    PAIR_BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => ssim_channel_in(&mut buffers, reference, b, h, w, p, taps),
        Err(_) => ssim_channel_in(&mut PairBuffers::default(), reference, b, h, w, p, taps),
    })
}

fn ssim_channel_in(
    buffers: &mut PairBuffers,
    reference: &ChannelMoments,
    b: &[f32],
    h: usize,
    w: usize,
    p: &SsimParams,
    taps: &[f64],
) -> f64 {
    let n = h * w;
    let PairBuffers { y, yy, xy, uy, uyy, uxy, tmp, line } = buffers;
    for v in [&mut *y, &mut *yy, &mut *xy, &mut *uy, &mut *uyy, &mut *uxy, &mut *tmp] {
        v.clear();
        v.resize(n, 0.0);
    }
    for (((y, yy), xy), (&v, &x)) in y.iter_mut().zip(yy.iter_mut()).zip(xy.iter_mut()).zip(b.iter().zip(&reference.x))
    {
        *y = f64::from(v);
        *yy = *y * *y;
        *xy = x * *y;
    }
    filter2(y, h, w, taps, tmp, uy, line);
    filter2(yy, h, w, taps, tmp, uyy, line);
    filter2(xy, h, w, taps, tmp, uxy, line);
    let (ux, uxx) = (&reference.ux, &reference.uxx);
    let np = (taps.len() * taps.len()) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = ((p.k1 * p.data_range).powi(2), (p.k2 * p.data_range).powi(2));
    let pad = (taps.len() - 1) / 2;
    let mut sum = 0.0;
    for yy_ in pad..h - pad {
        for xx_ in pad..w - pad {
            let i = yy_ * w + xx_;
            let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
            let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
            let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
            let num = (2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2);
            let den = (ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2);
            sum += num / den;
        }
    }
    sum / ((h - 2 * pad) * (w - 2 * pad)) as f64
}

/// The per-channel moments of a reference map, or why it cannot be compared.
pub(crate) fn prepare_ssim(a: &Map, params: &SsimParams) -> Result<Vec<ChannelMoments>, Status> {
    if a.data.iter().any(|v| !v.is_finite()) {
        return Err(Status::NonFinite);
    }
    let taps = params.taps();
    let [c, h, w] = a.shape;
    if h < taps.len() || w < taps.len() {
        return Err(Status::TooSmall);
    }
    Ok((0..c).map(|k| moments_of(a.channel(k), h, w, &taps)).collect())
}

/// Mean SSIM (over channels) of a prepared reference map and `b` of the same shape.
pub(crate) fn ssim_prepared(reference: &[ChannelMoments], b: &Map, params: &SsimParams) -> Score {
    // The callers have checked that `b` is finite and has the reference's shape.
    let taps = params.taps();
    let [c, h, w] = b.shape;
    let total: f64 = (0..c).map(|k| ssim_channel(&reference[k], b.channel(k), h, w, params, &taps)).sum();
    Ok(total / c as f64)
}

/// Mean SSIM of two maps of the same shape (mean over channels).
pub fn ssim(a: &Map, b: &Map, params: &SsimParams) -> Score {
    MetricSpec::Ssim(params.clone()).score(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_window_has_eleven_taps_and_unit_sum() {
        let p = SsimParams { data_range: 1.0, window: default_window(), k1: 0.01, k2: 0.03 };
        let taps = p.taps();
        assert_eq!(taps.len(), 11);
        assert!((taps.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
