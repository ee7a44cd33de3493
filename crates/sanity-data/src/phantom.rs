//! Synthetic chest-radiograph phantoms with pleural effusion and ground-truth masks.
//!
//! The seed lesson explains a chest X-ray classifier for pleural effusion; this generator gives
//! the same task without patient data. Each image is a frontal radiograph cartoon in canonical
//! coordinates (x right, y down, both in [-1, 1]): a soft-tissue body ellipse, two dark lung
//! fields, mediastinum and heart, a spine with vertebral bands, and posterior rib arcs. Class 1
//! ("effusion") fills the lowest part of one or both lung fields with bright fluid whose upper
//! edge is a meniscus, rising towards the lateral chest wall; the pixels of that fluid are the
//! ground-truth mask. Each image gets its own shift, scale and rotation, and Gaussian noise.
//!
//! Image `i` draws only from `stream_rng(seed, purpose, i)`, so a data set is identical for a
//! given seed whatever the thread count.

use crate::{DataError, Dataset, stream_rng};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// Parameters of a phantom data set.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomSpec {
    /// Number of images.
    pub n: usize,
    /// Side of the square image in pixels, 16..=256.
    pub size: usize,
    /// Standard deviation of the additive Gaussian pixel noise (intensities are in [0, 1]).
    pub noise_std: f64,
    /// Fraction of images with effusion (class 1), in [0, 1].
    pub effusion_fraction: f64,
    /// Shortcut marker: with `Some(r)`, a bright square in the top-left corner is present with
    /// probability `r` in class-1 images and `1 - r` in class-0 images (0.5 = uncorrelated).
    pub shortcut_rate: Option<f64>,
}

impl PhantomSpec {
    /// Checks every field; the error names the field and what is accepted.
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |key, value: String, accepted| Err(DataError::InvalidParameter { key, value, accepted });
        if !(16..=256).contains(&self.size) {
            return invalid("size", self.size.to_string(), "an image side from 16 to 256 pixels");
        }
        if self.n == 0 {
            return invalid("n", "0".into(), "at least one image");
        }
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
            return invalid("noise_std", self.noise_std.to_string(), "a finite value >= 0");
        }
        if !(0.0..=1.0).contains(&self.effusion_fraction) {
            return invalid("effusion_fraction", self.effusion_fraction.to_string(), "a fraction in [0, 1]");
        }
        if let Some(r) = self.shortcut_rate
            && !(0.0..=1.0).contains(&r)
        {
            return invalid("shortcut_rate", r.to_string(), "a probability in [0, 1]");
        }
        Ok(())
    }
}

/// The phantom's classes in label order.
pub const CLASS_NAMES: [&str; 2] = ["normal", "effusion"];

/// Generates `spec.n` phantoms, each from its own stream `stream_rng(seed, purpose, i)`.
///
/// Returns a 2-class [`Dataset`] of `[1, size, size]` images in [0, 1] with effusion masks.
pub fn generate_phantoms(spec: &PhantomSpec, seed: u64, purpose: &str) -> Result<Dataset, DataError> {
    spec.validate()?;
    let side = spec.size;
    let drawn: Vec<(Vec<f32>, Vec<u8>, usize)> = (0..spec.n)
        .into_par_iter()
        .map(|i| {
            let mut rng = stream_rng(seed, purpose, i as u64);
            draw_phantom(spec, &mut rng)
        })
        .collect();
    let mut images = Vec::with_capacity(spec.n * side * side);
    let mut masks = Vec::with_capacity(spec.n * side * side);
    let mut labels = Vec::with_capacity(spec.n);
    for (img, mask, label) in drawn {
        images.extend_from_slice(&img);
        masks.extend_from_slice(&mask);
        labels.push(label);
    }
    let class_names = CLASS_NAMES.map(String::from).to_vec();
    Ok(Dataset { images, image_shape: [1, side, side], labels, masks: Some(masks), num_classes: 2, class_names })
}

/// Intensities of the tissues (0 = air, 1 = dense bone or fluid).
mod tissue {
    pub const BODY: f32 = 0.45;
    pub const LUNG: f32 = 0.12;
    pub const MEDIASTINUM: f32 = 0.62;
    pub const HEART: f32 = 0.6;
    pub const SPINE: f32 = 0.82;
    pub const DISC: f32 = 0.7;
    pub const RIB_ADD: f32 = 0.16;
    pub const FLUID: f32 = 0.72;
    pub const MARKER: f32 = 1.0;
}

