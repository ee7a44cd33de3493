//! `[sweep]`: any config value given as a list of alternatives; the runs are their Cartesian
//! product (docs/configs.md). Keys are dotted paths as for `--set`
//! (`"tests.0.reinit" = [{ kind = "original" }, { kind = "permute" }]`); keys are taken in
//! alphabetical order, the last one varying fastest. Each point is an ordinary config (the sweep
//! removed, the point's values set, then the preset applied) and gets its own run id.

use crate::plan::Plan;
use sanity_rundir::config::Config;
use sanity_rundir::error::{ExperimentError, Result};
use toml::{Table, Value};

/// The most runs one sweep may expand to.
pub const MAX_POINTS: usize = 100_000;

/// The swept keys and values of one run, as `(dotted key, value)`: a string as it is,
/// anything else as inline TOML.
pub type Params = Vec<(String, String)>;

/// The configs of `text` (from `file`) after the `--set` overrides: one per sweep point, or
/// the config itself when it has no `[sweep]`.
pub fn expand(text: &str, file: &str, overrides: &[String]) -> Result<Vec<(Config, Params)>> {
    let bad = |message: String| ExperimentError::config(file, message);
    let at = |key: String, message: String| ExperimentError::keyed(file, key, message);
    let mut table: Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let sweep = match table.remove("sweep") {
        None => {
            let config = Config::parse(text, file, overrides)
                .map_err(|e| sanity_rundir::diagnostics::locate(e, text, overrides))?;
            return Ok(vec![(config, Vec::new())]);
        }
        Some(Value::Table(sweep)) => sweep,
        Some(_) => return Err(at("sweep".into(), "expected a table of lists, e.g. [sweep] seed = [0, 1]".into())),
    };
    for assignment in overrides {
        sanity_rundir::overrides::apply(&mut table, assignment).map_err(|e| bad(e.to_string()))?;
    }
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, values) in sweep {
        match values {
            Value::Array(values) if !values.is_empty() => axes.push((key, values)),
            Value::Array(_) => return Err(at(format!("sweep.{key}"), "an empty list; give at least one value".into())),
            _ => return Err(at(format!("sweep.{key}"), "expected a list of values, e.g. [1, 2]".into())),
        }
    }
    if axes.is_empty() {
        return Err(at("sweep".into(), "no keys; give at least one list, e.g. seed = [0, 1]".into()));
    }
    let points = axes
        .iter()
        .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()).filter(|&n| n <= MAX_POINTS))
        .ok_or_else(|| {
            let sizes: Vec<String> = axes.iter().map(|(k, v)| format!("{k}: {}", v.len())).collect();
            at("sweep".into(), format!("{} make more than {MAX_POINTS} runs; split the sweep", sizes.join(" x ")))
        })?;
    let mut out = Vec::with_capacity(points);
    for point in 0..points {
        let mut config = table.clone();
        let mut params = Params::new();
        let mut rest = point;
        let mut chosen: Vec<(String, Value)> = Vec::with_capacity(axes.len());
        for (key, values) in axes.iter().rev() {
            chosen.push((key.clone(), values[rest % values.len()].clone()));
            rest /= values.len();
        }
        chosen.reverse();
        for (key, value) in chosen {
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            if path.iter().any(|p| p.is_empty() || p.contains(['[', ']'])) {
                return Err(at(
                    format!("sweep.\"{key}\""),
                    "not a dotted path like training.epochs (list elements as tests.0.reinit)".into(),
                ));
            }
            // Strings as they are, anything else as inline TOML (`0.5`, `{ kind = "original" }`).
            let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            params.push((key.clone(), shown));
            sanity_rundir::overrides::set_path(&mut config, &path, value)
                .map_err(|m| at(format!("sweep.\"{key}\""), m))?;
        }
        let generated = toml::to_string(&config).map_err(|e| bad(e.to_string()))?;
        let parsed = Config::parse_generated(&generated, file, overrides)
            .map_err(|e| in_sweep_point(e, &params, text, overrides))?;
        out.push((parsed, params));
    }
    Ok(out)
}

/// A config error of the sweep point with `params`, named by its values (`sweep point seed =
/// 1, ...: message`), at the line of `text` (the config file's) that gives the key it names:
/// the `[sweep]` entry when the key is swept (the longest swept key that holds it), else the
/// key itself unless a `--set` in `overrides` replaced it. Other errors as they are.
fn in_sweep_point(
    e: ExperimentError,
    params: &[(String, String)],
    text: &str,
    overrides: &[String],
) -> ExperimentError {
    use sanity_rundir::diagnostics::{line_of, overridden, segments, sweep_key_line};
    let ExperimentError::Config { file, key, message } = e else { return e };
    let point = params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
    let line = key.as_deref().and_then(|key| {
        let key_segments = segments(key);
        let swept = params
            .iter()
            .filter(|(k, _)| key_segments.starts_with(&segments(k)))
            .max_by_key(|(k, _)| segments(k).len());
        match swept {
            Some((k, _)) => sweep_key_line(text, k),
            None if overridden(key, overrides) => None,
            None => line_of(text, key),
        }
    });
    let file = line.map_or(file.clone(), |line| format!("{file}:{line}"));
    ExperimentError::Config { file: format!("{file}: sweep point {point}"), key, message }
}

