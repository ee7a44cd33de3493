//! Every attribution method in one list: its config id, what it computes (with its reference)
//! and a config that builds it. The CLI's help and the README's method list are checked against
//! it; adding a method means a [`crate::MethodSpec`] variant, its file, and an entry here (a test
//! fails until all three agree).

/// One attribution method.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// The id configs and CSV files write (`method = "gradcam"`).
    pub id: &'static str,
    /// What it computes, with its reference, in one line.
    pub about: &'static str,
    /// A config table that builds it (its required parameters given).
    pub example: &'static str,
}

/// Every method, in the order the README lists them.
pub const METHODS: &[MethodInfo] = &[
    MethodInfo {
        id: "gradient",
        about: "the input gradient of the target logit (Simonyan et al. 2014)",
        example: r#"method = "gradient""#,
    },
    MethodInfo {
        id: "gradient_x_input",
        about: "input times gradient (Shrikumar et al. 2016)",
        example: r#"method = "gradient_x_input""#,
    },
    MethodInfo {
        id: "integrated_gradients",
        about: "the path integral of gradients from a baseline (Sundararajan et al. 2017)",
        example: r#"method = "integrated_gradients""#,
    },
    MethodInfo {
        id: "expected_gradients",
        about: "integrated gradients averaged over baselines from a reference set (Erion et al. 2021)",
        example: r#"method = "expected_gradients""#,
    },
    MethodInfo {
        id: "smoothgrad",
        about: "the mean of a method over noisy copies (Smilkov et al. 2017)",
        example: r#"method = "smoothgrad""#,
    },
    MethodInfo {
        id: "smoothgrad_squared",
        about: "the mean of squares of a method over noisy copies (Hooker et al. 2019)",
        example: r#"method = "smoothgrad_squared""#,
    },
    MethodInfo {
        id: "vargrad",
        about: "the variance of a method over noisy copies (Adebayo et al. 2018)",
        example: r#"method = "vargrad""#,
    },
    MethodInfo {
        id: "guided_backprop",
        about: "the gradient passing only positive gradients through ReLUs (Springenberg et al. 2015)",
        example: r#"method = "guided_backprop""#,
    },
    MethodInfo {
        id: "deconvnet",
        about: "the gradient with ReLUs applied to the gradient (Zeiler and Fergus 2014)",
        example: r#"method = "deconvnet""#,
    },
    MethodInfo {
        id: "gradcam",
        about: "activations weighted by their mean gradient, upsampled (Selvaraju et al. 2017)",
        example: r#"method = "gradcam""#,
    },
    MethodInfo {
        id: "guided_gradcam",
        about: "guided backprop times upsampled Grad-CAM (Selvaraju et al. 2017)",
        example: r#"method = "guided_gradcam""#,
    },
    MethodInfo {
        id: "gradcam_plus_plus",
        about: "Grad-CAM with higher-order gradient weights (Chattopadhay et al. 2018)",
        example: r#"method = "gradcam_plus_plus""#,
    },
    MethodInfo {
        id: "xgradcam",
        about: "Grad-CAM with activation-normalised weights (Fu et al. 2020)",
        example: r#"method = "xgradcam""#,
    },
    MethodInfo {
        id: "layercam",
        about: "element-wise positive gradients times activations (Jiang et al. 2021)",
        example: r#"method = "layercam""#,
    },
    MethodInfo {
        id: "scorecam",
        about: "activations weighted by the softmax of the masked inputs' scores (Wang et al. 2020)",
        example: r#"method = "scorecam""#,
    },
    MethodInfo {
        id: "occlusion",
        about: "the mean drop of the target logit under sliding patches (Zeiler and Fergus 2014)",
        example: r#"method = "occlusion"
window = 4
stride = 2"#,
    },
    MethodInfo {
        id: "lrp_epsilon",
        about: "layer-wise relevance propagation, epsilon rule (Bach et al. 2015)",
        example: r#"method = "lrp_epsilon""#,
    },
    MethodInfo {
        id: "lrp_alpha_beta",
        about: "layer-wise relevance propagation, alpha-beta rule (Bach et al. 2015)",
        example: r#"method = "lrp_alpha_beta""#,
    },
    MethodInfo {
        id: "random_map",
        about: "control: uniform noise of the input's shape, seeded per image",
        example: r#"method = "random_map""#,
    },
    MethodInfo {
        id: "sobel",
        about: "control: the Sobel edge magnitude of each input channel",
        example: r#"method = "sobel""#,
    },
];

/// Every method's id, in [`METHODS`]' order.
pub fn method_ids() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.id).collect()
}

/// `id: about` per method, one per line: the CLI's help.
pub fn method_help() -> String {
    METHODS.iter().map(|m| format!("{}: {}", m.id, m.about)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::MethodSpec;

    /// The position of `spec`'s variant: the match is exhaustive, so a new variant does not
    /// compile until it is listed here, and the test below fails until [`METHODS`] builds it.
    fn variant(spec: &MethodSpec) -> usize {
        match spec {
            MethodSpec::Gradient {} => 0,
            MethodSpec::GradientXInput {} => 1,
            MethodSpec::IntegratedGradients { .. } => 2,
            MethodSpec::ExpectedGradients { .. } => 3,
            MethodSpec::Smoothgrad(_) => 4,
            MethodSpec::SmoothgradSquared(_) => 5,
            MethodSpec::Vargrad(_) => 6,
            MethodSpec::GuidedBackprop {} => 7,
            MethodSpec::Deconvnet {} => 8,
            MethodSpec::Gradcam { .. } => 9,
            MethodSpec::GuidedGradcam { .. } => 10,
            MethodSpec::GradcamPlusPlus { .. } => 11,
            MethodSpec::Xgradcam { .. } => 12,
            MethodSpec::Layercam { .. } => 13,
            MethodSpec::Scorecam { .. } => 14,
            MethodSpec::Occlusion { .. } => 15,
            MethodSpec::LrpEpsilon { .. } => 16,
            MethodSpec::LrpAlphaBeta { .. } => 17,
            MethodSpec::RandomMap {} => 18,
            MethodSpec::Sobel {} => 19,
        }
    }
    const VARIANTS: usize = 20;

    #[test]
    fn every_variant_has_one_entry_whose_example_builds_it_under_its_id() {
        let mut seen = vec![0; VARIANTS];
        for info in METHODS {
            let spec: MethodSpec = toml::from_str(info.example).unwrap_or_else(|e| panic!("{}: {e}", info.id));
            assert_eq!(spec.id(), info.id, "the example of `{}` builds `{}`", info.id, spec.id());
            seen[variant(&spec)] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "one entry per variant: {seen:?}");
    }
}
