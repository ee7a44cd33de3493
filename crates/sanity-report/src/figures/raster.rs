//! Maps as pixels: the colour scale a map is drawn with, resampling to a panel's size, and
//! blending an overlay over its image.

use super::colormap::{ColorMap, Rgb};
use sanity_metrics::{Map, Normalization, PostStep, Reduce, reduce_channels};

/// How a map's values become colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// `lo` is the first colour of the map, `hi` the last.
    Sequential {
        /// Value drawn with the first colour.
        lo: f64,
        /// Value drawn with the last colour.
        hi: f64,
    },
    /// `center` is the middle colour, `center ± half` the ends.
    Diverging {
        /// Value drawn with the middle colour.
        center: f64,
        /// Distance from the centre to either end.
        half: f64,
    },
}

impl Scale {
    /// The scale of a map that went through `steps`: a fixed range when the last step fixes
    /// one ([`Scale::fixed`]); otherwise the map's own range, centred on zero when it has
    /// negative values (Adebayo et al. 2018, Figure 2: gray for absolute maps, a diverging map
    /// for signed ones).
    pub fn for_map(values: &[f32], steps: &[PostStep]) -> Scale {
        let signed = values.iter().any(|&v| v < 0.0);
        if let Some(scale) = Scale::fixed(steps, signed) {
            return scale;
        }
        let max_abs = values.iter().fold(0.0f64, |a, &v| a.max(f64::from(v).abs()));
        match signed {
            true => Scale::Diverging { center: 0.0, half: positive_or_one(max_abs) },
            false => Scale::Sequential { lo: 0.0, hi: positive_or_one(max_abs) },
        }
    }

    /// The range the last of `steps` puts every map in, if it fixes one: `adebayo_abs` and
    /// `normalize{min_max}` [0, 1]; `adebayo_diverging` centred on 0.5; `normalize{max_abs}`
    /// [-1, 1] for a `signed` map, else [0, 1].
    pub fn fixed(steps: &[PostStep], signed: bool) -> Option<Scale> {
        match steps.last()? {
            PostStep::AdebayoAbs { .. } | PostStep::Normalize { mode: Normalization::MinMax } => {
                Some(Scale::Sequential { lo: 0.0, hi: 1.0 })
            }
            PostStep::AdebayoDiverging { .. } => Some(Scale::Diverging { center: 0.5, half: 0.5 }),
            PostStep::Normalize { mode: Normalization::MaxAbs } if signed => {
                Some(Scale::Diverging { center: 0.0, half: 1.0 })
            }
            PostStep::Normalize { mode: Normalization::MaxAbs } => Some(Scale::Sequential { lo: 0.0, hi: 1.0 }),
            _ => None,
        }
    }

    /// The map's own range, `[min, max]` (matplotlib's `imshow` default).
    pub fn min_max(values: &[f32]) -> Scale {
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(f64::from(v)), hi.max(f64::from(v))));
        if lo.is_finite() && hi > lo { Scale::Sequential { lo, hi } } else { Scale::Sequential { lo, hi: lo + 1.0 } }
    }

    /// The colour map that goes with the scale: gray for sequential, `bwr` for diverging.
    pub fn paper_colormap(self) -> ColorMap {
        match self {
            Scale::Sequential { .. } => ColorMap::Gray,
            Scale::Diverging { .. } => ColorMap::Bwr,
        }
    }

    /// `v` as a fraction of the range (not clamped).
    pub fn unit(self, v: f64) -> f64 {
        match self {
            Scale::Sequential { lo, hi } => (v - lo) / (hi - lo),
            Scale::Diverging { center, half } => 0.5 + (v - center) / (2.0 * half),
        }
    }

    /// The values at the two ends.
    pub fn ends(self) -> (f64, f64) {
        match self {
            Scale::Sequential { lo, hi } => (lo, hi),
            Scale::Diverging { center, half } => (center - half, center + half),
        }
    }
}

fn positive_or_one(v: f64) -> f64 {
    if v > 0.0 && v.is_finite() { v } else { 1.0 }
}

/// The map's channels summed into one `[h, w]` plane (a display choice for multi-channel maps;
/// a one-channel map is returned as it is).
pub fn display_plane(map: &Map) -> Vec<f32> {
    reduce_channels(map, Reduce::Sum)
}

/// An image as one gray plane: the mean of its channels.
pub fn gray_plane(image: &Map) -> Vec<f32> {
    reduce_channels(image, Reduce::Mean)
}

/// Resamples an `[h, w]` plane to `[out_h, out_w]`: each output pixel is the mean of the
/// input pixels whose centres fall in it, or the nearest input pixel when none does
/// (enlarging). Pixel `(r, c)` of the input covers output rows `r·out_h/h ..` exactly when
/// the factor is an integer.
pub fn resample(plane: &[f32], [h, w]: [usize; 2], [out_h, out_w]: [usize; 2]) -> Vec<f32> {
    let span = |i: usize, n: usize, out: usize| -> (usize, usize) {
        // Input indices whose centres (k + 0.5)·out/n lie in [i, i + 1).
        let lo = ((i * n) as f64 / out as f64 - 0.5).ceil().max(0.0) as usize;
        let hi = ((((i + 1) * n) as f64 / out as f64 - 0.5).ceil().max(0.0) as usize).min(n);
        if hi > lo {
            (lo, hi)
        } else {
            let k = ((i as f64 + 0.5) * n as f64 / out as f64) as usize;
            (k.min(n - 1), k.min(n - 1) + 1)
        }
    };
    if h == 0 || w == 0 || plane.len() < h * w {
        return vec![0.0; out_h * out_w]; // nothing to draw
    }
    let mut out = Vec::with_capacity(out_h * out_w);
    for i in 0..out_h {
        let (r0, r1) = span(i, h, out_h);
        for j in 0..out_w {
            let (c0, c1) = span(j, w, out_w);
            let mut sum = 0.0f64;
            for r in r0..r1 {
                sum += plane[r * w + c0..r * w + c1].iter().map(|&v| f64::from(v)).sum::<f64>();
            }
            out.push((sum / ((r1 - r0) * (c1 - c0)) as f64) as f32);
        }
    }
    out
}

