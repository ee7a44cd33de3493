//! Map post-processing steps, applied in the order the config lists them. Methods return raw
//! maps; everything here is explicit and named in the CSV (`postprocess` column).

use crate::map::Map;
use crate::metric::Status;
use sanity_data::resize_bilinear;
use serde::{Deserialize, Serialize};

/// How channels are combined into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduce {
    /// Σ_c m_c.
    Sum,
    /// Mean over channels.
    Mean,
    /// The value with the largest magnitude over channels (sign kept).
    MaxAbs,
}

impl Reduce {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Mean => "mean",
            Reduce::MaxAbs => "max_abs",
        }
    }
}

/// How a map is rescaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// m / max|m|, into [−1, 1] (sign kept).
    MaxAbs,
    /// (m − min) / (max − min), into [0, 1].
    MinMax,
    /// m / sqrt(mean(m²)).
    Rms,
}

impl Normalization {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Normalization::MaxAbs => "max_abs",
            Normalization::MinMax => "min_max",
            Normalization::Rms => "rms",
        }
    }
}

/// One post-processing step (`step = "abs"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum PostStep {
    /// |m|, element-wise.
    Abs {},
    /// Combine the channels into one, `[c, h, w] -> [1, h, w]`.
    ChannelReduce {
        /// The reduction.
        reduce: Reduce,
    },
    /// Rescale the whole map.
    Normalize {
        /// The rescaling.
        mode: Normalization,
    },
    /// Cap magnitudes at the `p`-th percentile of |m| (numpy's linear interpolation), sign kept.
    ClipPercentile {
        /// The percentile, in (0, 100].
        p: f64,
    },
    /// Adebayo et al.'s grayscale maps (PAIR `saliency.VisualizeImageGrayscale`, used by the
    /// paper's code): `x = Σ_c |m|`, then `clip((x − min x) / (q − min x), 0, 1)` with `q` the
    /// `percentile`-th percentile of `x`; `[c, h, w] -> [1, h, w]`.
    AdebayoAbs {
        /// Default 99.
        #[serde(default = "default_percentile")]
        percentile: f64,
    },
    /// Adebayo et al.'s diverging maps (`VisualizeImageDiverging`): `x = Σ_c m`,
    /// `s = |q|` with `q` the `percentile`-th percentile of `x`, then
    /// `clip((x + s) / 2s, −1, 1)`; `[c, h, w] -> [1, h, w]`.
    AdebayoDiverging {
        /// Default 99.
        #[serde(default = "default_percentile")]
        percentile: f64,
    },
    /// Bilinear resize of each channel to `h x w`, pixel centres aligned (`align_corners=False`).
    Resize {
        /// Output height.
        h: usize,
        /// Output width.
        w: usize,
    },
}

/// The largest side a `resize` step accepts, in pixels (a map of 4096² floats is 64 MiB).
pub const MAX_RESIZE: usize = 4096;

/// 99, the percentile of Adebayo et al.'s code.
pub fn default_percentile() -> f64 {
    99.0
}

/// `numpy.percentile(values, p)` with the default linear interpolation, in f64.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = position.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = position - lo as f64;
    // numpy's _lerp: a + (b − a)·t, computed from the upper end when t >= 0.5.
    let (a, b) = (sorted[lo], sorted[hi]);
    if t >= 0.5 { b - (b - a) * (1.0 - t) } else { a + (b - a) * t }
}

/// `Σ_c f(m_c)` per pixel, f64.
fn channel_sum(map: &Map, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let [c, h, w] = map.shape;
    (0..h * w).map(|i| (0..c).map(|k| f(f64::from(map.data[k * h * w + i]))).sum()).collect()
}

impl PostStep {
    /// The step's name in the CSV (`abs`, `channel_reduce_sum`, `normalize_min_max`).
    pub fn label(&self) -> String {
        match self {
            PostStep::Abs {} => "abs".into(),
            PostStep::ChannelReduce { reduce } => format!("channel_reduce_{}", reduce.name()),
            PostStep::Normalize { mode } => format!("normalize_{}", mode.name()),
            PostStep::ClipPercentile { p } => format!("clip_percentile_{p}"),
            PostStep::AdebayoAbs { percentile } => format!("adebayo_abs_{percentile}"),
            PostStep::AdebayoDiverging { percentile } => format!("adebayo_diverging_{percentile}"),
            PostStep::Resize { h, w } => format!("resize_{h}x{w}"),
        }
    }

