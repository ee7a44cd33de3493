//! Colour maps, as matplotlib defines them (`jet`, `gray`, `bwr`), and the method palette
//! (matplotlib's `tab10`).

/// An RGB colour, 8 bits per channel.
pub type Rgb = [u8; 3];

/// A colour map: a value in [0, 1] to a colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMap {
    /// Black to white.
    Gray,
    /// matplotlib's `jet` (the seed lesson's overlays).
    Jet,
    /// matplotlib's `bwr`: blue, white at 0.5, red (signed maps, centred on zero).
    Bwr,
}

/// matplotlib's `jet` segment data: (x, y) knots per channel.
const JET: [&[(f64, f64)]; 3] = [
    &[(0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)],
    &[(0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)],
    &[(0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)],
];

/// Entry `index` of matplotlib's 256-entry lookup table of one channel's `knots`, in its
/// order of operations (`_create_lookup_table`: knots and positions scaled by 255).
fn lookup(knots: &[(f64, f64)], index: usize) -> f64 {
    let at = 255.0 * (index as f64 * (1.0 / 255.0)); // 255 · numpy's linspace(0, 1, 256)
    for pair in knots.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        let (x0, x1) = (x0 * 255.0, x1 * 255.0);
        if at <= x1 {
            return (at - x0) / (x1 - x0) * (y1 - y0) + y0;
        }
    }
    knots.last().map_or(0.0, |k| k.1)
}

fn byte(v: f64) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0) as u8 // truncated, as matplotlib's `bytes=True`
}

/// matplotlib's `bwr` segment data.
const BWR: [&[(f64, f64)]; 3] = [
    &[(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)],
    &[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)],
    &[(0.0, 1.0), (0.5, 1.0), (1.0, 0.0)],
];

/// `gray`.
const GRAY: [&[(f64, f64)]; 3] = [&[(0.0, 0.0), (1.0, 1.0)], &[(0.0, 0.0), (1.0, 1.0)], &[(0.0, 0.0), (1.0, 1.0)]];

impl ColorMap {
    /// The colour of `t` (clamped to [0, 1]; NaN is mid-gray). As matplotlib: `t` picks one of
    /// 256 entries, entry `i` being the segments evaluated at `i / 255`.
    pub fn color(self, t: f64) -> Rgb {
        if t.is_nan() {
            return [128, 128, 128];
        }
        let entry = ((t.clamp(0.0, 1.0) * 256.0).floor() as usize).min(255);
        let segments = match self {
            ColorMap::Gray => GRAY,
            ColorMap::Jet => JET,
            ColorMap::Bwr => BWR,
        };
        segments.map(|knots| byte(lookup(knots, entry)))
    }
}

/// matplotlib's `tab10`, the colour of the i-th method of a figure (cycled).
pub fn method_color(i: usize) -> Rgb {
    const TAB10: [Rgb; 10] = [
        [0x1f, 0x77, 0xb4],
        [0xff, 0x7f, 0x0e],
        [0x2c, 0xa0, 0x2c],
        [0xd6, 0x27, 0x28],
        [0x94, 0x67, 0xbd],
        [0x8c, 0x56, 0x4b],
        [0xe3, 0x77, 0xc2],
        [0x7f, 0x7f, 0x7f],
        [0xbc, 0xbd, 0x22],
        [0x17, 0xbe, 0xcf],
    ];
    TAB10[i % TAB10.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_matches_matplotlib_at_its_knots() {
        // matplotlib 3.10.9: matplotlib.colormaps[name](t, bytes=True)[:3].
        let cases: [(ColorMap, f64, Rgb); 14] = [
            (ColorMap::Jet, 0.0, [0, 0, 127]),
            (ColorMap::Jet, 0.1, [0, 0, 241]),
            (ColorMap::Jet, 0.25, [0, 128, 255]),
            (ColorMap::Jet, 0.5, [124, 255, 121]),
            (ColorMap::Jet, 0.7, [255, 196, 0]),
            (ColorMap::Jet, 0.9, [241, 7, 0]),
            (ColorMap::Jet, 1.0, [127, 0, 0]),
            (ColorMap::Bwr, 0.0, [0, 0, 255]),
            (ColorMap::Bwr, 0.1, [50, 50, 255]),
            (ColorMap::Bwr, 0.5, [255, 254, 254]),
            (ColorMap::Bwr, 0.7, [255, 152, 152]),
            (ColorMap::Bwr, 1.0, [255, 0, 0]),
            (ColorMap::Gray, 0.1, [25, 25, 25]),
            (ColorMap::Gray, 0.7, [179, 179, 179]),
        ];
        for (map, t, expected) in cases {
            assert_eq!(map.color(t), expected, "{map:?}({t})");
        }
    }
}
