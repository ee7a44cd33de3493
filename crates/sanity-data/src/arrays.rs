//! Data sets from NumPy arrays (the seed lesson keeps its X-rays as `.npy` files): images
//! `N x H x W` or `N x C x H x W` and integer labels `N`, checked, scaled and split.

use crate::dataset::Dataset;
use crate::error::DataError;
use crate::masks::masks_from_array;
use crate::npy::{NpyArray, read_array};
use crate::rng::stream_rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// How pixel values are brought to a common range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// 8-bit integer images divided by 255; anything else kept as it is.
    #[default]
    Auto,
    /// Values kept as they are.
    None,
    /// Values divided by 255.
    Divide255,
    /// `(v − min) / (max − min)` with the minimum and maximum over the whole array.
    MinMax,
}

fn bad(path: &str, reason: impl Into<String>) -> DataError {
    DataError::File { path: path.to_string(), reason: reason.into() }
}

/// The images of `path` as `([c, h, w], values)`, scaled by `scale`; NaN or infinite values are
/// refused with their position.
fn images_of(array: &NpyArray, path: &str, scale: Scale) -> Result<([usize; 3], Vec<f32>), DataError> {
    let shape = match array.shape.as_slice() {
        &[_, h, w] => [1, h, w],
        &[_, c, h, w] if c <= 4 => [c, h, w],
        other => {
            return Err(bad(
                path,
                format!(
                    "images of shape {other:?}; accepted: N x H x W or N x C x H x W with C <= 4 (for N x H x W x C use np.transpose(x, (0, 3, 1, 2)))"
                ),
            ));
        }
    };
    if shape.contains(&0) || array.values.is_empty() {
        return Err(bad(path, format!("empty images, shape {:?}", array.shape)));
    }
    if let Some(i) = array.values.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            path,
            format!("value {} at flat index {i} is not finite; accepted: finite pixels", array.values[i]),
        ));
    }
    let (min, max) =
        array.values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scaled: Vec<f32> = match scale {
        Scale::Auto if array.dtype.ends_with("u1") => array.values.iter().map(|&v| (v / 255.0) as f32).collect(),
        Scale::Auto | Scale::None => array.values.iter().map(|&v| v as f32).collect(),
        Scale::Divide255 => array.values.iter().map(|&v| (v / 255.0) as f32).collect(),
        Scale::MinMax if max > min => array.values.iter().map(|&v| ((v - min) / (max - min)) as f32).collect(),
        Scale::MinMax => return Err(bad(path, format!("every value is {min}: min_max scaling needs a range"))),
    };
    if let Some(i) = scaled.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            path,
            format!(
                "value {} at flat index {i} is beyond float32's range once scaled; accepted: pixels float32 can hold",
                array.values[i]
            ),
        ));
    }
    Ok((shape, scaled))
}

/// Integer labels `0..` of `path`, `n` of them.
fn labels_of(array: &NpyArray, path: &str, n: usize) -> Result<Vec<usize>, DataError> {
    if array.shape != [n] {
        return Err(bad(path, format!("labels of shape {:?}; expected [{n}], one per image", array.shape)));
    }
    array
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                Ok(v as usize)
            } else {
                Err(bad(path, format!("label {v} at index {i}; accepted: integers 0, 1, 2, ...")))
            }
        })
        .collect()
}

/// The most classes a labels array may have (a label of 999 999 999 among digits is a typo,
/// and every class costs a loop over the data).
pub const MAX_CLASSES: usize = 100_000;

/// A data set from an images array and a labels array (`.npy` paths, or `FILE.npz:KEY`), and
/// the images' ground-truth masks when `masks_path` is given ([`masks_from_array`]). The
/// number of classes is `num_classes` or the largest label + 1 (at least 2).
pub fn load_arrays(
    images_path: &str,
    labels_path: &str,
    masks_path: Option<&str>,
    scale: Scale,
    num_classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let x = read_array(images_path)?;
    let (image_shape, images) = images_of(&x, images_path, scale)?;
    let labels = labels_of(&read_array(labels_path)?, labels_path, x.shape[0])?;
    let masks = match masks_path {
        Some(path) => Some(masks_from_array(&read_array(path)?, path, labels.len(), [image_shape[1], image_shape[2]])?),
        None => None,
    };
    if let Some(n) = num_classes
        && n > MAX_CLASSES
    {
        return Err(bad(labels_path, format!("num_classes = {n}; accepted: at most {MAX_CLASSES}")));
    }
    if let Some(i) = labels.iter().position(|&l| l >= MAX_CLASSES) {
        return Err(bad(
            labels_path,
            format!("label {} at index {i}; accepted: class labels 0 to {}", labels[i], MAX_CLASSES - 1),
        ));
    }
    let largest = labels.iter().copied().max().unwrap_or(0);
    let classes = num_classes.unwrap_or(largest + 1).max(2);
    if largest >= classes {
        return Err(bad(
            labels_path,
            format!("label {largest} but num_classes = {classes}; accepted: labels below it"),
        ));
    }
    Ok(Dataset { images, image_shape, labels, masks, num_classes: classes, class_names: Vec::new() })
}

/// A deterministic, stratified split: in each class, a seeded shuffle
/// (`stream_rng(seed, "split", class)`) puts `round(count x test_fraction)` images (at least one
/// when the class has two or more) into the test set. Both sets keep the original order.
pub fn split(data: &Dataset, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset), DataError> {
    let (train_rows, test_rows) = split_indices(data, test_fraction, seed)?;
    Ok((rows_of(data, &train_rows), rows_of(data, &test_rows)))
}

/// The images `rows` of `data` (and their labels and masks), in that order, as a data set of
/// its own.
pub fn rows_of(data: &Dataset, rows: &[usize]) -> Dataset {
    Dataset {
        images: data.gather_images(rows),
        image_shape: data.image_shape,
        labels: rows.iter().map(|&i| data.labels[i]).collect(),
        masks: data
            .masks
            .as_ref()
            .map(|_| rows.iter().flat_map(|&i| data.mask(i).unwrap_or_default()).copied().collect()),
        num_classes: data.num_classes,
        class_names: data.class_names.clone(),
    }
}

/// The rows of `data` that [`split`] puts into the training and the test set, each in data
/// order (written to a run's `split.csv`).
pub fn split_indices(data: &Dataset, test_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::InvalidParameter {
            key: "test_fraction",
            value: test_fraction.to_string(),
            accepted: "0 < test_fraction < 1",
        });
    }
    if data.len() < 2 {
        return Err(DataError::InvalidParameter {
            key: "test_fraction",
            value: format!("{test_fraction} of {} image", data.len()),
            accepted: "a data set of at least 2 images (one to train on, one to test), or test arrays of their own",
        });
    }
    let mut is_test = vec![false; data.len()];
    // The members of each class present, in data order (classes without images draw nothing).
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, &label) in data.labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    for (class, mut members) in by_class {
        members.shuffle(&mut stream_rng(seed, "split", class as u64));
        let take = ((members.len() as f64 * test_fraction).round() as usize).max(usize::from(members.len() >= 2));
        for &i in &members[..take.min(members.len())] {
            is_test[i] = true;
        }
    }
    let (train, test): (Vec<usize>, Vec<usize>) = (0..data.len()).partition(|&i| !is_test[i]);
    if train.is_empty() || test.is_empty() {
        return Err(DataError::InvalidParameter {
            key: "test_fraction",
            value: test_fraction.to_string(),
            accepted: "a fraction that leaves images in both the training and the test set",
        });
    }
    Ok((train, test))
}
