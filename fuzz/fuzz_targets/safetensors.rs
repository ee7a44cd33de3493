//! Weights files: any bytes give weights or an error, never a panic or an allocation by a
//! header's word. `from_safetensors_bytes` is what `Weights::load_safetensors` calls on a file's
//! bytes; the architecture is fixed (fuzz/safetensors_arch.toml), so that valid files get past
//! the header into the name, shape, dtype and finiteness checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanity_model::{Architecture, ArchitectureSpec, Weights};
use std::sync::LazyLock;

static ARCH: LazyLock<Architecture> = LazyLock::new(|| {
    let spec = ArchitectureSpec::from_toml_str(include_str!("../safetensors_arch.toml"), "safetensors_arch.toml")
        .expect("the fixed architecture parses");
    Architecture::new(spec).expect("the fixed architecture is valid")
});

fuzz_target!(|data: &[u8]| {
    let _ = Weights::from_safetensors_bytes(data, "fuzz.safetensors", &ARCH);
});