/// An axis-aligned ellipse in canonical coordinates.
#[derive(Clone, Copy)]
struct Ellipse {
    cx: f64,
    cy: f64,
    rx: f64,
    ry: f64,
}

impl Ellipse {
    fn contains(&self, x: f64, y: f64) -> bool {
        let (dx, dy) = ((x - self.cx) / self.rx, (y - self.cy) / self.ry);
        dx * dx + dy * dy <= 1.0
    }
}

/// The fluid of one lung: below the meniscus `y_s(x) = level − rise·((t + 1)/2)²`, where
/// `t ∈ [−1, 1]` runs from the medial to the lateral edge of the lung, inside the lung field.
struct Effusion {
    lung: Ellipse,
    /// +1 for the lung on the image's right, −1 for the left: the lateral direction.
    side: f64,
    level: f64,
    rise: f64,
}

impl Effusion {
    fn contains(&self, x: f64, y: f64) -> bool {
        let t = ((x - self.lung.cx) * self.side / self.lung.rx).clamp(-1.0, 1.0);
        let surface = self.level - self.rise * ((t + 1.0) / 2.0).powi(2);
        y >= surface && self.lung.contains(x, y)
    }
}

// Long: one image's random draws in their fixed order, then its pixels; the order is the data set.
fn draw_phantom(spec: &PhantomSpec, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<u8>, usize) {
    let side = spec.size;
    let label = usize::from(rng.random::<f64>() < spec.effusion_fraction);
    // Per-image pose: shift, isotropic scale, rotation (applied as the inverse map per pixel).
    let (shift_x, shift_y) = (rng.random_range(-0.08..0.08), rng.random_range(-0.08..0.08));
    let scale = rng.random_range(0.9..1.1);
    let angle: f64 = rng.random_range(-8.0f64..8.0).to_radians();
    // Anatomy with small per-patient variation.
    let body = Ellipse { cx: 0.0, cy: 0.05, rx: rng.random_range(0.82..0.92), ry: 0.95 };
    let lung_rx = rng.random_range(0.24..0.3);
    let lung_ry = rng.random_range(0.55..0.65);
    let lungs = [-1.0, 1.0].map(|s| Ellipse { cx: s * 0.38, cy: -0.02, rx: lung_rx, ry: lung_ry });
    let heart = Ellipse { cx: 0.08, cy: 0.3, rx: rng.random_range(0.22..0.3), ry: 0.22 };
    let rib_phase = rng.random_range(0.0..0.06);
    let effusions: Vec<Effusion> = if label == 1 {
        let sides: &[usize] = match rng.random_range(0..10) {
            0..=2 => &[0, 1],
            3..=6 => &[0],
            _ => &[1],
        };
        sides
            .iter()
            .map(|&k| {
                let lung = lungs[k];
                let depth = rng.random_range(0.25..0.5) * 2.0 * lung.ry;
                Effusion {
                    lung,
                    side: if k == 0 { -1.0 } else { 1.0 },
                    level: lung.cy + lung.ry - depth,
                    rise: rng.random_range(0.08..0.2),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let marker = spec.shortcut_rate.is_some_and(|r| {
        let p = if label == 1 { r } else { 1.0 - r };
        rng.random::<f64>() < p
    });
    let noise = Normal::new(0.0, spec.noise_std).expect("noise_std validated finite and >= 0");

    let (cos, sin) = (angle.cos(), angle.sin());
    let mut image = vec![0.0f32; side * side];
    let mut mask = vec![0u8; side * side];
    for py in 0..side {
        for px in 0..side {
            let u = 2.0 * (px as f64 + 0.5) / side as f64 - 1.0 - shift_x;
            let v = 2.0 * (py as f64 + 0.5) / side as f64 - 1.0 - shift_y;
            let x = (cos * u + sin * v) / scale;
            let y = (-sin * u + cos * v) / scale;
            let mut value = 0.0f32;
            if body.contains(x, y) {
                value = tissue::BODY;
                if lungs.iter().any(|l| l.contains(x, y)) {
                    value = tissue::LUNG;
                }
                if x.abs() < 0.13 && (-0.9..0.55).contains(&y) {
                    value = tissue::MEDIASTINUM;
                }
                if heart.contains(x, y) {
                    value = tissue::HEART;
                }
                let rib_zone = (0.07..0.78).contains(&x.abs());
                for k in 0..7 {
                    let arc = -0.62 + rib_phase + 0.17 * k as f64 + 0.45 * (x.abs() - 0.1).powi(2);
                    if rib_zone && (y - arc).abs() < 0.028 {
                        value += tissue::RIB_ADD;
                    }
                }
                if x.abs() < 0.055 && (-0.95..0.95).contains(&y) {
                    let band = ((y + 1.0) / 0.12).fract();
                    value = if band < 0.18 { tissue::DISC } else { tissue::SPINE };
                }
                if effusions.iter().any(|e| e.contains(x, y)) {
                    value = tissue::FLUID;
                    mask[py * side + px] = 1;
                }
            }
            image[py * side + px] = value;
        }
    }
    if marker {
        let m = (side / 16).max(2);
        for py in 1..1 + m {
            for px in 1..1 + m {
                image[py * side + px] = tissue::MARKER;
            }
        }
    }
    for p in image.iter_mut() {
        *p = (*p + noise.sample(rng) as f32).clamp(0.0, 1.0);
    }
    (image, mask, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n: usize) -> PhantomSpec {
        PhantomSpec { n, size: 48, noise_std: 0.03, effusion_fraction: 0.5, shortcut_rate: None }
    }

    #[test]
    fn same_seed_same_images_other_seed_other_images() {
        let a = generate_phantoms(&spec(6), 1, "t").expect("valid spec");
        let b = generate_phantoms(&spec(6), 1, "t").expect("valid spec");
        let c = generate_phantoms(&spec(6), 2, "t").expect("valid spec");
        assert_eq!(a, b);
        assert_ne!(a.images, c.images);
    }

    #[test]
    fn thread_count_does_not_change_the_images() {
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let a = one.install(|| generate_phantoms(&spec(8), 3, "t")).expect("valid spec");
        let b = generate_phantoms(&spec(8), 3, "t").expect("valid spec");
        assert_eq!(a, b);
    }

    #[test]
    fn masks_mark_bright_fluid_only_in_effusion_images() {
        let d = generate_phantoms(&spec(40), 5, "t").expect("valid spec");
        let masks = d.masks.as_ref().expect("phantoms have masks");
        let hw = 48 * 48;
        let (mut fluid_sum, mut fluid_n, mut lung_like) = (0.0, 0, 0);
        for i in 0..d.len() {
            let m = &masks[i * hw..(i + 1) * hw];
            let area = m.iter().filter(|&&v| v == 1).count();
            if d.labels[i] == 0 {
                assert_eq!(area, 0, "a class-0 image has an effusion mask");
            } else {
                assert!(area > 10, "effusion of image {i} covers only {area} pixels");
            }
            for (p, &v) in d.image(i).iter().zip(m) {
                if v == 1 {
                    fluid_sum += f64::from(*p);
                    fluid_n += 1;
                    lung_like += usize::from(*p < 0.3);
                }
            }
        }
        let fluid_mean = fluid_sum / fluid_n as f64;
        assert!((fluid_mean - f64::from(tissue::FLUID)).abs() < 0.05, "fluid mean {fluid_mean}");
        assert!(lung_like * 100 < fluid_n, "fluid pixels look like lung: {lung_like}/{fluid_n}");
        assert!(d.labels.contains(&0) && d.labels.contains(&1));
    }

    #[test]
    fn shortcut_marker_follows_the_rate() {
        let mut s = spec(200);
        s.shortcut_rate = Some(1.0);
        s.noise_std = 0.0;
        let d = generate_phantoms(&s, 9, "t").expect("valid spec");
        for i in 0..d.len() {
            let has_marker = d.image(i)[48 + 1] == 1.0;
            assert_eq!(has_marker, d.labels[i] == 1, "image {i}");
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused_by_name() {
        let mut s = spec(4);
        s.size = 1000;
        let err = generate_phantoms(&s, 1, "t").expect_err("size 1000 is refused").to_string();
        assert!(err.contains("`size`") && err.contains("16 to 256"), "{err}");
    }
}
