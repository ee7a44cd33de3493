//! A single saliency map, `[c, h, w]` float32.

/// One map (or image): values `[c, h, w]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    /// The values.
    pub data: Vec<f32>,
    /// `[c, h, w]`.
    pub shape: [usize; 3],
}

impl Map {
    /// Wraps `data`, which must hold `c·h·w` values.
    pub fn new(data: Vec<f32>, shape: [usize; 3]) -> Self {
        assert_eq!(data.len(), shape.iter().product::<usize>(), "Map::new: data is not [c, h, w]");
        Self { data, shape }
    }

    /// Values of channel `c`, `[h, w]`.
    pub fn channel(&self, c: usize) -> &[f32] {
        let hw = self.shape[1] * self.shape[2];
        &self.data[c * hw..(c + 1) * hw]
    }
}
