//! NPY arrays and NPZ archives: any bytes give an array or an error, never a panic or an
//! out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sanity_data::npy::parse_npy(data, "fuzz.npy");
    if let Ok(member) = sanity_data::npy::npz_member(data, "images", "fuzz.npz") {
        let _ = sanity_data::npy::parse_npy(&member, "fuzz.npz:images");
    }
});
