//! Attribution on a model graph (an ONNX import, a graph preset) through the graph walk
//! (`sanity_model::graph_engine`): the methods that need its forward and gradients only.
//! Each is defined as for the sequential models (docs/methods.md) and checked against Captum
//! on an imported ResNet (`tests/graph_methods.rs`):
//!
//! - `gradient`, `guided_backprop`, `deconvnet`: the input gradient of the target logit under
//!   the standard, guided or deconvnet ReLU backward;
//! - `gradient_x_input`: the input times its gradient;
//! - `integrated_gradients`: `(x − x') ⊙ Σ_k w_k ∇y(x' + α_k (x − x'))` with a zero or
//!   constant baseline x' and the quadrature rule's points and weights;
//! - `gradcam`: `ReLU(Σ_k mean(∂y/∂A_k) A_k)` at a named node (a module name is its last node:
//!   `layer4`), upsampled bilinearly (pixel centres) to the input; by default the last node
//!   whose output has more than one pixel.
//!
//! The others are refused naming the method, until the engine's walk serves them too (issue 19).

use crate::error::{AttributionError, Result};
use crate::integrated_gradients::Baseline;
use crate::method::MethodSpec;
use sanity_model::ReluMode;
use sanity_model::graph_engine::{GraphModel, backward_to, forward, input_gradient};

/// Maps of `spec` for the `n` NCHW inputs `x` of `model`, explaining output `targets[i]` of
/// input `i`: `[n, c', h, w]` values and `[c', h, w]`.
pub fn attribute_graph(
    spec: &MethodSpec,
    model: &GraphModel,
    x: &[f32],
    n: usize,
    targets: &[usize],
) -> Result<(Vec<f32>, [usize; 3])> {
    let graph = model.graph;
    let [c, h, w] = graph.input;
    let classes = graph.nodes.last().map_or(0, |node| node.shape.iter().product::<usize>());
    if targets.len() != n || targets.iter().any(|&t| t >= classes) {
        return Err(invalid(
            spec.id(),
            format!("{} targets for {n} inputs; accepted: one per input, each below {classes}", targets.len()),
        ));
    }
    let seed = |rows: usize| -> Vec<f32> {
        let mut seed = vec![0.0f32; rows * classes];
        for (row, &t) in targets.iter().cycle().take(rows).enumerate() {
            seed[row * classes + t] = 1.0;
        }
        seed
    };
    let gradient = |inputs: &[f32], rows: usize, seed: &[f32], relu: ReluMode| -> Result<Vec<f32>> {
        let fwd = forward(model, inputs, rows)?;
        Ok(input_gradient(model, &fwd, seed, relu)?)
    };
    let maps = match spec {
        MethodSpec::Gradient {} => gradient(x, n, &seed(n), ReluMode::Standard)?,
        MethodSpec::GuidedBackprop {} => gradient(x, n, &seed(n), ReluMode::Guided)?,
        MethodSpec::Deconvnet {} => gradient(x, n, &seed(n), ReluMode::Deconv)?,
        MethodSpec::GradientXInput {} => {
            let g = gradient(x, n, &seed(n), ReluMode::Standard)?;
            g.iter().zip(x).map(|(g, x)| g * x).collect()
        }
        MethodSpec::IntegratedGradients { steps, rule, baseline, .. } => {
            let reference = match baseline {
                Baseline::Zeros {} => 0.0,
                Baseline::Constant { value } => *value as f32,
                other => {
                    return Err(invalid(
                        spec.id(),
                        format!("baseline {other:?} on a model graph; accepted: zeros or constant"),
                    ));
                }
            };
            let (alphas, weights) = rule.points(*steps);
            let per = c * h * w;
            let mut maps = Vec::with_capacity(n * per);
            for (i, image) in x.chunks_exact(per).enumerate() {
                let path: Vec<f32> = alphas
                    .iter()
                    .flat_map(|&a| image.iter().map(move |&v| reference + a as f32 * (v - reference)))
                    .collect();
                let mut seeds = vec![0.0f32; alphas.len() * classes];
                for (k, &wk) in weights.iter().enumerate() {
                    seeds[k * classes + targets[i]] = wk as f32;
                }
                let grads = gradient(&path, alphas.len(), &seeds, ReluMode::Standard)?;
                let mut sum = vec![0.0f32; per];
                for g in grads.chunks_exact(per) {
                    sum.iter_mut().zip(g).for_each(|(s, g)| *s += g);
                }
                maps.extend(sum.iter().zip(image).map(|(s, v)| s * (v - reference)));
            }
            maps
        }
        MethodSpec::Gradcam { layer } => return gradcam(model, layer.as_deref(), x, n, &seed(n)),
        other => {
            return Err(invalid(
                other.id(),
                "not yet on a model graph; accepted there: gradient, gradient_x_input, integrated_gradients, guided_backprop, deconvnet, gradcam".into(),
            ));
        }
    };
    Ok((maps, [c, h, w]))
}

/// Grad-CAM at `layer` (or the last node with more than one pixel), upsampled to the input.
fn gradcam(
    model: &GraphModel,
    layer: Option<&str>,
    x: &[f32],
    n: usize,
    seed: &[f32],
) -> Result<(Vec<f32>, [usize; 3])> {
    let graph = model.graph;
    let node = match layer {
        Some(name) => graph.resolve(name)?,
        None => graph
            .nodes
            .iter()
            .rposition(|node| matches!(node.shape[..], [_, u, v] if u * v > 1))
            .ok_or_else(|| invalid("gradcam", "no node has an output of more than one pixel".into()))?,
    };
    let [k, u, v] = graph.nodes[node].shape[..] else {
        return Err(invalid(
            "gradcam",
            format!(
                "node `{}` has output {:?}; accepted: a [c, h, w] output",
                graph.nodes[node].name, graph.nodes[node].shape
            ),
        ));
    };
    let fwd = forward(model, x, n)?;
    let activation = &fwd.values[node + 1];
    let gradient = backward_to(model, &fwd, node + 1, seed, ReluMode::Standard)?;
    let [_, h, w] = graph.input;
    let p = u * v;
    let mut maps = Vec::with_capacity(n * h * w);
    for i in 0..n {
        let mut coarse = vec![0.0f64; p];
        for channel in 0..k {
            let at = (i * k + channel) * p;
            let weight = gradient[at..at + p].iter().map(|&g| f64::from(g)).sum::<f64>() / p as f64;
            coarse.iter_mut().zip(&activation[at..at + p]).for_each(|(c, &a)| *c += weight * f64::from(a));
        }
        let relu: Vec<f32> = coarse.iter().map(|&c| c.max(0.0) as f32).collect();
        maps.extend(sanity_data::resize_bilinear(&relu, u, v, h, w));
    }
    Ok((maps, [1, h, w]))
}

fn invalid(method: &'static str, reason: String) -> AttributionError {
    AttributionError::Invalid { method, reason }
}
