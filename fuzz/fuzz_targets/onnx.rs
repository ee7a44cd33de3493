//! ONNX models: any bytes give a checked graph with its weights, or an error, never a panic.
//! `OnnxModel::from_bytes` is what `read_onnx` calls on a file's bytes (without a folder, so
//! external data is refused rather than looked up).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanity_model::onnx::OnnxModel;

fuzz_target!(|data: &[u8]| {
    let _ = OnnxModel::from_bytes(data, "fuzz.onnx");
});
