//! Image folders: one sub-folder per class (classes in sorted name order), PNG or JPEG files,
//! decoded to grey or RGB in [0, 1] (16-bit PNGs keep their depth) and resized to a common size
//! with bilinear interpolation (pixel centres aligned, no anti-aliasing).

use crate::dataset::Dataset;
use crate::error::DataError;
use crate::masks::load_mask_folder;
use crate::resize::resize_bilinear;
use std::path::{Path, PathBuf};

/// File name extensions read as images (case-insensitive).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::File { path: path.display().to_string(), reason: reason.into() }
}

/// The class folders of `dir` and their image files, both sorted by name.
pub fn class_folders(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| bad(dir, format!("cannot read the folder: {e}")))?;
    let mut classes: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    classes.sort();
    if classes.len() < 2 {
        return Err(bad(
            dir,
            format!("{} class folder(s); accepted: one sub-folder per class, at least 2", classes.len()),
        ));
    }
    classes
        .into_iter()
        .map(|class| {
            let entries = std::fs::read_dir(&class).map_err(|e| bad(&class, format!("cannot read the folder: {e}")))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(bad(&class, "a class folder with no image; accepted: .png, .jpg, .jpeg files"));
            }
            let name = class.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            Ok((name, files))
        })
        .collect()
}

/// Every image of the class folders of `dir`, as `channels` (1: grey, 3: RGB) x `height` x
/// `width` in [0, 1], labelled by its folder's position in name order; with their masks from
/// the parallel folder `mask_dir` when given ([`load_mask_folder`]).
pub fn load_image_folder(
    dir: &Path,
    height: usize,
    width: usize,
    channels: usize,
    mask_dir: Option<&Path>,
) -> Result<Dataset, DataError> {
    if !(channels == 1 || channels == 3) {
        return Err(DataError::InvalidParameter {
            key: "channels",
            value: channels.to_string(),
            accepted: "1 (grey) or 3 (RGB)",
        });
    }
    if !(1..=4096).contains(&height) || !(1..=4096).contains(&width) {
        return Err(DataError::InvalidParameter {
            key: "height/width",
            value: format!("{height}x{width}"),
            accepted: "1 to 4096 pixels each",
        });
    }
    let classes = class_folders(dir)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (label, (_, files)) in classes.iter().enumerate() {
        for file in files {
            let decoded = image::open(file).map_err(|e| bad(file, format!("not a readable PNG or JPEG image: {e}")))?;
            let (w, h) = (decoded.width() as usize, decoded.height() as usize);
            let planes: Vec<Vec<f32>> = if channels == 1 {
                vec![decoded.to_luma32f().into_raw()]
            } else {
                let rgb = decoded.to_rgb32f().into_raw();
                (0..3).map(|c| rgb.iter().skip(c).step_by(3).copied().collect()).collect()
            };
            for plane in planes {
                images.extend(if (h, w) == (height, width) {
                    plane
                } else {
                    resize_bilinear(&plane, h, w, height, width)
                });
            }
            labels.push(label);
        }
    }
    let masks = match mask_dir {
        Some(mask_dir) => {
            let files: Vec<PathBuf> = classes.iter().flat_map(|(_, files)| files.iter().cloned()).collect();
            Some(load_mask_folder(dir, mask_dir, &files, [height, width])?)
        }
        None => None,
    };
    let class_names = classes.iter().map(|(name, _)| name.clone()).collect();
    Ok(Dataset {
        images,
        image_shape: [channels, height, width],
        labels,
        masks,
        num_classes: classes.len(),
        class_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, pixels: &[u8], w: u32, h: u32) {
        image::GrayImage::from_raw(w, h, pixels.to_vec()).expect("buffer").save(path).expect("save png");
    }

    #[test]
    fn classes_in_name_order_resized_grey_and_rgb() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (class, value) in [("normal", 0u8), ("effusion", 255u8)] {
            std::fs::create_dir_all(dir.path().join(class)).expect("mkdir");
            save(&dir.path().join(class).join("a.png"), &[value; 8 * 6], 8, 6);
            save(&dir.path().join(class).join("b.PNG"), &[value / 2; 4 * 4], 4, 4);
            std::fs::write(dir.path().join(class).join("notes.txt"), "not an image").expect("write");
        }
        let grey = load_image_folder(dir.path(), 4, 4, 1, None).expect("folder");
        // "effusion" sorts before "normal": label 0.
        assert_eq!((grey.len(), grey.num_classes, grey.labels.clone()), (4, 2, vec![0, 0, 1, 1]));
        assert_eq!(grey.image_shape, [1, 4, 4]);
        assert!(grey.image(0).iter().all(|&v| (v - 1.0).abs() < 1e-6) && grey.image(2).iter().all(|&v| v == 0.0));
        let rgb = load_image_folder(dir.path(), 3, 5, 3, None).expect("rgb");
        assert_eq!(rgb.image_shape, [3, 3, 5]);
        save(&dir.path().join("normal").join("d.jpg"), &[40; 16 * 16], 16, 16);
        let with_jpeg = load_image_folder(dir.path(), 4, 4, 1, None).expect("jpeg");
        assert_eq!(with_jpeg.len(), 5);
        assert!(with_jpeg.image(4).iter().all(|&v| (v - 40.0 / 255.0).abs() < 0.02), "{:?}", with_jpeg.image(4));
        std::fs::remove_file(dir.path().join("normal").join("d.jpg")).expect("rm");
        std::fs::write(dir.path().join("normal").join("c.png"), b"\x89PNG truncated").expect("write");
        let error = load_image_folder(dir.path(), 4, 4, 1, None).expect_err("corrupt").to_string();
        assert!(error.contains("c.png") && error.contains("PNG or JPEG"), "{error}");
        std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
        std::fs::remove_file(dir.path().join("normal").join("c.png")).expect("rm");
        assert!(load_image_folder(dir.path(), 4, 4, 1, None).expect_err("empty class").to_string().contains("empty"));
    }
}
