//! Attribution on a model graph (an ONNX import, a graph preset) through the graph walk
//! (`sanity_model::graph_engine`): the methods that need its forward and gradients only.
//! Each is defined as for the sequential models (docs/methods.md) and checked against Captum
//! on an imported ResNet (`tests/graph_methods.rs`):
//!
//! - `gradient`, `guided_backprop`, `deconvnet`: the input gradient of the target logit under
//!   the standard, guided or deconvnet ReLU backward;
//! - `gradient_x_input`: the input times its gradient;
//! - `integrated_gradients`: `(x − x') ⊙ Σ_k w_k ∇y(x' + α_k (x − x'))` with the baseline x'
//!   (zeros, a constant, uniform noise, the blurred input) and the quadrature rule's points and
//!   weights;
//! - `gradcam`, `gradcam_plus_plus`, `xgradcam`, `layercam`, `scorecam`: the class activation
//!   maps as for the sequential models (`gradcam.rs`'s weights) at a named node (a module name
//!   is its last node: `layer4`), upsampled bilinearly (pixel centres) to the input; by default
//!   the last node whose output has more than one pixel;
//! - `smoothgrad`, `smoothgrad_squared`, `vargrad`: the inner method's maps of noisy copies
//!   (`noise_tunnel.rs`'s), aggregated; SmoothGrad of a plain gradient takes its mean inside the
//!   backward, as integrated gradients' sums;
//! - `occlusion`: the mean drop of the target logit under the patches covering each pixel
//!   (`occlusion.rs`, on the graph's forward).
//!
//! - `expected_gradients`: the sequential method's Monte Carlo pairs over the reference images
//!   (`expected_gradients.rs`).
//!
//! - `lrp_epsilon`, `lrp_alpha_beta`: `lrp.rs`'s rules on the graph (`graph_lrp.rs`: batch
//!   norms merged into the layer before them, residual adds split in proportion to their
//!   inputs); a graph with an op that has no rule is refused naming the node.

use crate::controls::{RandomMap, sobel_plane};
use crate::error::{AttributionError, Result};
use crate::expected_gradients::{ReferenceSet, draws};
use crate::gradcam::{CamKind, gradcam_weight, plus_plus_weight, score_weights, weighted_sum, xgradcam_weight};
use crate::input_gradient::aligned_chunks;
use crate::integrated_gradients::Baseline;
use crate::method::{MethodSpec, TunnelSpec};
use crate::noise_tunnel::{copy_id, noisy_copies};
use crate::occlusion::Occlusion;
use sanity_model::graph::Graph;
use sanity_model::graph_engine::{
    GraphModel, backward_to, forward, forward_for_gradient, forward_from, input_gradient, input_gradient_sums, to_nchw,
};
use sanity_model::{LrpRule, ReluMode, graph_lrp};

/// Maps of `spec` for the `n` NCHW inputs `x` of `model`, explaining output `targets[i]` of
/// input `i` (whose id `ids[i]` seeds its random draws, with the run's `run_seed`):
/// `[n, c', h, w]` values and `[c', h, w]`.
pub fn attribute_graph(
    spec: &MethodSpec,
    model: &GraphModel,
    x: &[f32],
    (n, targets, ids): (usize, &[usize], &[u64]),
    run_seed: u64,
) -> Result<(Vec<f32>, [usize; 3])> {
    attribute_graph_with(spec, model, x, (n, targets, ids), run_seed, None)
}

/// [`attribute_graph`] with the reference images of expected gradients (also inside a noise
/// tunnel).
pub fn attribute_graph_with(
    spec: &MethodSpec,
    model: &GraphModel,
    x: &[f32],
    (n, targets, ids): (usize, &[usize], &[u64]),
    run_seed: u64,
    references: Option<&ReferenceSet>,
) -> Result<(Vec<f32>, [usize; 3])> {
    let mut maps = attribute_graph_models(spec, &[model], x, (n, &[targets], ids), run_seed, references)?;
    Ok(maps.remove(0))
}