    /// Applies the step. A normalisation that would divide by zero (a constant or all-zero map)
    /// is a [`Status::ConstantMap`], not NaN.
    // Long: one arm per step, each a few lines, as README.md's config reference defines them.
    pub fn apply(&self, mut map: Map) -> Result<Map, Status> {
        if map.data.iter().any(|v| !v.is_finite()) {
            return Err(Status::NonFinite);
        }
        if map.data.is_empty() {
            return Err(Status::TooSmall);
        }
        self.validate().map_err(|_| Status::TooSmall)?;
        match self {
            PostStep::Abs {} => {
                map.data.iter_mut().for_each(|v| *v = v.abs());
                Ok(map)
            }
            PostStep::ChannelReduce { reduce } => {
                let [_, h, w] = map.shape;
                Ok(Map::new(reduce_channels(&map, *reduce), [1, h, w]))
            }
            PostStep::Normalize { mode } => {
                let (min, max) =
                    map.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                match mode {
                    Normalization::MaxAbs => {
                        let scale = min.abs().max(max.abs());
                        if scale == 0.0 {
                            return Err(Status::ConstantMap);
                        }
                        map.data.iter_mut().for_each(|v| *v /= scale);
                    }
                    Normalization::MinMax => {
                        if max == min {
                            return Err(Status::ConstantMap);
                        }
                        let span = f64::from(max) - f64::from(min);
                        map.data.iter_mut().for_each(|v| *v = ((f64::from(*v) - f64::from(min)) / span) as f32);
                    }
                    Normalization::Rms => {
                        let ms =
                            map.data.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / map.data.len() as f64;
                        if ms == 0.0 {
                            return Err(Status::ConstantMap);
                        }
                        let rms = ms.sqrt();
                        map.data.iter_mut().for_each(|v| *v = (f64::from(*v) / rms) as f32);
                    }
                }
                Ok(map)
            }
            PostStep::ClipPercentile { p } => {
                let magnitudes: Vec<f64> = map.data.iter().map(|&v| f64::from(v).abs()).collect();
                let cap = percentile(&magnitudes, *p) as f32;
                map.data.iter_mut().for_each(|v| *v = v.clamp(-cap, cap));
                Ok(map)
            }
            PostStep::AdebayoAbs { percentile: p } => {
                let [_, h, w] = map.shape;
                let x = channel_sum(&map, f64::abs);
                let (min, q) = (x.iter().copied().fold(f64::INFINITY, f64::min), percentile(&x, *p));
                if q <= min {
                    return Err(Status::ConstantMap);
                }
                Ok(Map::new(x.iter().map(|v| ((v - min) / (q - min)).clamp(0.0, 1.0) as f32).collect(), [1, h, w]))
            }
            PostStep::AdebayoDiverging { percentile: p } => {
                let [_, h, w] = map.shape;
                let x = channel_sum(&map, |v| v);
                let span = percentile(&x, *p).abs();
                if span == 0.0 {
                    return Err(Status::ConstantMap);
                }
                Ok(Map::new(x.iter().map(|v| ((v + span) / (2.0 * span)).clamp(-1.0, 1.0) as f32).collect(), [1, h, w]))
            }
            PostStep::Resize { h: oh, w: ow } => {
                let [c, h, w] = map.shape;
                if *oh == 0 || *ow == 0 || h == 0 || w == 0 {
                    return Err(Status::TooSmall);
                }
                let data =
                    map.data.chunks_exact(h * w).flat_map(|plane| resize_bilinear(plane, h, w, *oh, *ow)).collect();
                Ok(Map::new(data, [c, *oh, *ow]))
            }
        }
    }

    /// The shape of the map this step makes of a map of `shape` (`[c, h, w]`).
    pub fn output_shape(&self, shape: [usize; 3]) -> [usize; 3] {
        let [c, h, w] = shape;
        match self {
            PostStep::ChannelReduce { .. } | PostStep::AdebayoAbs { .. } | PostStep::AdebayoDiverging { .. } => {
                [1, h, w]
            }
            PostStep::Resize { h, w } => [c, *h, *w],
            _ => shape,
        }
    }

    /// Checks the parameters; the message says what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            PostStep::ClipPercentile { p }
            | PostStep::AdebayoAbs { percentile: p }
            | PostStep::AdebayoDiverging { percentile: p }
                if !(*p > 0.0 && *p <= 100.0) =>
            {
                Err(format!("percentile {p}; accepted: 0 < p <= 100"))
            }
            PostStep::Resize { h, w } if !(1..=MAX_RESIZE).contains(h) || !(1..=MAX_RESIZE).contains(w) => {
                Err(format!("resize to {h}x{w}; accepted: h and w from 1 to {MAX_RESIZE}"))
            }
            _ => Ok(()),
        }
    }
}

/// The `[h, w]` plane of `map`'s channels reduced pixel by pixel (the `channel_reduce` step).
pub fn reduce_channels(map: &Map, reduce: Reduce) -> Vec<f32> {
    let [c, h, w] = map.shape;
    let hw = h * w;
    (0..hw)
        .map(|i| {
            let values = (0..c).map(|k| map.data[k * hw + i]);
            match reduce {
                Reduce::Sum => values.sum(),
                Reduce::Mean => values.sum::<f32>() / c.max(1) as f32,
                Reduce::MaxAbs => values.fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m }),
            }
        })
        .collect()
}

