//! NPY / NPZ data sets against files numpy wrote (scripts/golden/npz_fixtures.py).

use sanity_data::npy::read_array;
use sanity_data::{Scale, load_arrays, split};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn npy_npz_and_compressed_npz_give_the_same_data_set() {
    let plain = load_arrays(&fixture("images.npy"), &fixture("labels.npy"), None, Scale::Auto, None).expect("npy");
    assert_eq!((plain.len(), plain.image_shape, plain.num_classes), (6, [1, 5, 4], 2));
    assert_eq!(plain.labels, [0, 1, 1, 0, 1, 0]);
    let npz =
        load_arrays(&fixture("xrays.npz:images"), &fixture("xrays.npz:labels"), None, Scale::Auto, None).expect("npz");
    assert_eq!(npz, plain);
    // savez_compressed (deflate) of the images as uint8: auto scaling divides by 255.
    let compressed = load_arrays(
        &fixture("xrays_compressed.npz:images"),
        &fixture("xrays_compressed.npz:labels"),
        None,
        Scale::Auto,
        None,
    )
    .expect("compressed npz");
    for (a, b) in compressed.images.iter().zip(&plain.images) {
        assert!((a - (b * 255.0).floor() / 255.0).abs() < 1e-6, "{a} vs {b}");
    }
    let fortran = read_array(&fixture("images_fortran.npy")).expect("fortran");
    let c_order = read_array(&fixture("images_fortran_c.npy")).expect("c");
    assert_eq!((fortran.shape.clone(), fortran.values), (c_order.shape, c_order.values));
}

#[test]
fn bad_arrays_are_refused_with_the_file_and_what_is_accepted() {
    let missing = load_arrays(&fixture("xrays.npz:pixels"), &fixture("labels.npy"), None, Scale::Auto, None);
    assert!(missing.expect_err("no key").to_string().contains("the archive has: images, labels"));
    let mismatch = load_arrays(&fixture("images_fortran.npy"), &fixture("labels.npy"), None, Scale::Auto, None);
    let message = mismatch.expect_err("3 images, 6 labels").to_string();
    assert!(message.contains("labels.npy") && message.contains("expected [3]"), "{message}");
    let labels_as_images = load_arrays(&fixture("labels.npy"), &fixture("labels.npy"), None, Scale::Auto, None);
    assert!(labels_as_images.expect_err("1-d").to_string().contains("N x H x W"));
    let too_few_classes = load_arrays(&fixture("images.npy"), &fixture("labels.npy"), None, Scale::Auto, Some(1));
    assert!(too_few_classes.is_ok(), "at least two classes are always assumed");
    let whole_npz = load_arrays(&fixture("xrays.npz"), &fixture("labels.npy"), None, Scale::Auto, None);
    assert!(whole_npz.expect_err("no key").to_string().contains("FILE.npz:KEY"));
}

#[test]
fn the_split_is_stratified_deterministic_and_disjoint() {
    let data = load_arrays(&fixture("images.npy"), &fixture("labels.npy"), None, Scale::None, None).expect("npy");
    let (train, test) = split(&data, 0.34, 3).expect("split");
    assert_eq!((train.len(), test.len()), (4, 2));
    assert_eq!(test.labels.iter().filter(|&&l| l == 1).count(), 1, "one of each class: {:?}", test.labels);
    assert_eq!(split(&data, 0.34, 3).expect("again"), (train.clone(), test.clone()));
    let mut all: Vec<f32> = train.images.iter().chain(&test.images).copied().collect();
    let mut original = data.images.clone();
    all.sort_by(f32::total_cmp);
    original.sort_by(f32::total_cmp);
    assert_eq!(all, original, "every image in exactly one set");
    assert!(split(&data, 1.0, 3).is_err() && split(&data, 0.0, 3).is_err());
}
