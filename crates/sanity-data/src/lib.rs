//! Datasets for the sanity checks: the synthetic chest-radiograph phantom (the embedded
//! default), Fashion-MNIST IDX files, NumPy arrays, seeded random streams, and plain-Rust image
//! helpers. No candle types in the API.

pub mod arrays;
pub mod dataset;
pub mod error;
pub mod filter;
pub mod folder;
pub mod idx;
pub mod masks;
pub mod npy;
pub mod phantom;
pub mod resize;
pub mod rng;

pub use arrays::{Scale, load_arrays, rows_of, split, split_indices};
pub use dataset::Dataset;
pub use error::DataError;
pub use filter::{correlate_separable, gaussian_blur, gaussian_taps, reflect};
pub use folder::load_image_folder;
pub use idx::{Split, fashion_mnist};
pub use masks::{load_mask_folder, masks_from_array};
pub use phantom::{PhantomSpec, generate_phantoms};
pub use resize::{resize_bilinear, resize_bilinear_align_corners, resize_nearest};
pub use rng::{fnv1a, stream_rng};
