//! IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed: any bytes give an array or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = sanity_data::idx::parse_idx(data, Path::new("fuzz.idx"));
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut bytes = Vec::new();
        // As read_idx does, bounded so that a gzip bomb does not stop the fuzzer.
        if flate2::read::GzDecoder::new(data).take(1 << 24).read_to_end(&mut bytes).is_ok() {
            let _ = sanity_data::idx::parse_idx(&bytes, Path::new("fuzz.idx.gz"));
        }
    }
});