/// Applies `steps` in order.
pub fn apply_all(steps: &[PostStep], map: Map) -> Result<Map, Status> {
    steps.iter().try_fold(map, |m, step| step.apply(m))
}

/// The CSV label of a pipeline: step labels joined by `+`, `raw` for none.
pub fn pipeline_label(steps: &[PostStep]) -> String {
    if steps.is_empty() { "raw".into() } else { steps.iter().map(PostStep::label).collect::<Vec<_>>().join("+") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(values: &[f32], shape: [usize; 3]) -> Map {
        Map::new(values.to_vec(), shape)
    }

    #[test]
    fn steps_compute_what_their_names_say() {
        let m = map(&[-2.0, 1.0, 0.5, -0.5, 3.0, -1.0], [2, 1, 3]);
        let abs = PostStep::Abs {}.apply(m.clone()).expect("abs");
        assert_eq!(abs.data, [2.0, 1.0, 0.5, 0.5, 3.0, 1.0]);
        let reduce = |r| PostStep::ChannelReduce { reduce: r }.apply(m.clone()).expect("reduce");
        assert_eq!(reduce(Reduce::Sum).data, [-2.5, 4.0, -0.5]);
        assert_eq!(reduce(Reduce::Mean).data, [-1.25, 2.0, -0.25]);
        assert_eq!(reduce(Reduce::MaxAbs).data, [-2.0, 3.0, -1.0]);
        assert_eq!(reduce(Reduce::Sum).shape, [1, 1, 3]);
        let norm = |n| PostStep::Normalize { mode: n }.apply(m.clone()).expect("normalize").data;
        assert_eq!(norm(Normalization::MaxAbs), [-2.0 / 3.0, 1.0 / 3.0, 0.5 / 3.0, -0.5 / 3.0, 1.0, -1.0 / 3.0]);
        assert_eq!(norm(Normalization::MinMax), [0.0, 0.6, 0.5, 0.3, 1.0, 0.2]);
        // mean of squares = (4 + 1 + .25 + .25 + 9 + 1) / 6 = 2.5833..
        let rms = (15.5f64 / 6.0).sqrt();
        for (got, v) in norm(Normalization::Rms).iter().zip(&m.data) {
            assert!((f64::from(*got) - f64::from(*v) / rms).abs() < 1e-6);
        }
    }

    #[test]
    fn undefined_normalisations_are_statuses_and_labels_are_stable() {
        let zero = map(&[0.0; 4], [1, 2, 2]);
        for mode in [Normalization::MaxAbs, Normalization::MinMax, Normalization::Rms] {
            assert_eq!(PostStep::Normalize { mode }.apply(zero.clone()), Err(Status::ConstantMap));
        }
        assert_eq!(PostStep::Abs {}.apply(map(&[f32::NAN, 1.0], [1, 1, 2])), Err(Status::NonFinite));
        let steps = [PostStep::Abs {}, PostStep::Normalize { mode: Normalization::MinMax }];
        assert_eq!(pipeline_label(&steps), "abs+normalize_min_max");
        assert_eq!(pipeline_label(&[]), "raw");
    }

    #[test]
    fn resize_works_per_channel_and_percentile_steps_refuse_bad_values() {
        let map = Map::new([vec![1.0f32; 12], (0..12).map(|v| v as f32).collect()].concat(), [2, 3, 4]);
        let out = PostStep::Resize { h: 6, w: 8 }.apply(map).expect("resize");
        assert_eq!(out.shape, [2, 6, 8]);
        assert!(out.data[..48].iter().all(|&v| v == 1.0), "a constant channel stays constant");
        assert_eq!(out.data[48], 0.0);
        assert!(PostStep::ClipPercentile { p: 0.0 }.validate().is_err());
        assert!(PostStep::AdebayoAbs { percentile: 101.0 }.validate().is_err());
        assert!(PostStep::Resize { h: 0, w: 3 }.validate().is_err());
        // numpy.percentile([1, 2, 3, 4], 50) = 2.5, and [..., 90] = 3.7.
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 90.0) - 3.7).abs() < 1e-12);
        let empty = Map::new(Vec::new(), [1, 0, 4]);
        assert_eq!(PostStep::ClipPercentile { p: 99.0 }.apply(empty).err(), Some(Status::TooSmall));
        let map = Map::new(vec![1.0, 2.0], [1, 1, 2]);
        assert_eq!(PostStep::AdebayoAbs { percentile: 120.0 }.apply(map).err(), Some(Status::TooSmall));
    }
}
