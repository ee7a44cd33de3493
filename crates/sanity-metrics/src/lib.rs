//! Map post-processing and similarity metrics in plain Rust (no candle), numerically faithful to
//! scipy and scikit-image. Degenerate inputs give a [`Status`], never a silent NaN.

pub mod entropy;
pub mod hog;
pub mod localisation;
pub mod map;
pub mod metric;
pub mod postprocess;
pub mod rank;
pub mod registry;
pub mod ssim;
pub mod vector;

pub use entropy::discrete_entropy;
pub use hog::{HogParams, hog_features};
pub use localisation::{LocalisationSpec, Mask};
pub use map::Map;
pub use metric::{MetricSpec, Reference, Score, Status, score_both};
pub use postprocess::{Normalization, PostStep, Reduce, apply_all, pipeline_label, reduce_channels};
pub use rank::{average_ranks, kendall_tau_b, pearson, spearman};
pub use registry::{METRICS, MetricInfo};
pub use ssim::{SsimParams, SsimWindow, ssim};
pub use vector::{cosine, mse, top_k_indices, top_k_overlap};
