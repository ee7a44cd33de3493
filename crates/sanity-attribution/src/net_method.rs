//! A method on either kind of network ([`sanity_model::Net`]): the sequential methods
//! (`method.rs`) on a sequential stack, the graph methods (`graph_methods.rs`) on a model
//! graph. The run engine computes every map through [`NetMethod`]; the methods are defined
//! once for both (docs/methods.md) and give the same maps on the presets as graphs
//! (`tests/graph_methods.rs`).

use crate::error::{AttributionError, Result};
use crate::expected_gradients::ReferenceSet;
use crate::graph_methods::{attribute_graph_with, cam_node};
use crate::method::{Attribution, MethodSpec, TunnelSpec};
use candle_core::{DType, Device, Tensor};
use sanity_model::graph::Graph;
use sanity_model::graph_engine::GraphModel;
use sanity_model::{Net, NetModel};

/// A method built for one network.
pub struct NetMethod {
    spec: MethodSpec,
    seed: u64,
    /// The reference images of expected gradients, for the graph methods.
    references: Option<ReferenceSet>,
    /// The sequential method, on a sequential stack.
    sequential: Option<Box<dyn Attribution>>,
}

impl NetMethod {
    /// `spec` for `net`, drawing from `seed` (with the reference images of expected gradients
    /// on a sequential stack). A method that has no graph form is refused on a graph, naming it.
    pub fn build(spec: &MethodSpec, net: &Net, seed: u64, references: Option<&ReferenceSet>) -> Result<Self> {
        let sequential = match net {
            Net::Layers(arch) => Some(spec.build_with(arch, seed, references)?),
            Net::Graph(graph) => {
                resolve_on_graph(spec, graph)?;
                None
            }
        };
        Ok(Self { spec: spec.clone(), seed, references: references.cloned(), sequential })
    }

    /// The method's id.
    pub fn id(&self) -> &'static str {
        self.spec.id()
    }

    /// The raw maps of inputs `x` `[n, c, h, w]` under each of `models` (one network), with
    /// `targets[m]` for `models[m]` and one stable id per input: `[n, c', h, w]` per model.
    pub fn attribute_models(
        &self,
        models: &[&NetModel],
        x: &Tensor,
        targets: &[&[usize]],
        ids: &[u64],
    ) -> Result<Vec<Tensor>> {
        if let Some(method) = &self.sequential {
            let sequential: Vec<sanity_model::Model> =
                models.iter().map(|m| m.sequential().ok_or_else(|| self.mixed())).collect::<Result<_>>()?;
            let refs: Vec<&sanity_model::Model> = sequential.iter().collect();
            return method.attribute_models(&refs, x, targets, ids);
        }
        let n = x.dim(0)?;
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        models
            .iter()
            .zip(targets)
            .map(|(model, targets)| {
                let Net::Graph(graph) = &model.net else { return Err(self.mixed()) };
                let walk = GraphModel::new(graph, &model.weights)?;
                let inputs = (n, *targets, ids);
                let references = self.references.as_ref();
                let (maps, [c, h, w]) =
                    attribute_graph_with(&self.spec, &walk, &values, inputs, self.seed, references)?;
                Ok(Tensor::from_vec(maps, (n, c, h, w), &Device::Cpu)?)
            })
            .collect()
    }

    fn mixed(&self) -> AttributionError {
        AttributionError::Invalid {
            method: self.spec.id(),
            reason: "models of another kind of network than the method was built for".into(),
        }
    }
}

/// `spec` with its defaults written out for `net` (a class activation map's layer), checked
/// against the network: its layer exists, its parameters fit the input, and on a graph its
/// baseline has a graph form and LRP has a rule for every node.
pub fn resolve_on(spec: &MethodSpec, net: &Net) -> Result<MethodSpec> {
    match net {
        Net::Layers(arch) => spec.resolved(arch),
        Net::Graph(graph) => resolve_on_graph(spec, graph),
    }
}