/// The RGB bytes of `plane` drawn with `scale` and `colormap`.
pub fn colorize(plane: &[f32], scale: Scale, colormap: ColorMap) -> Vec<u8> {
    plane.iter().flat_map(|&v| colormap.color(scale.unit(f64::from(v)))).collect()
}

/// `alpha · over + (1 − alpha) · under`, per byte (matplotlib's alpha compositing).
pub fn blend(under: &[u8], over: &[u8], alpha: f64) -> Vec<u8> {
    under.iter().zip(over).map(|(&u, &o)| (alpha * f64::from(o) + (1.0 - alpha) * f64::from(u)).round() as u8).collect()
}

/// The outline of a mask (`plane` `[h, w]`, inside above 0.5) drawn at `[side, side]`: the
/// inside pixels with a 4-neighbour outside or on the border, resampled by nearest neighbour.
pub fn outline(plane: &[f32], [h, w]: [usize; 2], side: usize) -> Vec<bool> {
    let inside = |y: usize, x: usize| plane[(y * h / side) * w + x * w / side] > 0.5;
    let mut edge = vec![false; side * side];
    for y in 0..side {
        for x in 0..side {
            let out = |dy: isize, dx: isize| {
                let (yy, xx) = (y as isize + dy, x as isize + dx);
                yy < 0 || xx < 0 || yy >= side as isize || xx >= side as isize || !inside(yy as usize, xx as usize)
            };
            edge[y * side + x] = inside(y, x) && (out(-1, 0) || out(1, 0) || out(0, -1) || out(0, 1));
        }
    }
    edge
}

/// `rgb` with the pixels of `edge` set to `color`.
pub fn with_outline(mut rgb: Vec<u8>, edge: &[bool], color: Rgb) -> Vec<u8> {
    for (pixel, &on) in rgb.chunks_exact_mut(3).zip(edge) {
        if on {
            pixel.copy_from_slice(&color);
        }
    }
    rgb
}

/// The colour of a ground-truth mask's outline: green, apart from the maps' colour maps.
pub const OUTLINE: Rgb = [0, 200, 60];

/// One colour repeated over `pixels` pixels.
pub fn solid(color: Rgb, pixels: usize) -> Vec<u8> {
    color.iter().copied().cycle().take(3 * pixels).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_enlargement_repeats_each_pixel() {
        let out = resample(&[1.0, 2.0, 3.0, 4.0], [2, 2], [4, 4]);
        assert_eq!(out, vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
    }

    #[test]
    fn shrinking_averages_blocks() {
        let plane: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(resample(&plane, [4, 4], [2, 2]), vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn scales_follow_the_pipeline() {
        assert_eq!(Scale::for_map(&[-2.0, 1.0], &[]), Scale::Diverging { center: 0.0, half: 2.0 });
        assert_eq!(Scale::for_map(&[0.0, 3.0], &[]), Scale::Sequential { lo: 0.0, hi: 3.0 });
        let abs = [PostStep::AdebayoAbs { percentile: 99.0 }];
        assert_eq!(Scale::for_map(&[0.0, 0.2], &abs), Scale::Sequential { lo: 0.0, hi: 1.0 });
        assert!(Scale::fixed(&abs, false).is_some() && Scale::fixed(&[], true).is_none());
        assert_eq!(Scale::min_max(&[2.0, 2.0]), Scale::Sequential { lo: 2.0, hi: 3.0 });
    }

    #[test]
    fn a_mask_s_outline_is_its_inside_pixels_next_to_the_outside() {
        // A 3x3 block inside a 5x5 mask, drawn at 10x10 (the block is pixels 2..8): its
        // outline is the block's border, one pixel wide, the inside left open.
        let mut plane = vec![0.0f32; 25];
        for y in 1..4 {
            for x in 1..4 {
                plane[y * 5 + x] = 1.0;
            }
        }
        let edge = outline(&plane, [5, 5], 10);
        let on: Vec<(usize, usize)> = (0..100).filter(|&i| edge[i]).map(|i| (i / 10, i % 10)).collect();
        assert!(on.iter().all(|&(y, x)| (2..8).contains(&y) && (2..8).contains(&x)), "inside the block: {on:?}");
        assert!(on.iter().all(|&(y, x)| y == 2 || y == 7 || x == 2 || x == 7), "on its edge: {on:?}");
        assert_eq!(on.len(), 20);
        let green = with_outline(vec![0; 300], &edge, OUTLINE);
        assert_eq!(&green[3 * 22..3 * 23], &OUTLINE);
    }
}
