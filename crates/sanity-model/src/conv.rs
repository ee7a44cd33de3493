//! 2-D convolution (cross-correlation, stride 1, zero padding) built from candle ops whose
//! backward is correct: zero padding, shifted views, one batched matmul.
//!
//! candle 0.9.2's own `conv2d` returns wrong values on some shapes (seen: 3 input channels on a
//! 3x3 input, with and without padding; checked against a direct loop in
//! `tests/gradients.rs`), so the project does not call it.
//!
//! ```text
//! y[n, o, i, j] = b[o] + Σ_{c, u, v} w[o, c, u, v] · x_pad[n, c, i + u, j + v]
//! ```
//! computed as `W [o, c·k·k] × cols [n, c·k·k, oh·ow]` with `cols` the k² shifted views of the
//! padded input (im2col).

use candle_core::{Result, Tensor};

/// `x` `[n, c, h, w]`, `weight` `[o, c, k, k]`, `bias` `[o]`, zero `padding` per side.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: &Tensor, padding: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (o, _, k, _) = weight.dims4()?;
    let (oh, ow) = (h + 2 * padding + 1 - k, w + 2 * padding + 1 - k);
    let padded = if padding > 0 {
        x.pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?
    } else {
        x.clone()
    };
    let mut shifted = Vec::with_capacity(k * k);
    for u in 0..k {
        for v in 0..k {
            shifted.push(padded.narrow(2, u, oh)?.narrow(3, v, ow)?);
        }
    }
    // [n, c, k·k, oh, ow] -> [n, c·k·k, oh·ow]; column index c·k² + u·k + v matches the weight.
    let cols = Tensor::stack(&shifted, 2)?.reshape((n, c * k * k, oh * ow))?;
    let w_mat = weight.reshape((o, c * k * k))?;
    let y = w_mat.broadcast_matmul(&cols)?.reshape((n, o, oh, ow))?;
    y.broadcast_add(&bias.reshape((1, o, 1, 1))?)
}
