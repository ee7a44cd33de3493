//! Attribution methods behind one trait. Each method returns the raw map; abs, channel
//! reduction, normalisation and resizing are post-processing steps (sanity-metrics).

pub mod error;
pub mod gradcam;
pub mod gradient;
pub mod method;
pub mod target;

pub use error::AttributionError;
pub use gradcam::GradCam;
pub use gradient::Gradient;
pub use method::{Attribution, MethodSpec};
