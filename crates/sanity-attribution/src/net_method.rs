//! A method on either kind of network ([`sanity_model::Net`]), computed on the one graph walk
//! (`graph_methods.rs` over `sanity_model::graph_engine`): a sequential stack runs as its graph
//! (`Graph::from_architecture`, the same layer names), its defaults (a class activation map's
//! layer: the last convolution) written out on the stack first. The run engine, `explain` and
//! `attribute` compute every map through [`NetMethod`]. The sequential methods of `method.rs`
//! are the candle reference the walk is checked against (`tests/graph_methods.rs`).

use crate::error::{AttributionError, Result};
use crate::expected_gradients::ReferenceSet;
use crate::graph_methods::{attribute_graph_models, cam_node};
use crate::method::{MethodSpec, TunnelSpec};
use candle_core::{DType, Device, Tensor};
use sanity_model::graph::Graph;
use sanity_model::graph_engine::GraphModel;
use sanity_model::{Net, NetModel};
use std::sync::Arc;

/// A method built for one network.
pub struct NetMethod {
    spec: MethodSpec,
    seed: u64,
    /// The reference images of expected gradients.
    references: Option<ReferenceSet>,
    /// A sequential stack's graph.
    stack: Option<Arc<Graph>>,
}

impl NetMethod {
    /// `spec` for `net`, drawing from `seed` (with the reference images of expected
    /// gradients). A method the network cannot run is refused, naming it and why.
    pub fn build(spec: &MethodSpec, net: &Net, seed: u64, references: Option<&ReferenceSet>) -> Result<Self> {
        let (spec, stack) = match net {
            Net::Layers(arch) => {
                let stack = Arc::new(Graph::from_architecture(arch)?);
                (resolve_on_graph(&spec.resolved(arch)?, &stack)?, Some(stack))
            }
            Net::Graph(graph) => {
                resolve_on_graph(spec, graph)?;
                (spec.clone(), None)
            }
        };
        Ok(Self { spec, seed, references: references.cloned(), stack })
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
        let n = x.dim(0)?;
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let graphs: Vec<&Graph> = models
            .iter()
            .map(|model| match (&model.net, &self.stack) {
                (Net::Graph(graph), None) => Ok(graph.as_ref()),
                (Net::Layers(_), Some(stack)) => Ok(stack.as_ref()),
                _ => Err(self.mixed()),
            })
            .collect::<Result<_>>()?;
        let Some(&first) = graphs.first() else { return Ok(Vec::new()) };
        // The stages hold the values of the layers they share with the first model once.
        let base = GraphModel::new(first, &models[0].weights)?;
        let stages: Vec<GraphModel> = models
            .iter()
            .zip(&graphs)
            .skip(1)
            .map(|(model, graph)| GraphModel::sharing(graph, &model.weights, &base, &models[0].weights))
            .collect::<std::result::Result<_, _>>()?;
        let walks: Vec<&GraphModel> = std::iter::once(&base).chain(&stages).collect();
        let inputs = (n, targets, ids);
        let maps = attribute_graph_models(&self.spec, &walks, &values, inputs, self.seed, self.references.as_ref())?;
        maps.into_iter().map(|(maps, [c, h, w])| Ok(Tensor::from_vec(maps, (n, c, h, w), &Device::Cpu)?)).collect()
    }

    /// The raw maps of inputs `x` `[n, c, h, w]` under one `model`, explaining `targets[i]`,
    /// `batch` inputs per call (input `i`'s id is `i`): `[n, c', h, w]`, float32. What
    /// `sanity explain` and `sanity attribute` compute.
    pub fn attribute_batches(&self, model: &NetModel, x: &Tensor, targets: &[usize], batch: usize) -> Result<Tensor> {
        let n = x.dim(0)?;
        let batch = batch.max(1);
        let mut maps = Vec::with_capacity(n.div_ceil(batch));
        for start in (0..n).step_by(batch) {
            let len = batch.min(n - start);
            let ids: Vec<u64> = (start as u64..(start + len) as u64).collect();
            let inputs = x.narrow(0, start, len)?;
            maps.push(self.attribute_models(&[model], &inputs, &[&targets[start..start + len]], &ids)?.remove(0));
        }
        Ok(Tensor::cat(&maps, 0)?.to_dtype(DType::F32)?)
    }

