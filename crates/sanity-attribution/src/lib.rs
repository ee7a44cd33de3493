//! Attribution methods behind one trait. Each method returns the raw map; abs, channel
//! reduction, normalisation and resizing are post-processing steps (sanity-metrics).

pub mod controls;
pub mod error;
pub mod expected_gradients;
pub mod gradcam;
pub mod gradient;
pub mod graph_methods;
pub mod guided_backprop;
pub mod guided_gradcam;
pub mod input_gradient;
pub mod integrated_gradients;
pub mod lrp;
pub mod method;
pub mod net_method;
pub mod noise_tunnel;
pub mod occlusion;
pub mod registry;
pub mod target;

pub use controls::{RandomMap, Sobel};
pub use error::AttributionError;
pub use expected_gradients::{ExpectedGradients, ReferenceSet};
pub use gradcam::{Cam, CamKind, GradCam};
pub use gradient::{Gradient, GradientXInput};
pub use guided_backprop::{Deconvnet, GuidedBackprop};
pub use guided_gradcam::GuidedGradCam;
pub use integrated_gradients::{Baseline, IntegratedGradients, Rule};
pub use lrp::Lrp;
pub use method::{Attribution, MethodSpec, TunnelSpec};
pub use net_method::{NetMethod, resolve_on};
pub use noise_tunnel::{Aggregate, NoiseTunnel};
pub use occlusion::Occlusion;
pub use registry::{METHODS, MethodInfo};
