//! Ground-truth masks as data: `masks` / `test_masks` beside NumPy arrays and `mask_dir` /
//! `test_mask_dir` beside image folders travel with their images through the split, and masks
//! that do not fit, or that only some images have, stop the plan naming the file or key.

use sanity_data::npy::f32_npy;
use sanity_experiments::plan::DataPlan;
use sanity_rundir::config::DataConfig;
use std::path::Path;

const SIDE: usize = 8;

/// Image `i`: bright (0.9) on its mask, dark (0.1) elsewhere; class 1 has a square of side 2
/// to 4 at a place of its own, class 0 none (an empty mask).
fn image_and_mask(i: usize) -> (Vec<f32>, Vec<f32>) {
    let mask: Vec<f32> = (0..SIDE * SIDE)
        .map(|p| {
            let (y, x, s, at) = (p / SIDE, p % SIDE, 2 + i % 3, i % 4);
            f32::from(u8::from(i % 2 == 1 && (at..at + s).contains(&y) && (at..at + s).contains(&x)))
        })
        .collect();
    (mask.iter().map(|&m| if m == 1.0 { 0.9 } else { 0.1 }).collect(), mask)
}

fn write_arrays(dir: &Path, name: &str, n: usize) -> (String, String, String) {
    let (mut images, mut masks) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (x, m) = image_and_mask(i);
        images.extend(x);
        masks.extend(m);
    }
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let path = |what: &str| dir.join(format!("{name}-{what}.npy"));
    std::fs::write(path("x"), f32_npy(&[n, SIDE, SIDE], &images)).expect("images");
    std::fs::write(path("y"), f32_npy(&[n], &labels)).expect("labels");
    std::fs::write(path("m"), f32_npy(&[n, SIDE, SIDE], &masks)).expect("masks");
    let s = |what: &str| path(what).display().to_string();
    (s("x"), s("y"), s("m"))
}

fn data(toml_text: &str) -> DataConfig {
    toml::from_str(toml_text).expect("a data table")
}

/// Every image of both sets carries its own mask: bright exactly where the mask is set.
fn assert_masks_follow_images(plan: &DataPlan) {
    let (train, test) = plan.load(0).expect("loads");
    for set in [&train, &test] {
        assert!(set.masks.is_some());
        for i in 0..set.len() {
            let mask = set.mask(i).expect("a mask");
            assert!(set.image(i).iter().zip(mask).all(|(&v, &m)| (v > 0.5) == (m == 1)), "image {i}");
        }
        assert!((0..set.len()).any(|i| set.mask(i).expect("mask").contains(&1)));
    }
}

#[test]
fn array_masks_travel_with_their_images_and_misfits_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (x, y, m) = write_arrays(tmp.path(), "train", 20);
    let split = data(&format!(
        "source = \"arrays\"\nimages = \"{x}\"\nlabels = \"{y}\"\nmasks = \"{m}\"\ntest_fraction = 0.25"
    ));
    assert_masks_follow_images(&DataPlan::from_config(&split, "c.toml").expect("plan"));

    let (tx, ty, tm) = write_arrays(tmp.path(), "test", 6);
    let given = format!(
        "source = \"arrays\"\nimages = \"{x}\"\nlabels = \"{y}\"\nmasks = \"{m}\"\ntest_images = \"{tx}\"\ntest_labels = \"{ty}\""
    );
    let both = data(&format!("{given}\ntest_masks = \"{tm}\""));
    assert_masks_follow_images(&DataPlan::from_config(&both, "c.toml").expect("plan"));

    // Masks for the training images only.
    let error = DataPlan::from_config(&data(&given), "c.toml").expect_err("some images only").to_string();
    assert!(error.contains("data.test_masks") && error.contains("only some images"), "{error}");
    // The test images' masks as the training masks: 6 masks for 20 images.
    let misfit = data(&format!("source = \"arrays\"\nimages = \"{x}\"\nlabels = \"{y}\"\nmasks = \"{tm}\""));
    let error = DataPlan::from_config(&misfit, "c.toml").expect_err("misfit").to_string();
    assert!(error.contains("test-m.npy") && error.contains("one mask per image"), "{error}");
    // Images as masks: values other than 0 and 1.
    let grey = data(&format!("source = \"arrays\"\nimages = \"{x}\"\nlabels = \"{y}\"\nmasks = \"{x}\""));
    let error = DataPlan::from_config(&grey, "c.toml").expect_err("grey").to_string();
    assert!(error.contains("train-x.npy") && error.contains("accepted: 0 and 1"), "{error}");
    // Every mask empty.
    std::fs::write(&m, f32_npy(&[20, SIDE, SIDE], &vec![0.0; 20 * SIDE * SIDE])).expect("empty masks");
    let error = DataPlan::from_config(&split, "c.toml").expect_err("empty").to_string();
    assert!(error.contains("train-m.npy") && error.contains("every mask is empty"), "{error}");
}

#[test]
fn folder_masks_travel_with_their_images_and_missing_ones_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (images, masks) = (tmp.path().join("images"), tmp.path().join("masks"));
    let grey = |values: &[f32], scale: f32| {
        let bytes: Vec<u8> = values.iter().map(|&v| (v * scale).round() as u8).collect();
        image::GrayImage::from_raw(SIDE as u32, SIDE as u32, bytes).expect("buffer")
    };
    for i in 0..12 {
        let class = ["normal", "effusion"][i % 2];
        for d in [&images, &masks] {
            std::fs::create_dir_all(d.join(class)).expect("mkdir");
        }
        let (x, m) = image_and_mask(i);
        grey(&x, 255.0).save(images.join(class).join(format!("{i:02}.png"))).expect("image");
        grey(&m, 255.0).save(masks.join(class).join(format!("{i:02}.png"))).expect("mask");
    }
    let config = format!(
        "source = \"image_folder\"\ndir = \"{}\"\nmask_dir = \"{}\"\nheight = {SIDE}\nwidth = {SIDE}\ntest_fraction = 0.25",
        images.display(),
        masks.display()
    );
    assert_masks_follow_images(&DataPlan::from_config(&data(&config), "c.toml").expect("plan"));
    // A test folder without masks of its own.
    let with_test = format!("{config}\ntest_dir = \"{}\"", images.display());
    let error = DataPlan::from_config(&data(&with_test), "c.toml").expect_err("some images only").to_string();
    assert!(error.contains("data.test_mask_dir") && error.contains("only some images"), "{error}");
    // An image without its mask.
    std::fs::remove_file(masks.join("effusion").join("03.png")).expect("rm");
    let error = DataPlan::from_config(&data(&config), "c.toml").expect_err("missing").to_string();
    assert!(error.contains("no mask for image") && error.contains("03.png"), "{error}");
}
