//! Model-independent controls: maps that cannot change when the model is randomised, so they
//! mark the top of a similarity scale (Adebayo et al. 2018, section 3: "an edge detector ...
//! produces maps that resemble the input").
//!
//! - `random_map`: uniform [0, 1) values of the input's shape, drawn for the image with id `d`
//!   from `stream_rng(seed, "random_map", d)`: the same map for an image at every stage.
//! - `sobel`: the Sobel edge magnitude of each input channel, as scikit-image's
//!   `filters.sobel` (v0.26): `sqrt((G_y² + G_x²) / 2)`, where `G_y` convolves with
//!   `[1, 0, −1]` down the rows and `[1, 2, 1]/4` along them (and `G_x` the transpose), with
//!   scipy.ndimage's `reflect` border (`d c b a | a b c d | d c b a`).

use crate::error::{AttributionError, Result};
use crate::method::Attribution;
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use sanity_data::{correlate_separable, stream_rng};
use sanity_model::Model;

/// Seeded uniform noise.
#[derive(Debug, Clone, Copy)]
pub struct RandomMap {
    /// Run seed.
    pub seed: u64,
}

impl Attribution for RandomMap {
    fn id(&self) -> &'static str {
        "random_map"
    }

    fn attribute(&self, _model: &Model, x: &Tensor, _targets: &[usize], ids: &[u64]) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if ids.len() != n {
            return Err(AttributionError::Invalid {
                method: "random_map",
                reason: format!("{} ids for {n} inputs; give one id per input", ids.len()),
            });
        }
        Ok(Tensor::from_vec(self.maps(ids, c * h * w), (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}

impl RandomMap {
    /// The maps of the images with `ids`, `per` values each: any model's, a graph's too.
    pub fn maps(&self, ids: &[u64], per: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * per);
        for &id in ids {
            let mut rng = stream_rng(self.seed, "random_map", id);
            out.extend((0..per).map(|_| rng.random::<f32>()));
        }
        out
    }
}

/// Sobel edge magnitude of the input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sobel;

/// The Sobel magnitude of one `[h, w]` plane (f64 arithmetic, as scikit-image on float64).
/// scikit-image convolves (the derivative kernel reversed); the sign vanishes in the square.
pub(crate) fn sobel_plane(plane: &[f64], h: usize, w: usize) -> Vec<f64> {
    let (edge, smooth) = ([1.0, 0.0, -1.0], [0.25, 0.5, 0.25]);
    let gy = correlate_separable(plane, h, w, &edge, &smooth);
    let gx = correlate_separable(plane, h, w, &smooth, &edge);
    gy.iter().zip(&gx).map(|(y, x)| ((y * y + x * x) / 2.0).sqrt()).collect()
}

impl Attribution for Sobel {
    fn id(&self) -> &'static str {
        "sobel"
    }

    fn attribute(&self, _model: &Model, x: &Tensor, _targets: &[usize], _ids: &[u64]) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let values = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let out: Vec<f64> = values.chunks_exact(h * w).flat_map(|plane| sobel_plane(plane, h, w)).collect();
        Ok(Tensor::from_vec(out, (n, c, h, w), &Device::Cpu)?.to_dtype(x.dtype())?)
    }
}