/// [`attribute_graph_with`] under each of `models` (the original and its cascade stages: one
/// graph), with `targets[m]` for `models[m]`: the same maps as one call per model, bit for bit.
/// The gradient methods evaluate the first nodes that a model shares with `models[0]`
/// (`GraphModel::sharing`, `GraphModel::shared_with`) once per pass for all models
/// (`graph_engine::forward_from`).
pub fn attribute_graph_models(
    spec: &MethodSpec,
    models: &[&GraphModel],
    x: &[f32],
    (n, targets, ids): (usize, &[&[usize]], &[u64]),
    run_seed: u64,
    references: Option<&ReferenceSet>,
) -> Result<Vec<(Vec<f32>, [usize; 3])>> {
    if models.len() != targets.len() {
        return Err(invalid(spec.id(), format!("{} target lists for {} models", targets.len(), models.len())));
    }
    for (model, targets) in models.iter().zip(targets) {
        check_inputs(spec, model, n, targets, ids)?;
    }
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    let shape = first.graph.input;
    let relu = match spec {
        MethodSpec::Gradient {} | MethodSpec::GradientXInput {} => ReluMode::Standard,
        MethodSpec::GuidedBackprop {} => ReluMode::Guided,
        MethodSpec::Deconvnet {} => ReluMode::Deconv,
        MethodSpec::IntegratedGradients { steps, rule, baseline, batch } => {
            let maps = integrated_gradients(models, x, (targets, ids), (*steps, *rule, baseline, *batch), run_seed)?;
            return Ok(maps.into_iter().map(|m| (m, shape)).collect());
        }
        MethodSpec::ExpectedGradients { samples, batch } => {
            let maps = expected_gradients(models, x, (targets, ids), (*samples, *batch, run_seed), references)?;
            return Ok(maps.into_iter().map(|m| (m, shape)).collect());
        }
        MethodSpec::Smoothgrad(tunnel) if gradient_rule(&tunnel.inner).is_some() => {
            let relu = gradient_rule(&tunnel.inner).unwrap_or(ReluMode::Standard);
            let maps = smoothgrad_means(models, x, (targets, ids), (tunnel, relu), run_seed)?;
            return Ok(maps.into_iter().map(|m| (m, shape)).collect());
        }
        _ => {
            let each = |model: &&GraphModel, targets: &&[usize]| {
                attribute_one(spec, model, x, (n, targets, ids), run_seed, references)
            };
            return models.iter().zip(targets).map(|(m, t)| each(m, t)).collect();
        }
    };
    let seeds: Vec<Vec<f32>> = targets.iter().map(|t| one_hot(t, 1.0, logits(first))).collect();
    let grads = shared_gradients(models, x, n, &seeds, relu)?;
    Ok(grads
        .into_iter()
        .map(|g| match spec {
            MethodSpec::GradientXInput {} => (g.iter().zip(x).map(|(g, x)| g * x).collect(), shape),
            _ => (g, shape),
        })
        .collect())
}

/// The input gradients of the `rows` inputs `x` under each model for its `seeds`, with ReLU
/// backward `relu`; the nodes a model shares with `models[0]` take `models[0]`'s forward's values.
fn shared_gradients(
    models: &[&GraphModel],
    x: &[f32],
    rows: usize,
    seeds: &[Vec<f32>],
    relu: ReluMode,
) -> Result<Vec<Vec<f32>>> {
    shared_gradient_sums(models, x, rows, seeds, relu, None)
}

/// [`shared_gradients`], summed over runs of `segments[s]` consecutive inputs when given
/// (`graph_engine::input_gradient_sums`).
fn shared_gradient_sums(
    models: &[&GraphModel],
    x: &[f32],
    rows: usize,
    seeds: &[Vec<f32>],
    relu: ReluMode,
    segments: Option<&[usize]>,
) -> Result<Vec<Vec<f32>>> {
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    // The first model's forward keeps what the gradients read and what the other models'
    // forwards take from it: the values their first own nodes read.
    let nodes = &first.graph.nodes;
    let shared: Vec<usize> = models.iter().map(|model| model.shared_with(first)).collect();
    let mut keep = vec![false; nodes.len() + 1];
    for &shared in &shared[1..] {
        for node in &nodes[shared.min(nodes.len())..] {
            node.inputs.iter().filter(|&&v| v <= shared).for_each(|&v| keep[v] = true);
        }
    }
    let base = forward_for_gradient(first, x, rows, &keep)?;
    let mut out = Vec::with_capacity(models.len());
    for (m, ((&model, &shared), seed)) in models.iter().zip(&shared).zip(seeds).enumerate() {
        let fwd = if m == 0 { None } else { Some(forward_from(model, &base, shared, true)?) };
        let fwd = fwd.as_ref().unwrap_or(&base);
        out.push(match segments {
            Some(segments) => input_gradient_sums(model, fwd, seed, relu, segments)?,
            None => input_gradient(model, fwd, seed, relu)?,
        });
    }
    Ok(out)
}