fn resolve_on_graph(spec: &MethodSpec, graph: &Graph) -> Result<MethodSpec> {
    spec.validate_for_input(graph.input)?;
    let layer_of = |layer: &Option<String>| -> Result<Option<String>> {
        let node = cam_node(graph, layer.as_deref(), spec.id())?;
        Ok(Some(layer.clone().unwrap_or_else(|| graph.nodes[node].name.clone())))
    };
    let tunnel = |t: &TunnelSpec| -> Result<TunnelSpec> {
        Ok(TunnelSpec { inner: Box::new(resolve_on_graph(&t.inner, graph)?), ..t.clone() })
    };
    Ok(match spec {
        MethodSpec::IntegratedGradients { baseline, .. }
            if !matches!(baseline, crate::Baseline::Zeros {} | crate::Baseline::Constant { .. }) =>
        {
            return Err(AttributionError::Invalid {
                method: spec.id(),
                reason: format!("baseline {baseline:?} on a model graph; accepted: zeros or constant"),
            });
        }
        MethodSpec::LrpEpsilon { .. } | MethodSpec::LrpAlphaBeta { .. } => {
            sanity_model::graph_lrp::check(graph)
                .map_err(|err| AttributionError::Invalid { method: spec.id(), reason: err.to_string() })?;
            spec.clone()
        }
        MethodSpec::Gradcam { layer } => MethodSpec::Gradcam { layer: layer_of(layer)? },
        MethodSpec::GuidedGradcam { layer } => MethodSpec::GuidedGradcam { layer: layer_of(layer)? },
        MethodSpec::GradcamPlusPlus { layer } => MethodSpec::GradcamPlusPlus { layer: layer_of(layer)? },
        MethodSpec::Xgradcam { layer } => MethodSpec::Xgradcam { layer: layer_of(layer)? },
        MethodSpec::Layercam { layer } => MethodSpec::Layercam { layer: layer_of(layer)? },
        MethodSpec::Scorecam { layer } => MethodSpec::Scorecam { layer: layer_of(layer)? },
        MethodSpec::Smoothgrad(t) => MethodSpec::Smoothgrad(tunnel(t)?),
        MethodSpec::SmoothgradSquared(t) => MethodSpec::SmoothgradSquared(tunnel(t)?),
        MethodSpec::Vargrad(t) => MethodSpec::Vargrad(tunnel(t)?),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanity_model::graph::{GraphOp, NodeSpec};
    use sanity_model::graph_presets::graph_preset;
    use sanity_model::{Architecture, preset};
    use std::sync::Arc;

    fn spec(json: &str) -> MethodSpec {
        serde_json::from_str(json).expect("spec")
    }

    fn node(name: &str, op: GraphOp, input: usize) -> NodeSpec {
        NodeSpec { name: name.into(), op, inputs: vec![input] }
    }

    #[test]
    fn a_method_gives_the_same_maps_on_a_stack_and_on_its_graph() {
        let arch = Arc::new(Architecture::new(preset("phantom-cnn", [1, 32, 32]).expect("p")).expect("arch"));
        let graph = Arc::new(Graph::from_architecture(&arch).expect("graph"));
        let weights = sanity_model::init_weights(&arch, 4).expect("init");
        let x =
            Tensor::from_vec((0..2 * 32 * 32).map(|i| (i % 13) as f32 / 13.0).collect(), (2, 1, 32, 32), &Device::Cpu)
                .expect("x");
        for json in [r#"{"method":"gradient"}"#, r#"{"method":"gradcam"}"#] {
            // The stack's default layer (its last conv), named for both.
            let resolved = resolve_on(&spec(json), &Net::Layers(Arc::clone(&arch))).expect("resolved");
            let maps = |net: Net| -> Vec<f32> {
                let method = NetMethod::build(&resolved, &net, 1, None).expect("build");
                let model = NetModel::new(net, weights.clone());
                let out = method.attribute_models(&[&model], &x, &[&[0, 0]], &[0, 1]).expect("maps");
                out[0].flatten_all().expect("flat").to_vec1::<f32>().expect("f32")
            };
            let (a, b) = (maps(Net::Layers(Arc::clone(&arch))), maps(Net::Graph(Arc::clone(&graph))));
            let diff = a.iter().zip(&b).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
            let norm = a.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!(diff <= 1e-4 * norm.max(1e-12), "{json}: relative L2 {}", diff / norm);
        }
    }

    #[test]
    fn a_graph_refuses_what_it_cannot_run_and_names_its_default_cam_layer() {
        let net = Net::Graph(Arc::new(graph_preset("resnet18", [1, 32, 32], 10).expect("preset")));
        resolve_on(&spec(r#"{"method":"lrp_epsilon"}"#), &net).expect("LRP on a ResNet: its batch norms merge");
        let gelu = Graph::new(
            [1, 4, 4],
            vec![
                node("flat", GraphOp::Flatten, 0),
                node("act", GraphOp::Gelu, 1),
                node("fc", GraphOp::Linear { in_features: 16, out_features: 2, bias: true }, 2),
            ],
        )
        .expect("graph");
        let err = resolve_on(&spec(r#"{"method":"lrp_alpha_beta"}"#), &Net::Graph(Arc::new(gelu))).expect_err("gelu");
        assert!(err.to_string().contains("lrp_alpha_beta") && err.to_string().contains("act"), "{err}");
        let resolved = resolve_on(&spec(r#"{"method":"gradcam"}"#), &net).expect("gradcam");
        assert_eq!(resolved, MethodSpec::Gradcam { layer: Some("layer3.1.relu_1".into()) }, "the last 2x2 node");
        let err = resolve_on(&spec(r#"{"method":"gradcam","layer":"layer9"}"#), &net).expect_err("no layer9");
        assert!(err.to_string().contains("layer9"), "{err}");
    }
}
