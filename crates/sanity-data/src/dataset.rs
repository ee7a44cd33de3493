//! An in-memory labelled image data set, NCHW float32.

/// Images `[n, c, h, w]` (row-major, float32), one label per image, and optionally a per-pixel
/// ground-truth mask `[n, h, w]` (1 = the region that defines the class, e.g. the effusion).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixel values, `[n, c, h, w]` row-major.
    pub images: Vec<f32>,
    /// `[c, h, w]` of one image.
    pub image_shape: [usize; 3],
    /// Class index of each image, `0..num_classes`.
    pub labels: Vec<usize>,
    /// Ground-truth masks `[n, h, w]`, where the generator knows them.
    pub masks: Option<Vec<u8>>,
    /// Number of classes (2 for the binary phantom task).
    pub num_classes: usize,
    /// The classes' names in label order (`normal`, `effusion`), where the data names them;
    /// empty otherwise (figures then show the indices).
    pub class_names: Vec<String>,
}

impl Dataset {
    /// The name of class `c`, or its index where the data names none.
    pub fn class_name(&self, c: usize) -> String {
        self.class_names.get(c).cloned().unwrap_or_else(|| c.to_string())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A short fingerprint of the images and labels: the size, the image shape and a hash
    /// (FNV-1a over 64 Ki-value chunks of the images, then over the chunks' hashes and the
    /// labels). Training checkpoints record it to refuse going on with other data.
    pub fn fingerprint(&self) -> String {
        let mut hashes: Vec<u8> = Vec::new();
        for chunk in self.images.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            hashes.extend(crate::rng::fnv1a(&bytes).to_le_bytes());
        }
        let labels: Vec<u8> = self.labels.iter().flat_map(|&l| (l as u64).to_le_bytes()).collect();
        hashes.extend(crate::rng::fnv1a(&labels).to_le_bytes());
        format!("{} images of {:?}, hash {:016x}", self.len(), self.image_shape, crate::rng::fnv1a(&hashes))
    }

    /// Values per image, `c * h * w`.
    pub fn image_len(&self) -> usize {
        self.image_shape.iter().product()
    }

    /// The pixels of image `i`, `[c, h, w]`.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// The ground-truth mask of image `i`, `[h, w]` of 0/1, when the set has masks.
    pub fn mask(&self, i: usize) -> Option<&[u8]> {
        let hw = self.image_shape[1] * self.image_shape[2];
        self.masks.as_ref().map(|m| &m[i * hw..(i + 1) * hw])
    }

    /// The images `range`, contiguous, `[range.len(), c, h, w]`.
    pub fn images_in(&self, range: std::ops::Range<usize>) -> &[f32] {
        let len = self.image_len();
        &self.images[range.start * len..range.end * len]
    }

    /// The images at `indices`, gathered into a new contiguous buffer `[k, c, h, w]`.
    pub fn gather_images(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
        out
    }

    /// The same images with their labels randomly permuted (Adebayo et al. 2018, section 5:
    /// the data randomisation test): class frequencies are kept, the link between image and
    /// label is gone. The permutation comes from `stream_rng(seed, "label_permutation", 0)`.
    pub fn with_permuted_labels(&self, seed: u64) -> Dataset {
        use rand::seq::SliceRandom;
        let mut labels = self.labels.clone();
        labels.shuffle(&mut crate::rng::stream_rng(seed, "label_permutation", 0));
        Dataset { labels, ..self.clone() }
    }

    /// The first `n` images (all of them when there are fewer), labels and masks with them.
    pub fn first(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let mask_len = self.image_shape[1] * self.image_shape[2];
        Dataset {
            images: self.images_in(0..n).to_vec(),
            image_shape: self.image_shape,
            labels: self.labels[..n].to_vec(),
            masks: self.masks.as_ref().map(|m| m[..n * mask_len].to_vec()),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Fraction of images per class, for reporting class balance.
    pub fn class_fractions(&self) -> Vec<f64> {
        let mut counts = vec![0usize; self.num_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts.iter().map(|&c| c as f64 / self.len().max(1) as f64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_labels_keep_the_class_counts_and_move_most_labels() {
        let labels: Vec<usize> = (0..200).map(|i| i % 4).collect();
        let data = Dataset {
            images: vec![0.0; 200],
            image_shape: [1, 1, 1],
            labels: labels.clone(),
            masks: None,
            num_classes: 4,
            class_names: Vec::new(),
        };
        let permuted = data.with_permuted_labels(5);
        assert_eq!(permuted.class_fractions(), data.class_fractions());
        let moved = permuted.labels.iter().zip(&labels).filter(|(a, b)| a != b).count();
        assert!(moved > 100, "{moved} of 200 labels changed");
        assert_eq!(permuted.labels, data.with_permuted_labels(5).labels);
    }
}