/// The ReLU backward of a method that is a plain input gradient (gradient, guided backprop,
/// deconvnet), whose SmoothGrad is a mean taken inside the backward.
fn gradient_rule(spec: &MethodSpec) -> Option<ReluMode> {
    match spec {
        MethodSpec::Gradient {} => Some(ReluMode::Standard),
        MethodSpec::GuidedBackprop {} => Some(ReluMode::Guided),
        MethodSpec::Deconvnet {} => Some(ReluMode::Deconv),
        _ => None,
    }
}

/// The number of outputs of `model`.
fn logits(model: &GraphModel) -> usize {
    model.graph.nodes.last().map_or(0, |node| node.shape.iter().product::<usize>())
}

/// `[targets.len(), classes]` rows, `value` at each row's target.
fn one_hot(targets: &[usize], value: f32, classes: usize) -> Vec<f32> {
    let mut seed = vec![0.0f32; targets.len() * classes];
    targets.iter().enumerate().for_each(|(row, &t)| seed[row * classes + t] = value);
    seed
}

/// Refuses inputs the method cannot take: a spec that does not fit the input, ids or targets
/// not one per input, a target beyond the outputs.
fn check_inputs(spec: &MethodSpec, model: &GraphModel, n: usize, targets: &[usize], ids: &[u64]) -> Result<()> {
    spec.validate_for_input(model.graph.input)?;
    if ids.len() != n {
        return Err(invalid(spec.id(), format!("{} ids for {n} inputs; give one id per input", ids.len())));
    }
    let classes = logits(model);
    if targets.len() != n || targets.iter().any(|&t| t >= classes) {
        return Err(invalid(
            spec.id(),
            format!("{} targets for {n} inputs; accepted: one per input, each below {classes}", targets.len()),
        ));
    }
    Ok(())
}

