//! `--set KEY=VALUE` overrides applied to the parsed TOML before it becomes a config.

use crate::error::{ExperimentError, Result};
use toml::{Table, Value};

/// Parses `KEY=VALUE`. VALUE is read as a TOML value (`20`, `0.5`, `true`, `[1, 2]`,
/// `{ kind = "original" }`, `"text"`); anything that is not valid TOML is taken as a string.
pub fn parse_assignment(assignment: &str) -> Result<(Vec<String>, Value)> {
    let bad =
        |message: &str| ExperimentError::Override { assignment: assignment.to_string(), message: message.to_string() };
    let (key, raw) = assignment.split_once('=').ok_or_else(|| bad("expected KEY=VALUE, e.g. training.epochs=5"))?;
    let path: Vec<String> = key.trim().split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("the key is empty or has an empty part; expected a dotted path like attribution.n_images"));
    }
    let digits = raw.trim().strip_prefix(['-', '+']).unwrap_or(raw.trim()).replace('_', "");
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && raw.trim().replace('_', "").parse::<i64>().is_err()
    {
        return Err(bad(&format!(
            "{} does not fit a TOML integer; accepted: whole numbers from -2^63 to 2^63 - 1",
            raw.trim()
        )));
    }
    let value = match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("the table was written with key v"),
        Err(_) => Value::String(raw.to_string()),
    };
    Ok((path, value))
}

/// Sets `path` to `value` in `root`. Intermediate tables are created; an array element is
/// addressed by its index (`tests.0.order`). Whether the key exists in the schema is checked
/// when the result is read as a config (unknown keys are refused there).
pub fn apply(root: &mut Table, assignment: &str) -> Result<()> {
    let (path, value) = parse_assignment(assignment)?;
    let mut wrapped = Value::Table(std::mem::take(root));
    let outcome = set(&mut wrapped, &path, value)
        .map_err(|message| ExperimentError::Override { assignment: assignment.to_string(), message });
    if let Value::Table(t) = wrapped {
        *root = t;
    }
    outcome
}

/// Sets `path` to `value` in `root`, as [`apply`] does; the message says what went wrong.
pub fn set_path(root: &mut Table, path: &[String], value: Value) -> std::result::Result<(), String> {
    let mut wrapped = Value::Table(std::mem::take(root));
    let outcome = set(&mut wrapped, path, value);
    if let Value::Table(t) = wrapped {
        *root = t;
    }
    outcome
}

fn set(node: &mut Value, path: &[String], value: Value) -> std::result::Result<(), String> {
    let (first, rest) = path.split_first().expect("paths are non-empty");
    let child = match node {
        Value::Table(t) if rest.is_empty() => {
            t.insert(first.clone(), value);
            return Ok(());
        }
        Value::Table(t) => t.entry(first.clone()).or_insert_with(|| Value::Table(Table::new())),
        Value::Array(a) => {
            let len = a.len();
            let i: usize = first.parse().map_err(|_| format!("`{first}` indexes a list; use a number below {len}"))?;
            let slot = a.get_mut(i).ok_or_else(|| format!("index {i} is out of range; the list has {len} elements"))?;
            if rest.is_empty() {
                *slot = value;
                return Ok(());
            }
            slot
        }
        _ => return Err(format!("`{first}` is inside a plain value, not a table")),
    };
    set(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nested_keys_array_elements_and_typed_values() {
        let mut t: Table = toml::from_str("a = 1\n[b]\nc = 2\n[[d]]\ne = 3").expect("toml");
        apply(&mut t, "b.c=20").expect("set");
        apply(&mut t, "d.0.e=0.5").expect("set");
        apply(&mut t, "f.g=hello").expect("set");
        assert_eq!(t["b"]["c"].as_integer(), Some(20));
        assert_eq!(t["d"][0]["e"].as_float(), Some(0.5));
        assert_eq!(t["f"]["g"].as_str(), Some("hello"));
        assert!(apply(&mut t, "d.5.e=1").is_err());
        assert!(apply(&mut t, "nokey").is_err());
        assert_eq!(t["a"].as_integer(), Some(1), "a failed override keeps the rest");
    }
}
