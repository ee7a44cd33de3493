//! Histograms of oriented gradients as scikit-image's `feature.hog` (v0.26) computes them, and
//! the HOG similarity of Adebayo et al. 2018 (Spearman or Pearson correlation of the two maps'
//! HOG features).
//!
//! Gradients are central differences with zero rows and columns at the borders; per pixel the
//! channel with the largest gradient magnitude is used. Cells of `pixels_per_cell` pixels get
//! `orientations` bins over [0°, 180°) (bin `i` holds orientations in [i·w, (i+1)·w)), each the
//! mean gradient magnitude over the cell's pixels in that range. Blocks of `cells_per_block`
//! cells, one per cell position, are normalised with L2-Hys (`v/√(Σv² + ε²)`, clipped at 0.2,
//! renormalised; ε = 1e-5), and the features are the blocks in row-major order.
//! Deviation: scikit-image sums each cell in float32 (and, for float32 input, computes the
//! gradients in float32); here everything is float64, as scikit-image on float64 input except
//! the cell sums (the fixture's setting).

use crate::map::Map;
use crate::metric::Status;
use serde::{Deserialize, Serialize};

/// HOG parameters (scikit-image's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HogParams {
    /// Orientation bins over 180°. Default 9.
    #[serde(default = "default_orientations")]
    pub orientations: usize,
    /// Cell size `[rows, cols]` in pixels. Default `[8, 8]`.
    #[serde(default = "default_cell")]
    pub pixels_per_cell: [usize; 2],
    /// Block size `[rows, cols]` in cells. Default `[3, 3]`.
    #[serde(default = "default_block")]
    pub cells_per_block: [usize; 2],
}

/// 9 orientations.
pub fn default_orientations() -> usize {
    9
}
/// 8x8 pixels per cell.
pub fn default_cell() -> [usize; 2] {
    [8, 8]
}
/// 3x3 cells per block.
pub fn default_block() -> [usize; 2] {
    [3, 3]
}

/// The largest cell or block side, in pixels or cells.
pub const MAX_CELL: usize = 4096;

impl HogParams {
    /// Checks the parameters; the message says what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        let in_range = |v: &[usize; 2]| v.iter().all(|&n| (1..=MAX_CELL).contains(&n));
        if !(1..=360).contains(&self.orientations)
            || !in_range(&self.pixels_per_cell)
            || !in_range(&self.cells_per_block)
        {
            return Err(format!(
                "orientations = {}, pixels_per_cell = {:?}, cells_per_block = {:?}; accepted: orientations 1 to 360, pixels_per_cell and cells_per_block 1 to {MAX_CELL}",
                self.orientations, self.pixels_per_cell, self.cells_per_block
            ));
        }
        Ok(())
    }
}

/// The HOG feature vector of `map`, or [`Status::TooSmall`] when it holds less than one block.
pub fn hog_features(map: &Map, p: &HogParams) -> Result<Vec<f64>, Status> {
    let [c, h, w] = map.shape;
    let [cr, cc] = p.pixels_per_cell;
    let [br, bc] = p.cells_per_block;
    let (cells_r, cells_c) = (h / cr, w / cc);
    if cells_r < br || cells_c < bc {
        return Err(Status::TooSmall);
    }
    // Gradients of the channel with the largest magnitude, per pixel.
    let (mut g_row, mut g_col) = (vec![0.0f64; h * w], vec![0.0f64; h * w]);
    let mut best = vec![-1.0f64; h * w];
    for k in 0..c {
        let ch = map.channel(k);
        for y in 0..h {
            for x in 0..w {
                let gr = if y == 0 || y == h - 1 {
                    0.0
                } else {
                    f64::from(ch[(y + 1) * w + x]) - f64::from(ch[(y - 1) * w + x])
                };
                let gc = if x == 0 || x == w - 1 {
                    0.0
                } else {
                    f64::from(ch[y * w + x + 1]) - f64::from(ch[y * w + x - 1])
                };
                let magnitude = gr.hypot(gc);
                let i = y * w + x;
                if magnitude > best[i] {
                    (best[i], g_row[i], g_col[i]) = (magnitude, gr, gc);
                }
            }
        }
    }
    let width = 180.0 / p.orientations as f64;
    let bin_width = width as f32 as f64; // scikit-image's bin edges are float32
    let mut histogram = vec![0.0f64; cells_r * cells_c * p.orientations];
    for i in 0..h * w {
        let (y, x) = (i / w, i % w);
        let (ry, rx) = (y / cr, x / cc);
        if ry >= cells_r || rx >= cells_c {
            continue;
        }
        let orientation = g_row[i].atan2(g_col[i]).to_degrees().rem_euclid(180.0);
        let magnitude = g_row[i].hypot(g_col[i]);
        for bin in 0..p.orientations {
            let (start, end) = ((bin_width * (bin + 1) as f64) as f32 as f64, (bin_width * bin as f64) as f32 as f64);
            if orientation < start && orientation >= end {
                histogram[(ry * cells_c + rx) * p.orientations + bin] += magnitude;
            }
        }
    }
    histogram.iter_mut().for_each(|v| *v /= (cr * cc) as f64);
    let eps2 = 1e-5f64 * 1e-5;
    let mut features = Vec::with_capacity((cells_r - br + 1) * (cells_c - bc + 1) * br * bc * p.orientations);
    for r in 0..=cells_r - br {
        for col in 0..=cells_c - bc {
            let mut block = Vec::with_capacity(br * bc * p.orientations);
            for dr in 0..br {
                let start = ((r + dr) * cells_c + col) * p.orientations;
                block.extend_from_slice(&histogram[start..start + bc * p.orientations]);
            }
            let norm = (block.iter().map(|v| v * v).sum::<f64>() + eps2).sqrt();
            block.iter_mut().for_each(|v| *v = (*v / norm).min(0.2));
            let norm = (block.iter().map(|v| v * v).sum::<f64>() + eps2).sqrt();
            features.extend(block.iter().map(|v| v / norm));
        }
    }
    Ok(features)
}