/// One model's maps of the methods that share no pass across models.
// Long: one arm per method, the larger ones in their own functions.
fn attribute_one(
    spec: &MethodSpec,
    model: &GraphModel,
    x: &[f32],
    (n, targets, ids): (usize, &[usize], &[u64]),
    run_seed: u64,
    references: Option<&ReferenceSet>,
) -> Result<(Vec<f32>, [usize; 3])> {
    let graph = model.graph;
    let [c, h, w] = graph.input;
    let classes = logits(model);
    let seed = one_hot(targets, 1.0, classes);
    let maps = match spec {
        MethodSpec::Gradient {}
        | MethodSpec::GuidedBackprop {}
        | MethodSpec::Deconvnet {}
        | MethodSpec::GradientXInput {}
        | MethodSpec::IntegratedGradients { .. }
        | MethodSpec::ExpectedGradients { .. } => {
            // Not reached from attribute_graph_models, which runs these for all models at once;
            // kept so that this function answers every method for one model.
            let one = attribute_graph_models(spec, &[model], x, (n, &[targets], ids), run_seed, references);
            return one.map(|mut maps| maps.remove(0));
        }
        MethodSpec::Gradcam { layer } => return cam(CamKind::GradCam, model, layer.as_deref(), x, n, targets),
        MethodSpec::GradcamPlusPlus { layer } => {
            return cam(CamKind::GradCamPlusPlus, model, layer.as_deref(), x, n, targets);
        }
        MethodSpec::Xgradcam { layer } => return cam(CamKind::XGradCam, model, layer.as_deref(), x, n, targets),
        MethodSpec::Layercam { layer } => return cam(CamKind::LayerCam, model, layer.as_deref(), x, n, targets),
        MethodSpec::Scorecam { layer } => return cam(CamKind::ScoreCam, model, layer.as_deref(), x, n, targets),
        MethodSpec::Smoothgrad(tunnel) | MethodSpec::SmoothgradSquared(tunnel) | MethodSpec::Vargrad(tunnel) => {
            return noise_tunnel(spec, tunnel, model, x, (n, targets, ids), (run_seed, references));
        }
        MethodSpec::GuidedGradcam { layer } => {
            let guided = shared_gradients(&[model], x, n, &[seed], ReluMode::Guided)?.remove(0);
            let (cams, _) = cam(CamKind::GradCam, model, layer.as_deref(), x, n, targets)?;
            let plane = h * w;
            guided.iter().enumerate().map(|(i, g)| g * cams[(i / (c * plane)) * plane + i % plane]).collect()
        }
        MethodSpec::RandomMap {} => RandomMap { seed: run_seed }.maps(ids, c * h * w),
        MethodSpec::Sobel {} => x
            .chunks_exact(h * w)
            .flat_map(|plane| {
                let plane: Vec<f64> = plane.iter().map(|&v| f64::from(v)).collect();
                sobel_plane(&plane, h, w).into_iter().map(|v| v as f32)
            })
            .collect(),
        MethodSpec::Occlusion { window, stride, baseline, batch } => {
            let occlusion = Occlusion { window: *window, stride: *stride, baseline: *baseline, batch: *batch };
            let logits = |images: Vec<f32>, rows: usize| -> Result<Vec<f64>> {
                Ok(forward(model, &images, rows)?.output().iter().map(|&v| f64::from(v)).collect())
            };
            occlusion.maps(x, [c, h, w], targets, classes, logits)?.into_iter().map(|v| v as f32).collect()
        }
        MethodSpec::LrpEpsilon { epsilon } => graph_lrp::relevance(model, x, n, &seed, LrpRule::Epsilon(*epsilon))?,
        MethodSpec::LrpAlphaBeta { alpha, beta } => {
            graph_lrp::relevance(model, x, n, &seed, LrpRule::AlphaBeta { alpha: *alpha, beta: *beta })?
        }
    };
    Ok((maps, [c, h, w]))
}

/// Integrated gradients under each model, as `integrated_gradients.rs` defines them: the
/// baseline x' of each input (its id seeds a uniform one), the rule's points
/// `x' + α_k (x − x')` in f64 and their weighted gradient sums `Σ_k w_k ∇`
/// ([`weighted_gradient_sums`]); the map is `(x − x') ⊙ Σ`.
fn integrated_gradients(
    models: &[&GraphModel],
    x: &[f32],
    (targets, ids): (&[&[usize]], &[u64]),
    (steps, rule, baseline, batch): (usize, crate::integrated_gradients::Rule, &Baseline, usize),
    seed: u64,
) -> Result<Vec<Vec<f32>>> {
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    let [c, h, w] = first.graph.input;
    let per = c * h * w;
    let n = x.len() / per;
    let method = crate::IntegratedGradients { steps, rule, baseline: baseline.clone(), batch, seed };
    let input = candle_core::Tensor::from_slice(x, (n, c, h, w), &candle_core::Device::Cpu)?;
    let reference = method.baseline_of(&input, ids)?.flatten_all()?.to_vec1::<f32>()?;
    let delta: Vec<f32> = x.iter().zip(&reference).map(|(x, b)| x - b).collect();
    let (alphas, weights) = rule.points(steps);
    let fill = |i: usize, k: usize, path: &mut Vec<f32>| {
        let (b, d) = (&reference[i * per..(i + 1) * per], &delta[i * per..(i + 1) * per]);
        path.extend(b.iter().zip(d).map(|(&b, &d)| (f64::from(b) + alphas[k] * f64::from(d)) as f32));
    };
    let sums =
        weighted_gradient_sums(models, (n, per), targets, (steps, batch), ReluMode::Standard, fill, |k| weights[k])?;
    Ok(sums.into_iter().map(|sum| sum.iter().zip(&delta).map(|(&s, &d)| d * s as f32).collect()).collect())
}

