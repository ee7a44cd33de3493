//! IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed: any bytes give an array or an
//! error, never a panic. `decode_idx` is what `read_idx` calls on a file's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = sanity_data::idx::decode_idx(data, Path::new("fuzz.idx"));
});