/// The checked plans of `text`: one per sweep point, each knowing its swept values.
pub fn plans(text: &str, file: &str, overrides: &[String]) -> Result<Vec<Plan>> {
    let points = expand(text, file, overrides)?;
    let mut plans = Vec::with_capacity(points.len());
    for (config, params) in points {
        let mut plan = Plan::new(config, file).map_err(|e| match e {
            // A sweep point's values come from [sweep]: name the point and its [sweep] line.
            e @ ExperimentError::Config { .. } if !params.is_empty() => in_sweep_point(e, &params, text, overrides),
            other => sanity_rundir::diagnostics::locate(other, text, overrides),
        })?;
        plan.params = params;
        plans.push(plan);
    }
    let mut ids: Vec<&str> = plans.iter().map(|p| p.run_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(ExperimentError::keyed(
            file,
            "sweep",
            "two points resolve to the same config (a value listed twice?)",
        ));
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = include_str!("../../../experiments/quick.toml");

    #[test]
    fn the_product_of_the_lists_in_key_order_with_the_last_key_fastest() {
        let text = format!("{BASE}\n[sweep]\nseed = [1, 2]\n\"attribution.n_images\" = [4, 8, 16]\n");
        let points = expand(&text, "s.toml", &[]).expect("sweep");
        assert_eq!(points.len(), 6);
        let got: Vec<(u64, usize)> = points.iter().map(|(c, _)| (c.seed, c.attribution.n_images)).collect();
        // `attribution.n_images` sorts before `seed`: seed varies fastest.
        assert_eq!(got, [(1, 4), (2, 4), (1, 8), (2, 8), (1, 16), (2, 16)]);
        assert_eq!(points[3].1, [("attribution.n_images".to_string(), "8".to_string()), ("seed".into(), "2".into())]);
        let plans = plans(&text, "s.toml", &[]).expect("plans");
        let mut ids: Vec<&str> = plans.iter().map(|p| p.run_id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 6, "one run id per point");
        assert_eq!(plans[4].run_id, super::plans(&text, "s.toml", &[]).expect("again")[4].run_id, "stable ids");
    }

    #[test]
    fn empty_lists_bad_keys_and_bad_values_name_the_key() {
        for (sweep, expected) in [
            ("seed = []", "sweep.seed"),
            ("seed = 3", "expected a list"),
            ("\"attribution.n_imagez\" = [1]", "n_imagez"),
            ("\"tests.7.order\" = [\"top_down\"]", "out of range"),
        ] {
            let text = format!("{BASE}\n[sweep]\n{sweep}\n");
            let error = plans(&text, "s.toml", &[]).expect_err(sweep).to_string();
            assert!(error.contains(expected) && error.contains("s.toml"), "{sweep}: {error}");
        }
    }

    #[test]
    fn sweep_point_errors_point_at_the_line_that_gave_the_value() {
        let error = |text: &str, overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(ToString::to_string).collect();
            plans(text, "s.toml", &overrides).expect_err("refused").to_string()
        };
        let line = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).expect("written") + 1;
        // A swept value: the [sweep] entry's line.
        let swept = format!("{BASE}\n[sweep]\n\"training.learning_rate\" = [0.1, \"fast\"]\n");
        let e = error(&swept, &[]);
        let at = format!("s.toml:{}:", line(&swept, "\"training.learning_rate\""));
        assert!(e.contains(&at) && e.contains("key `training.learning_rate`"), "{e}");
        // A value beside the sweep: its own line, unless --set replaced it.
        let beside = format!("{BASE}\n[sweep]\nseed = [1, 2]\n").replace("n_images = 32", "n_images = 0");
        let e = error(&beside, &[]);
        assert!(e.contains(&format!("s.toml:{}:", line(&beside, "n_images = 0"))), "{e}");
        let e = error(&format!("{BASE}\n[sweep]\nseed = [1, 2]\n"), &["attribution.n_images=0"]);
        assert!(e.contains("s.toml: sweep point") && e.contains("attribution.n_images"), "{e}");
        // A misspelt table: its own line.
        let misspelt = format!("{BASE}\n[sweep]\nseed = [1, 2]\n").replace("[attribution]", "[attributions]");
        let e = error(&misspelt, &[]);
        let at = format!("s.toml:{}:", line(&misspelt, "[attributions]"));
        assert!(e.contains(&at) && e.contains("did you mean `attribution`"), "{e}");
        // A misspelt preset is the preset's error, not a missing table.
        let preset = format!("preset = \"adebayo2019\"\n{BASE}\n[sweep]\nseed = [1, 2]\n");
        let e = error(&preset, &[]);
        assert!(e.contains("adebayo2018") && !e.contains("missing field"), "{e}");
        // List elements are written with dots in [sweep].
        let e = error(&format!("{BASE}\n[sweep]\n\"tests[0].order\" = [\"top_down\"]\n"), &[]);
        assert!(e.contains("tests.0.reinit"), "{e}");
    }
}