/// `Σ_k w_k ∇ logit_{t_i}(p_ik)` for each of the `n` inputs (`per` values each) over its
/// `per_input` points (`fill(i, k, path)` appends `p_ik`, `weight(k)` gives `w_k`) under each
/// model with ReLU backward `relu`: per model `[n, per]` as f64. The points go `batch` at a time
/// in chunks of whole inputs (`input_gradient::aligned_chunks`, as the sequential methods'
/// `weighted_gradient_sums`), the weights in the backward's seeds and each input's sum taken
/// inside the backward (`graph_engine::input_gradient_sums`); chunks add up in f64. The loop of
/// integrated gradients and SmoothGrad.
fn weighted_gradient_sums(
    models: &[&GraphModel],
    (n, per): (usize, usize),
    targets: &[&[usize]],
    (per_input, batch): (usize, usize),
    relu: ReluMode,
    mut fill: impl FnMut(usize, usize, &mut Vec<f32>),
    weight: impl Fn(usize) -> f64,
) -> Result<Vec<Vec<f64>>> {
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    let classes = logits(first);
    let mut sums = vec![vec![0.0f64; n * per]; models.len()];
    for chunk in aligned_chunks(n, per_input, batch.max(1)) {
        let mut path = Vec::new();
        let mut seeds = vec![Vec::new(); models.len()];
        for (i, ks) in &chunk {
            for k in ks.clone() {
                fill(*i, k, &mut path);
            }
            for (seed, targets) in seeds.iter_mut().zip(targets) {
                for k in ks.clone() {
                    seed.extend(one_hot(&[targets[*i]], weight(k) as f32, classes));
                }
            }
        }
        let segments: Vec<usize> = chunk.iter().map(|(_, ks)| ks.len()).collect();
        let rows = segments.iter().sum();
        let grads = shared_gradient_sums(models, &path, rows, &seeds, relu, Some(&segments))?;
        for (sums, grads) in sums.iter_mut().zip(grads) {
            for (g, (i, _)) in grads.chunks_exact(per).zip(&chunk) {
                sums[i * per..(i + 1) * per].iter_mut().zip(g).for_each(|(s, &v)| *s += f64::from(v));
            }
        }
    }
    Ok(sums)
}

/// SmoothGrad of a plain gradient (gradient, guided backprop, deconvnet: ReLU backward `relu`)
/// under each model: the mean over each image's noisy copies (the tunnel's, `noise_tunnel.rs`)
/// taken inside the backward, as the sequential tunnel does.
fn smoothgrad_means(
    models: &[&GraphModel],
    x: &[f32],
    (targets, ids): (&[&[usize]], &[u64]),
    (tunnel, relu): (&TunnelSpec, ReluMode),
    seed: u64,
) -> Result<Vec<Vec<f32>>> {
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    let per: usize = first.graph.input.iter().product();
    let n = x.len() / per;
    let mut noisy = Vec::with_capacity(n * tunnel.samples * per);
    for (i, image) in x.chunks_exact(per).enumerate() {
        let image: Vec<f64> = image.iter().map(|&v| f64::from(v)).collect();
        noisy.extend(noisy_copies("smoothgrad", (tunnel.samples, tunnel.noise, seed), &image, ids[i])?);
    }
    let samples = tunnel.samples;
    let fill = |i: usize, k: usize, path: &mut Vec<f32>| {
        path.extend(noisy[(i * samples + k) * per..(i * samples + k + 1) * per].iter().map(|&v| v as f32));
    };
    let means = weighted_gradient_sums(models, (n, per), targets, (samples, tunnel.batch), relu, fill, |_| {
        1.0 / samples as f64
    })?;
    Ok(means.into_iter().map(|mean| mean.iter().map(|&v| v as f32).collect()).collect())
}

