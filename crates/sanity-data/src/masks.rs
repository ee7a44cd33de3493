//! Ground-truth masks as data (`masks = "m.npy"` beside `images`, a mask folder beside an image
//! folder): one `[h, w]` mask of 0/1 per image, 1 where the object that defines the class lies
//! (the phantom's effusion). An image without the object (a normal radiograph) has an empty
//! mask; a mask file with no pixel inside in any image is refused, as is one that does not fit
//! its images.

use crate::error::DataError;
use crate::npy::NpyArray;
use crate::resize::resize_nearest;
use std::path::{Path, PathBuf};

fn bad(path: &str, reason: impl Into<String>) -> DataError {
    DataError::File { path: path.to_string(), reason: reason.into() }
}

/// The masks of `array` (read from `path`) for `n` images of `[h, w]` pixels: shape `N x H x W`
/// or `N x 1 x H x W`, values 0 and 1 (bool or numbers), at least one pixel inside in all.
pub fn masks_from_array(array: &NpyArray, path: &str, n: usize, [h, w]: [usize; 2]) -> Result<Vec<u8>, DataError> {
    let fits = match array.shape.as_slice() {
        &[m, mh, mw] | &[m, 1, mh, mw] => (m, mh, mw) == (n, h, w),
        _ => false,
    };
    if !fits {
        return Err(bad(
            path,
            format!(
                "masks of shape {:?} for {n} images of {h}x{w}; accepted: {n} x {h} x {w} (or {n} x 1 x {h} x {w}), one mask per image",
                array.shape
            ),
        ));
    }
    let masks = array
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| match v {
            0.0 => Ok(0u8),
            1.0 => Ok(1u8),
            _ => Err(bad(
                path,
                format!("value {v} at image {}, pixel {}; accepted: 0 and 1 (or bool)", i / (h * w), i % (h * w)),
            )),
        })
        .collect::<Result<Vec<u8>, DataError>>()?;
    not_all_empty(masks, path)
}

/// `masks` unless no pixel of any mask is inside.
fn not_all_empty(masks: Vec<u8>, path: &str) -> Result<Vec<u8>, DataError> {
    if masks.iter().all(|&m| m == 0) {
        return Err(bad(path, "every mask is empty; accepted: masks with the object's pixels set to 1"));
    }
    Ok(masks)
}

/// The mask of image `image` (a file under `image_dir`) in `mask_dir`: the same path relative
/// to its folder, with any image extension (`effusion/p0007.png` for `effusion/p0007.jpg`).
pub fn mask_file_for(image_dir: &Path, mask_dir: &Path, image: &Path) -> Result<PathBuf, DataError> {
    let relative = image.strip_prefix(image_dir).unwrap_or(image);
    // Only the image's own extension goes (`p7.v2.jpg` looks for `p7.v2.png`).
    let stem = mask_dir.join(relative).with_extension("");
    let with = |e: &str| {
        let mut name = stem.clone().into_os_string();
        name.push(format!(".{e}"));
        PathBuf::from(name)
    };
    ["png", "PNG", "jpg", "jpeg", "JPG", "JPEG"].iter().map(|e| with(e)).find(|p| p.is_file()).ok_or_else(|| {
        bad(
            &mask_dir.display().to_string(),
            format!(
                "no mask for image {}; expected {}.png (grey 128 and above inside), one mask per image",
                image.display(),
                stem.display()
            ),
        )
    })
}

/// The masks of `images` (files under `image_dir`) from the parallel folder `mask_dir`, read
/// as 8-bit grey (128 and above = inside, so that JPEG's ringing around an edge stays outside)
/// and resized to `[h, w]` with nearest-neighbour sampling.
pub fn load_mask_folder(
    image_dir: &Path,
    mask_dir: &Path,
    images: &[PathBuf],
    [h, w]: [usize; 2],
) -> Result<Vec<u8>, DataError> {
    let mut masks = Vec::with_capacity(images.len() * h * w);
    for image in images {
        let file = mask_file_for(image_dir, mask_dir, image)?;
        let decoded = image::open(&file)
            .map_err(|e| bad(&file.display().to_string(), format!("not a readable PNG or JPEG mask: {e}")))?
            .to_luma8();
        let (mh, mw) = (decoded.height() as usize, decoded.width() as usize);
        let inside: Vec<u8> = decoded.into_raw().into_iter().map(|v| u8::from(v >= 128)).collect();
        masks.extend(if (mh, mw) == (h, w) { inside } else { resize_nearest(&inside, mh, mw, h, w) });
    }
    not_all_empty(masks, &mask_dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(shape: Vec<usize>, values: Vec<f64>) -> NpyArray {
        NpyArray { shape, values, dtype: "|b1".into() }
    }

    #[test]
    fn masks_must_fit_their_images_hold_only_0_and_1_and_not_all_be_empty() {
        let ok = array(vec![2, 2, 3], vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(masks_from_array(&ok, "m.npy", 2, [2, 3]).expect("fits").iter().sum::<u8>(), 1);
        let channel = array(vec![2, 1, 2, 3], ok.values.clone());
        assert!(masks_from_array(&channel, "m.npy", 2, [2, 3]).is_ok());
        for (shape, n, hw, needle) in [
            (vec![2, 2, 3], 3, [2, 3], "3 x 2 x 3"),
            (vec![2, 3, 2], 2, [2, 3], "2 x 2 x 3"),
            (vec![2, 2, 2, 3], 2, [2, 3], "one mask per image"),
        ] {
            let e = masks_from_array(&array(shape, ok.values.clone()), "m.npy", n, hw).expect_err("shape").to_string();
            assert!(e.contains("m.npy") && e.contains(needle), "{e}");
        }
        let mut grey = ok.values.clone();
        grey[7] = 0.5;
        let e = masks_from_array(&array(vec![2, 2, 3], grey), "m.npy", 2, [2, 3]).expect_err("0.5").to_string();
        assert!(e.contains("value 0.5 at image 1, pixel 1") && e.contains("accepted: 0 and 1"), "{e}");
        let e = masks_from_array(&array(vec![2, 2, 3], vec![0.0; 12]), "m.npy", 2, [2, 3]).expect_err("empty");
        assert!(e.to_string().contains("every mask is empty"), "{e}");
    }

    #[test]
    fn a_mask_folder_parallels_the_image_folder_and_is_resized_nearest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (images, masks) = (dir.path().join("images"), dir.path().join("masks"));
        for d in [images.join("effusion"), masks.join("effusion")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let a = images.join("effusion").join("a.v2.jpg");
        std::fs::write(&a, b"").expect("write");
        // A 4x4 mask with its right half inside, read at 2x2.
        let pixels: Vec<u8> = (0..16).map(|i| if i % 4 >= 2 { 255 } else { 0 }).collect();
        image::GrayImage::from_raw(4, 4, pixels)
            .expect("buffer")
            .save(masks.join("effusion").join("a.v2.png"))
            .expect("png");
        let loaded = load_mask_folder(&images, &masks, std::slice::from_ref(&a), [2, 2]).expect("masks");
        assert_eq!(loaded, vec![0, 1, 0, 1]);
        let b = images.join("effusion").join("b.png");
        let e = load_mask_folder(&images, &masks, &[a, b], [2, 2]).expect_err("missing").to_string();
        assert!(e.contains("no mask for image") && e.contains("b.png"), "{e}");
    }
}
