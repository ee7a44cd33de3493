//! Architecture TOML: any text gives a checked architecture or an error, never a panic, an
//! overflow or a huge allocation (the limits of sanity_model::architecture). A valid one is
//! asked for its weight names and the longest weights file it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanity_model::weights::{expected_shapes, max_safetensors_bytes};
use sanity_model::{Architecture, ArchitectureSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = ArchitectureSpec::from_toml_str(text, "fuzz.toml") else { return };
    if let Ok(arch) = Architecture::new(spec) {
        let _ = (expected_shapes(&arch), max_safetensors_bytes(&arch), arch.parameter_count(), arch.stages());
    }
});