/// Expected gradients (`expected_gradients.rs`) under each model: per image, its Monte Carlo
/// pairs (a reference image x' and α, the sequential method's draws), the gradients at
/// `x' + α (x − x')` taken `batch` points at a time, and the mean of `(x − x') ⊙ ∇`.
fn expected_gradients(
    models: &[&GraphModel],
    x: &[f32],
    (targets, ids): (&[&[usize]], &[u64]),
    (samples, batch, seed): (usize, usize, u64),
    references: Option<&ReferenceSet>,
) -> Result<Vec<Vec<f32>>> {
    let id = "expected_gradients";
    let Some(references) = references else {
        let why = "no reference set: `sanity run` uses the training images, `sanity attribute` needs --references";
        return Err(invalid(id, why.into()));
    };
    let (refs, [m, rc, rh, rw]) = references.images();
    let Some(&first) = models.first() else { return Ok(Vec::new()) };
    let graph = first.graph;
    if [rc, rh, rw] != graph.input || m == 0 || samples == 0 {
        return Err(invalid(
            id,
            format!(
                "{m} reference images of shape [{rc}, {rh}, {rw}] for inputs {:?}, samples = {samples}",
                graph.input
            ),
        ));
    }
    let per: usize = graph.input.iter().product();
    let classes = logits(first);
    let reference = |r: usize| &refs[r * per..(r + 1) * per];
    let mut maps = vec![Vec::with_capacity(x.len()); models.len()];
    for (i, image) in x.chunks_exact(per).enumerate() {
        let mut sums = vec![vec![0.0f64; per]; models.len()];
        for points in draws(seed, ids[i], samples, m).chunks(batch.max(1)) {
            let path: Vec<f32> = points
                .iter()
                .flat_map(|&(r, alpha)| {
                    image
                        .iter()
                        .zip(reference(r))
                        .map(move |(&x, &b)| (f64::from(b) + alpha * (f64::from(x) - f64::from(b))) as f32)
                })
                .collect();
            let seeds: Vec<Vec<f32>> =
                targets.iter().map(|targets| one_hot(&vec![targets[i]; points.len()], 1.0, classes)).collect();
            let grads = shared_gradients(models, &path, points.len(), &seeds, ReluMode::Standard)?;
            for (sum, grads) in sums.iter_mut().zip(grads) {
                for (&(r, _), g) in points.iter().zip(grads.chunks_exact(per)) {
                    for (((s, &g), &x), &b) in sum.iter_mut().zip(g).zip(image).zip(reference(r)) {
                        *s += (f64::from(x) - f64::from(b)) * f64::from(g) / samples as f64;
                    }
                }
            }
        }
        for (maps, sum) in maps.iter_mut().zip(sums) {
            maps.extend(sum.iter().map(|&v| v as f32));
        }
    }
    Ok(maps)
}

/// SmoothGrad, SmoothGrad² or VarGrad of `tunnel`'s inner method: each image's noisy copies
/// (the sequential tunnel's, `noise_tunnel.rs`), their inner maps, aggregated as the
/// sequential tunnel does (Welford's running mean and sum of squared deviations).
fn noise_tunnel(
    spec: &MethodSpec,
    tunnel: &TunnelSpec,
    model: &GraphModel,
    x: &[f32],
    (n, targets, ids): (usize, &[usize], &[u64]),
    (seed, references): (u64, Option<&ReferenceSet>),
) -> Result<(Vec<f32>, [usize; 3])> {
    let per = x.len() / n.max(1);
    let (mut out, mut shape) = (Vec::new(), model.graph.input);
    for (i, image) in x.chunks_exact(per).enumerate() {
        let image: Vec<f64> = image.iter().map(|&v| f64::from(v)).collect();
        let copies = noisy_copies(spec.id(), (tunnel.samples, tunnel.noise, seed), &image, ids[i])?;
        let noisy: Vec<f32> = copies.iter().map(|&v| v as f32).collect();
        let copy_ids: Vec<u64> = (0..tunnel.samples).map(|k| copy_id(ids[i], k)).collect();
        let copy_targets = vec![targets[i]; tunnel.samples];
        let copies = (tunnel.samples, copy_targets.as_slice(), copy_ids.as_slice());
        let (maps, s) = attribute_graph_with(&tunnel.inner, model, &noisy, copies, seed, references)?;
        shape = s;
        let len = maps.len() / tunnel.samples.max(1);
        let (mut mean, mut m2) = (vec![0.0f64; len], vec![0.0f64; len]);
        for (k, map) in maps.chunks_exact(len).enumerate() {
            let k = k as f64 + 1.0;
            for ((mu, s2), &v) in mean.iter_mut().zip(m2.iter_mut()).zip(map) {
                let v = f64::from(v);
                match spec {
                    MethodSpec::Smoothgrad(_) => *mu += (v - *mu) / k,
                    MethodSpec::SmoothgradSquared(_) => *mu += (v * v - *mu) / k,
                    _ => {
                        let d = v - *mu;
                        *mu += d / k;
                        *s2 += d * (v - *mu);
                    }
                }
            }
        }
        let result = match spec {
            MethodSpec::Vargrad(_) => m2.iter().map(|s| s / tunnel.samples as f64).collect::<Vec<_>>(),
            _ => mean,
        };
        out.extend(result.iter().map(|&v| v as f32));
    }
    Ok((out, shape))
}

