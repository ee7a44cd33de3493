//! Experiment presets (`preset = "adebayo2018"`): each anchor paper's choices as config
//! defaults. A preset only fills keys the config leaves out: anything set explicitly, in the
//! file or with `--set`, wins; a list (`tests`, `comparisons`) given in the config replaces the
//! preset's list whole.

use crate::error::{ExperimentError, Result};

/// The preset names.
pub const PRESET_NAMES: [&str; 3] = ["adebayo2018", "quantus", "hedstrom2023"];

/// Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (arXiv:1810.03292) and its code:
/// cascading (top-down) and independent randomisation with the layers' own initialisers; the
/// randomised model's own prediction is explained; maps compared after the paper's absolute
/// value visualisation (Σ_c |m| scaled by the 99th percentile, clipped) by Spearman rank
/// correlation, SSIM and HOG similarity, and after the diverging one (no absolute value) by
/// Spearman (Figure 2 and section 4: "with and without absolute values").
const ADEBAYO2018: &str = r#"
[attribution]
explain = "current_prediction"

[[tests]]
kind = "cascading"
order = "top_down"
reinit = { kind = "original" }

[[tests]]
kind = "independent"
reinit = { kind = "original" }

[[comparisons]]
postprocess = [{ step = "adebayo_abs", percentile = 99.0 }]
metrics = [{ metric = "spearman" }, { metric = "ssim", data_range = 1.0 }, { metric = "hog_pearson" }]

[[comparisons]]
postprocess = [{ step = "adebayo_diverging", percentile = 99.0 }]
metrics = [{ metric = "spearman" }]
"#;

/// Quantus' `MPRT` defaults (Hedström et al. 2023, JMLR, quantus/metrics/randomisation/mprt.py):
/// `layer_order = "top_down"`, layers re-initialised with PyTorch's `reset_parameters()`,
/// the given labels explained, `abs = True` then `normalise_by_max`, Spearman correlation.
const QUANTUS: &str = r#"
[attribution]
explain = "true_label"

[[tests]]
kind = "cascading"
order = "top_down"
reinit = { kind = "pytorch_default" }

[[comparisons]]
postprocess = [{ step = "abs" }, { step = "normalize", mode = "max_abs" }]
metrics = [{ metric = "spearman" }]
"#;

/// Hedström et al. 2023, "Sanity Checks Revisited: An Exploration to Repair the Model
/// Parameter Randomisation Test" (XAI in Action workshop, NeurIPS 2023): smooth MPRT (bottom-up,
/// N = 50 noisy copies, noise 0.1 of the range) and efficient MPRT (complexity ratio, discrete
/// entropy over 100 bins), PyTorch re-initialisation, given labels explained, abs + max
/// normalisation, Spearman correlation.
const HEDSTROM2023: &str = r#"
[attribution]
explain = "true_label"

[[tests]]
kind = "smooth_mprt"
order = "bottom_up"
reinit = { kind = "pytorch_default" }
samples = 50
noise = 0.1

[[tests]]
kind = "efficient_mprt"
reinit = { kind = "pytorch_default" }

[[comparisons]]
postprocess = [{ step = "abs" }, { step = "normalize", mode = "max_abs" }]
metrics = [{ metric = "spearman" }, { metric = "discrete_entropy", bins = 100 }]
"#;

/// The preset `name` as a TOML table; the error lists the presets.
pub fn preset_table(name: &str, file: &str) -> Result<toml::Table> {
    let text = match name {
        "adebayo2018" => ADEBAYO2018,
        "quantus" => QUANTUS,
        "hedstrom2023" => HEDSTROM2023,
        _ => {
            return Err(ExperimentError::keyed(
                file,
                "preset",
                format!(
                    "`{name}` is not a preset; accepted: {}{}",
                    PRESET_NAMES.join(", "),
                    crate::diagnostics::did_you_mean(name, PRESET_NAMES.iter().copied())
                ),
            ));
        }
    };
    Ok(toml::from_str(text).expect("the presets are valid TOML"))
}

/// Fills the keys of `table` that are missing from `defaults`, recursing into sub-tables.
pub fn fill_missing(table: &mut toml::Table, defaults: toml::Table) {
    for (key, value) in defaults {
        match (table.get_mut(&key), value) {
            (None, value) => {
                table.insert(key, value);
            }
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => fill_missing(mine, theirs),
            (Some(_), _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_keys_win_and_lists_replace_whole() {
        let mut table: toml::Table = toml::from_str(
            "[attribution]\nexplain = \"true_label\"\nn_images = 3\n[[tests]]\nkind = \"random_logit\"\n",
        )
        .expect("toml");
        fill_missing(&mut table, preset_table("adebayo2018", "f").expect("preset"));
        assert_eq!(table["attribution"]["explain"].as_str(), Some("true_label"));
        assert_eq!(table["attribution"]["n_images"].as_integer(), Some(3));
        assert_eq!(table["tests"].as_array().map(Vec::len), Some(1), "the config's tests replace the preset's");
        assert_eq!(table["comparisons"].as_array().map(Vec::len), Some(2), "the preset's comparisons fill the gap");
        let error = preset_table("adebayo", "f.toml").expect_err("unknown").to_string();
        assert!(error.contains("adebayo2018, quantus, hedstrom2023") && error.contains("f.toml"), "{error}");
    }
}
