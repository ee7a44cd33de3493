//! Bilinear and nearest-neighbour resizing of a single-channel image.

/// Bilinear resize of a row-major `[in_h, in_w]` image to `[out_h, out_w]`.
///
/// Alignment: pixel centres (`align_corners = False`), the convention of OpenCV's
/// `cv2.resize(.., INTER_LINEAR)` and PyTorch's `F.interpolate(mode="bilinear",
/// align_corners=False)`: source coordinate `(y + 0.5) * in_h / out_h - 0.5`, clamped at 0, and
/// the neighbour index clamped at the border. pytorch-grad-cam upsamples CAMs this way.
pub fn resize_bilinear(src: &[f32], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    resize_with(src, [in_h, in_w], [out_h, out_w], |o, n_in, n_out| {
        ((o as f64 + 0.5) * (n_in as f64 / n_out as f64) - 0.5).max(0.0)
    })
}

/// Bilinear resize with the corner pixels' centres aligned (`align_corners=True`, PyTorch's
/// `UpsamplingBilinear2d`): output pixel `o` samples input coordinate `o·(n_in − 1)/(n_out − 1)`.
pub fn resize_bilinear_align_corners(src: &[f32], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    resize_with(src, [in_h, in_w], [out_h, out_w], |o, n_in, n_out| match n_out {
        1 => 0.0,
        _ => o as f64 * (n_in - 1) as f64 / (n_out - 1) as f64,
    })
}

/// Nearest-neighbour resize of a row-major `[in_h, in_w]` image (a mask) to `[out_h, out_w]`:
/// output pixel `o` takes input pixel `⌊o · n_in / n_out⌋` on each axis, PyTorch's
/// `F.interpolate(mode="nearest")` and OpenCV's `INTER_NEAREST` (both take the scale in float32,
/// which can put a pixel one to the left where `n_in / n_out` rounds down; here it is exact).
pub fn resize_nearest<T: Copy>(src: &[T], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<T> {
    assert_eq!(src.len(), in_h * in_w, "resize_nearest: src is not [in_h, in_w]");
    assert!(in_h * in_w > 0 || out_h * out_w == 0, "resize_nearest: an empty image has no pixel to sample");
    let cols: Vec<usize> = (0..out_w).map(|x| x * in_w / out_w).collect();
    (0..out_h)
        .flat_map(|y| {
            let row = &src[(y * in_h / out_h) * in_w..][..in_w];
            cols.iter().map(move |&x| row[x])
        })
        .collect()
}

/// Bilinear interpolation of `src` `[h, w]` where output index `o` of an axis samples input
/// coordinate `source(o, n_in, n_out)` (clamped to the last pixel).
fn resize_with(
    src: &[f32],
    [in_h, in_w]: [usize; 2],
    [out_h, out_w]: [usize; 2],
    source: impl Fn(usize, usize, usize) -> f64,
) -> Vec<f32> {
    assert_eq!(src.len(), in_h * in_w, "resize_bilinear: src is not [in_h, in_w]");
    let mut out = vec![0.0f32; out_h * out_w];
    let axis = |o: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
        let s = source(o, n_in, n_out);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, (s - i0 as f64) as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..out_w).map(|x| axis(x, in_w, out_w)).collect();
    for y in 0..out_h {
        let (y0, y1, fy) = axis(y, in_h, out_h);
        let (r0, r1) = (&src[y0 * in_w..(y0 + 1) * in_w], &src[y1 * in_w..(y1 + 1) * in_w]);
        for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
            out[y * out_w + x] = top + (bottom - top) * fy;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from PyTorch 2.x:
    /// `F.interpolate(torch.tensor([[[[0.,1.],[2.,3.]]]]), size=(4,4), mode="bilinear",
    /// align_corners=False)` = rows [0, .25, .75, 1], [.5, .75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5],
    /// [2, 2.25, 2.75, 3].
    #[test]
    fn upsampling_matches_pytorch_half_pixel_convention() {
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        let expected = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&src, 3, 4, 3, 4), src);
    }

    #[test]
    fn align_corners_matches_upsampling_bilinear2d() {
        // torch.nn.UpsamplingBilinear2d(size=(3, 3))(torch.tensor([[[[0., 1.], [2., 3.]]]]))
        // = [[0, .5, 1], [1, 1.5, 2], [2, 2.5, 3]].
        let out = resize_bilinear_align_corners(&[0., 1., 2., 3.], 2, 2, 3, 3);
        assert_eq!(out, [0., 0.5, 1., 1., 1.5, 2., 2., 2.5, 3.]);
    }

    #[test]
    fn nearest_matches_pytorch() {
        // F.interpolate(torch.arange(12.).reshape(1, 1, 3, 4), size=(5, 3), mode="nearest") and
        // size=(2, 7).
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_nearest(&src, 3, 4, 5, 3), [0., 1., 2., 0., 1., 2., 4., 5., 6., 4., 5., 6., 8., 9., 10.]);
        assert_eq!(resize_nearest(&src, 3, 4, 2, 7), [0., 0., 1., 1., 2., 2., 3., 4., 4., 5., 5., 6., 6., 7.]);
        assert_eq!(resize_nearest(&src, 3, 4, 3, 4), src);
    }
}