    /// The error for a model of the other kind of network.
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
    fn a_stack_runs_as_its_graph_with_its_own_defaults_and_gives_the_candle_reference_s_maps() {
        let arch = Arc::new(Architecture::new(preset("phantom-cnn", [1, 32, 32]).expect("p")).expect("arch"));
        let weights = sanity_model::init_weights(&arch, 4).expect("init");
        let x =
            Tensor::from_vec((0..2 * 32 * 32).map(|i| (i % 13) as f32 / 13.0).collect(), (2, 1, 32, 32), &Device::Cpu)
                .expect("x");
        let net = Net::Layers(Arc::clone(&arch));
        // The stack's default CAM layer is its last convolution (the graph's own default would
        // be the last node with more than one pixel, a ReLU).
        let resolved = resolve_on(&spec(r#"{"method":"gradcam"}"#), &net).expect("resolved");
        assert_eq!(resolved, MethodSpec::Gradcam { layer: Some("conv4".into()) });
        // (LRP's reference is the walk's own relevance pass: Captum's maps check it, tests/lrp.rs.)
        for json in [r#"{"method":"gradient"}"#, r#"{"method":"gradcam"}"#, r#"{"method":"guided_backprop"}"#] {
            let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32");
            let method = NetMethod::build(&spec(json), &net, 1, None).expect("build");
            let model = NetModel::new(net.clone(), weights.clone());
            let a = flat(&method.attribute_models(&[&model], &x, &[&[0, 0]], &[0, 1]).expect("maps")[0]);
            let reference = spec(json).build(&arch, 1).expect("reference");
            let model = sanity_model::Model::new(Arc::clone(&arch), weights.clone());
            let b = flat(&reference.attribute(&model, &x, &[0, 0], &[0, 1]).expect("reference maps"));
            let diff = a.iter().zip(&b).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
            let norm = a.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!(diff <= 1e-4 * norm.max(1e-12), "{json}: relative L2 {}", diff / norm);
        }
    }

    /// The cascade's models share the forward of the layers they did not re-initialise; their
    /// maps are those of one call per model, bit for bit.
    #[test]
    fn cascade_stages_on_a_graph_share_their_first_layers_and_give_the_maps_of_one_call_each() {
        use rand::SeedableRng;
        let graph = Arc::new(graph_preset("resnet18", [1, 32, 32], 3).expect("preset"));
        let net = Net::Graph(Arc::clone(&graph));
        let original = NetModel::new(net.clone(), net.init(1).expect("init"));
        // Top-down: the head, then the last block too; bottom-up: the stem alone.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let reinit = sanity_model::Reinit::Original {};
        let head = net.reinitialize(&original.weights, "fc", &reinit, &mut rng).expect("fc");
        let mut block = head.clone();
        for layer in net.stage_layers("layer4.1").expect("block") {
            block = net.reinitialize(&block, &layer, &reinit, &mut rng).expect("layer");
        }
        let stem = net.reinitialize(&original.weights, "conv1", &reinit, &mut rng).expect("stem");
        let models: Vec<NetModel> =
            [original.weights.clone(), head, block, stem].into_iter().map(|w| original.with_weights(w)).collect();
        let base = GraphModel::new(&graph, &models[0].weights).expect("base");
        let walks: Vec<GraphModel> = models
            .iter()
            .map(|m| GraphModel::sharing(&graph, &m.weights, &base, &models[0].weights).expect("walk"))
            .collect();
        let shared: Vec<usize> = walks.iter().map(|walk| walk.shared_with(&base)).collect();
        let fc = graph.resolve("fc").expect("fc");
        assert_eq!(shared[0], graph.nodes.len());
        assert_eq!(shared[1], fc, "everything before the head is shared");
        assert!(shared[2] > 0 && shared[2] < fc, "{shared:?}");
        assert_eq!(shared[3], 0, "nothing is shared once the stem is re-drawn");
        let x = Tensor::from_vec(
            (0..3 * 32 * 32).map(|i| ((i * 37) % 101) as f32 / 101.0).collect(),
            (3, 1, 32, 32),
            &Device::Cpu,
        )
        .expect("x");
        let references = crate::ReferenceSet::from_tensor(&x).expect("references");
        let refs: Vec<&NetModel> = models.iter().collect();
        let targets: Vec<Vec<usize>> = (0..models.len()).map(|m| vec![m % 3, 1, 2]).collect();
        let target_refs: Vec<&[usize]> = targets.iter().map(Vec::as_slice).collect();
        for json in [
            r#"{"method":"gradient"}"#,
            r#"{"method":"guided_backprop"}"#,
            r#"{"method":"gradient_x_input"}"#,
            r#"{"method":"integrated_gradients","steps":5,"batch":2}"#,
            r#"{"method":"expected_gradients","samples":3,"batch":2}"#,
            r#"{"method":"smoothgrad","samples":3,"noise":0.1,"batch":2}"#,
        ] {
            let method = NetMethod::build(&spec(json), &net, 7, Some(&references)).expect("build");
            let together = method.attribute_models(&refs, &x, &target_refs, &[4, 5, 6]).expect("together");
            for (m, model) in models.iter().enumerate() {
                let alone = method.attribute_models(&[model], &x, &[target_refs[m]], &[4, 5, 6]).expect("alone");
                let bits = |t: &Tensor| -> Vec<u32> {
                    t.flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .expect("values")
                        .iter()
                        .map(|v| v.to_bits())
                        .collect()
                };
                assert_eq!(bits(&together[m]), bits(&alone[0]), "{json}, model {m}");
            }
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
