//! The arguments that cross from Python: arrays as NPY bytes, structured values as JSON, a
//! config as a path, a TOML text or a JSON object.

use crate::errors::{bad_input, to_py};
use pyo3::prelude::*;
use sanity_data::npy::{NpyArray, parse_npy};
use sanity_experiments::Plan;
use sanity_experiments::sweep::plans;
use sanity_rundir::error::Result;
use serde::Deserialize;
use std::path::Path;

/// An array from its NPY bytes (`what` names the argument in errors).
pub fn npy(bytes: &[u8], what: &str) -> Result<NpyArray> {
    Ok(parse_npy(bytes, what)?)
}

/// A JSON value as TOML holds it (`what` names the argument; JSON's null has no TOML form).
pub fn parse_json(py: Python<'_>, text: &str, what: &str) -> PyResult<toml::Value> {
    serde_json::from_str::<toml::Value>(text).map_err(|e| {
        bad_input(py, what, format!("{e}; accepted: strings, numbers, booleans, lists and dicts (no None)"))
    })
}

/// A JSON list of names or tables (`[\"abs\", {\"step\": \"normalize\", ...}]`), each parsed as
/// a config's entry with `key` as its tag; errors name `what[i]`.
pub fn tagged_list<T: for<'de> Deserialize<'de>>(
    py: Python<'_>,
    text: &str,
    key: &str,
    what: &str,
) -> PyResult<Vec<T>> {
    let toml::Value::Array(items) = parse_json(py, text, what)? else {
        return Err(bad_input(py, what, "accepted: a list of names or dicts"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            sanity_cli::jobs::compare::parse_value(item, key, &format!("{what}[{i}]")).map_err(|e| to_py(py, e))
        })
        .collect()
}

/// The plans of a config given as `kind`: `path`, `toml`, `json` or `quick`.
pub fn config_plans(py: Python<'_>, kind: &str, config: &str, overrides: &[String]) -> PyResult<Vec<Plan>> {
    let loaded = match kind {
        "path" => sanity_cli::load_plans(Some(Path::new(config)), overrides),
        "quick" => sanity_cli::load_plans(None, overrides),
        "toml" => plans(config, "<config string>", overrides),
        "json" => {
            let value = parse_json(py, config, "config")?;
            let text = toml::to_string(&value).map_err(|e| bad_input(py, "config", format!("{e}")))?;
            plans(&text, "<config dict>", overrides)
        }
        other => return Err(bad_input(py, "config", format!("kind `{other}`; accepted: path, toml, json, quick"))),
    };
    loaded.map_err(|e| to_py(py, e))
}
