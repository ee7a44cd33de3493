//! The trait every attribution method implements, and the method choice as written in configs.

use crate::error::Result;
use crate::{GradCam, Gradient};
use candle_core::Tensor;
use sanity_model::{Architecture, Model};
use serde::{Deserialize, Serialize};

/// An attribution method: maps inputs and explained outputs to raw saliency maps.
pub trait Attribution: Send + Sync {
    /// The id used in configs and CSV (`gradient`, `gradcam`).
    fn id(&self) -> &'static str;

    /// Raw maps for inputs `x` `[n, c, h, w]` and one target output index per input.
    ///
    /// # Shapes
    /// Returns `[n, c', h, w]`: `c' = c` for input-gradient methods, `c' = 1` for CAMs.
    fn attribute(&self, model: &Model, x: &Tensor, targets: &[usize]) -> Result<Tensor>;
}

/// A method and its parameters as written in a config (`method = "gradcam"`, `layer = "conv4"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodSpec {
    /// [`Gradient`].
    Gradient {},
    /// [`GradCam`].
    Gradcam {
        /// The layer whose activations are weighted; default: the model's last conv layer.
        #[serde(default)]
        layer: Option<String>,
    },
}

impl MethodSpec {
    /// The method id.
    pub fn id(&self) -> &'static str {
        match self {
            MethodSpec::Gradient {} => "gradient",
            MethodSpec::Gradcam { .. } => "gradcam",
        }
    }

    /// Builds the method for an architecture, resolving defaults (GradCAM's layer) and
    /// checking names; errors list the valid choices.
    pub fn build(&self, arch: &Architecture) -> Result<Box<dyn Attribution>> {
        Ok(match self {
            MethodSpec::Gradient {} => Box::new(Gradient),
            MethodSpec::Gradcam { layer } => Box::new(GradCam::new(arch, layer.as_deref())?),
        })
    }

    /// The same spec with defaults filled in for `arch` (for the resolved config).
    pub fn resolved(&self, arch: &Architecture) -> Result<Self> {
        Ok(match self {
            MethodSpec::Gradient {} => self.clone(),
            MethodSpec::Gradcam { layer } => {
                let cam = GradCam::new(arch, layer.as_deref())?;
                MethodSpec::Gradcam {
                    layer: Some(arch.layers[cam.layer_index].name.clone()),
                }
            }
        })
    }
}