/// The class activation map `kind` at `layer` (or the last node with more than one pixel),
/// upsampled to the input.
fn cam(
    kind: CamKind,
    model: &GraphModel,
    layer: Option<&str>,
    x: &[f32],
    n: usize,
    targets: &[usize],
) -> Result<(Vec<f32>, [usize; 3])> {
    let graph = model.graph;
    let id = kind.id();
    let node = cam_node(graph, layer, id)?;
    let [k, u, v] = graph.nodes[node].shape[..] else {
        let (name, shape) = (&graph.nodes[node].name, &graph.nodes[node].shape);
        return Err(invalid(id, format!("node `{name}` has output {shape:?}; accepted: a [c, h, w] output")));
    };
    let [c, h, w] = graph.input;
    let classes = graph.nodes.last().map_or(0, |node| node.shape.iter().product::<usize>());
    let fwd = forward(model, x, n)?;
    let a: Vec<f64> = fwd.nchw(graph, node + 1).iter().map(|&v| f64::from(v)).collect();
    let p = u * v;
    let gradient = || -> Result<Vec<f64>> {
        let mut seed = vec![0.0f32; n * classes];
        targets.iter().enumerate().for_each(|(i, &t)| seed[i * classes + t] = 1.0);
        let g = backward_to(model, &fwd, node + 1, &seed, ReluMode::Standard)?;
        Ok(to_nchw(&graph.nodes[node].shape, &g).iter().map(|&v| f64::from(v)).collect())
    };
    let channel_weights = |weight: fn(&[f64], &[f64]) -> f64, g: Vec<f64>| -> Vec<f64> {
        a.chunks_exact(p).zip(g.chunks_exact(p)).map(|(a, g)| weight(a, g)).collect()
    };
    let weighted: Vec<f64> = match kind {
        CamKind::GradCam => weighted_sum(&a, &channel_weights(gradcam_weight, gradient()?), k, p),
        CamKind::GradCamPlusPlus => weighted_sum(&a, &channel_weights(plus_plus_weight, gradient()?), k, p),
        CamKind::XGradCam => weighted_sum(&a, &channel_weights(xgradcam_weight, gradient()?), k, p),
        CamKind::LayerCam => {
            let g = gradient()?;
            (0..n * p)
                .map(|j| {
                    let (i, q) = (j / p, j % p);
                    (0..k).map(|ch| g[(i * k + ch) * p + q].max(0.0) * a[(i * k + ch) * p + q]).sum()
                })
                .collect()
        }
        CamKind::ScoreCam => {
            let logits = |images: Vec<f32>, rows: usize| -> Result<Vec<f64>> {
                Ok(forward(model, &images, rows)?.output().iter().map(|&v| f64::from(v)).collect())
            };
            let weights = score_weights(&a, [n, k, u, v], x, [c, h, w], targets, classes, logits)?;
            weighted_sum(&a, &weights, k, p)
        }
    };
    let mut maps = Vec::with_capacity(n * h * w);
    for coarse in weighted.chunks_exact(p) {
        let relu: Vec<f32> = coarse.iter().map(|&c| c.max(0.0) as f32).collect();
        maps.extend(sanity_data::resize_bilinear(&relu, u, v, h, w));
    }
    Ok((maps, [1, h, w]))
}

/// The node a class activation map `id` reads: the node (or the module's last node) `layer`
/// names, by default the last node whose output has more than one pixel.
pub fn cam_node(graph: &Graph, layer: Option<&str>, id: &'static str) -> Result<usize> {
    match layer {
        Some(name) => Ok(graph.resolve(name)?),
        None => graph
            .nodes
            .iter()
            .rposition(|node| matches!(node.shape[..], [_, u, v] if u * v > 1))
            .ok_or_else(|| invalid(id, "no node has an output of more than one pixel".into())),
    }
}

fn invalid(method: &'static str, reason: String) -> AttributionError {
    AttributionError::Invalid { method, reason }
}
