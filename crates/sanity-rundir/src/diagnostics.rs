//! Friendlier config errors: the closest valid name for a misspelt one ("did you mean"), and
//! the line of the config file that holds the key an error names.

use crate::error::ExperimentError;

/// Levenshtein distance between `a` and `b`, ignoring ASCII case.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) =
        (a.to_ascii_lowercase().chars().collect(), b.to_ascii_lowercase().chars().collect());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The candidate closest to `name` when it is close enough to be a typo (at most 2 edits, or a
/// third of the name's length for long names); the first of equally close ones.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let allowed = (name.chars().count() / 3).max(2);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let d = edit_distance(name, candidate);
        if d <= allowed && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `"; did you mean `x`?"` for `name` among `candidates`, or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map_or_else(String::new, |c| format!("; did you mean `{c}`?"))
}

/// Adds a suggestion to serde's `unknown variant `x`, expected one of `a`, `b`` and
/// `unknown field `x`, expected one of ...` messages (as the toml crate words them).
pub fn with_suggestion(message: String) -> String {
    for lead in ["unknown variant `", "unknown field `"] {
        let Some(start) = message.find(lead) else { continue };
        let rest = &message[start + lead.len()..];
        let Some(end) = rest.find('`') else { continue };
        let name = &rest[..end];
        let after = &rest[end + 1..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let expected = &after[..line_end];
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if let Some(c) = closest(name, candidates.iter().copied()) {
            let at = start + lead.len() + end + 1 + line_end;
            return format!("{}; did you mean `{c}`?{}", &message[..at], &message[at..]);
        }
    }
    message
}

/// The segments of a key path as errors write it (`tests[0].stages`) or as `--set` does
/// (`tests.0.stages`).
pub fn segments(path: &str) -> Vec<String> {
    path.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A place in a parsed TOML document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
}

/// The 1-based line of TOML `text` where the key at `path` is written, when it is.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    use toml_edit::{Item, Value};
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut node = Node::Table(document.as_table());
    let mut span: Option<std::ops::Range<usize>> = None;
    for segment in segments(path) {
        let index = segment.parse::<usize>().ok();
        let (next, here) = match (node, index) {
            (Node::Table(t) | Node::Item(Item::Table(t)), _) => {
                let (key, item) = t.get_key_value(&segment)?;
                (Node::Item(item), key.span().or_else(|| item.span()))
            }
            (Node::Item(Item::ArrayOfTables(tables)), Some(i)) => {
                let table = tables.get(i)?;
                (Node::Table(table), table.span())
            }
            (Node::Item(Item::Value(v)) | Node::Value(v), _) => match (v, index) {
                (Value::Array(values), Some(i)) => {
                    let value = values.get(i)?;
                    (Node::Value(value), value.span())
                }
                (Value::InlineTable(t), _) => {
                    let (key, item) = t.get_key_value(&segment)?;
                    (Node::Item(item), key.span().or_else(|| item.span()))
                }
                _ => return None,
            },
            _ => return None,
        };
        node = next;
        span = here.or(span);
    }
    span.map(|s| line_at(text, s.start))
}

/// The dotted path (`training.learning_rate`, `tests[1].stages`) of the innermost key of TOML
/// `text` whose key or value holds all of `span`, if any: where a parse error of a generated
/// text is. A span over a whole table (a missing field) names that table, or nothing at the
/// root.
pub fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    use toml_edit::{Item, Value};
    let holds = |s: Option<std::ops::Range<usize>>| s.is_some_and(|s| s.start <= span.start && span.end <= s.end);
    fn in_value(value: &Value, path: String, holds: &dyn Fn(Option<std::ops::Range<usize>>) -> bool) -> String {
        let inner = match value {
            Value::Array(values) => {
                values.iter().enumerate().find(|(_, v)| holds(v.span())).map(|(i, v)| (format!("{path}[{i}]"), v))
            }
            Value::InlineTable(t) => t.iter().find(|(_, v)| holds(v.span())).map(|(k, v)| (format!("{path}.{k}"), v)),
            _ => None,
        };
        match inner {
            Some((inner, v)) => in_value(v, inner, holds),
            None => path,
        }
    }
    fn in_table(
        table: &toml_edit::Table,
        path: &str,
        holds: &dyn Fn(Option<std::ops::Range<usize>>) -> bool,
    ) -> Option<String> {
        for (key, item) in table.iter() {
            let dotted = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
            if holds(table.get_key_value(key).and_then(|(k, _)| k.span())) {
                return Some(dotted);
            }
            let found = match item {
                Item::Value(v) if holds(v.span()) => Some(in_value(v, dotted, holds)),
                Item::Table(t) => in_table(t, &dotted, holds).or_else(|| holds(t.span()).then_some(dotted)),
                Item::ArrayOfTables(tables) => tables.iter().enumerate().find_map(|(i, t)| {
                    let element = format!("{dotted}[{i}]");
                    in_table(t, &element, holds).or_else(|| holds(t.span()).then_some(element))
                }),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
    let document = toml_edit::ImDocument::parse(text).ok()?;
    // An error over the root (a missing top-level field) names no key, whatever the root's
    // span happens to overlap.
    if document.as_table().span() == Some(span.clone()) {
        return None;
    }
    in_table(document.as_table(), "", &holds)
}

/// The 1-based line of byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The 1-based line of `text`'s `[sweep]` key `key` (a dotted path written as one quoted key,
/// `"training.epochs"`), when it is written there.
pub fn sweep_key_line(text: &str, key: &str) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let sweep = document.as_table().get("sweep")?.as_table_like()?;
    let (written, item) = sweep.get_key_value(key)?;
    Some(line_at(text, written.span().or_else(|| item.span())?.start))
}

/// Whether one of the `--set` `overrides` sets the key at `path` (or a table around or inside it).
pub fn overridden(path: &str, overrides: &[String]) -> bool {
    let key = segments(path);
    overrides.iter().filter_map(|o| o.split_once('=')).any(|(k, _)| {
        let set = segments(k.trim());
        key.starts_with(&set) || set.starts_with(&key)
    })
}

/// `error` with the config line of the key it names (`file:LINE`) when `text` (the config
/// file's own text) writes that key and no `--set` in `overrides` replaced it.
pub fn locate(error: ExperimentError, text: &str, overrides: &[String]) -> ExperimentError {
    let ExperimentError::Config { file, key, message } = error else { return error };
    let line = key.as_deref().filter(|p| !overridden(p, overrides)).and_then(|p| line_of(text, p));
    match line {
        Some(line) => ExperimentError::Config { file: format!("{file}:{line}"), key, message },
        None => ExperimentError::Config { file, key, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_closest_name() {
        assert_eq!(closest("gradcm", ["gradient", "gradcam", "gradcam_plus_plus"]), Some("gradcam"));
        assert_eq!(closest("SPEARMANN", ["spearman", "ssim"]), Some("spearman"));
        assert_eq!(closest("zzzzzz", ["spearman", "ssim"]), None);
        let serde = "unknown variant `cascadin`, expected one of `cascading`, `independent`\n".to_string();
        assert_eq!(
            with_suggestion(serde),
            "unknown variant `cascadin`, expected one of `cascading`, `independent`; did you mean `cascading`?\n"
        );
    }

    #[test]
    fn the_key_at_an_offset_and_a_sweep_key_are_found() {
        let text = "name = \"x\"\n[training]\nlearning_rate = \"x\"\n\n[[tests]]\nkind = \"a\"\n[[tests]]\nstages = [\"conv1\", 3]\nreinit = { kind = \"permute\", scale = \"y\" }\n\n[sweep]\n\"training.epochs\" = [1, 2]\n";
        let at = |needle: &str| {
            let start = text.find(needle).expect("in the text");
            key_at(text, start..start + 1)
        };
        assert_eq!(at("\"x\"\n[training]").as_deref(), Some("name"));
        assert_eq!(at("\"x\"\n\n").as_deref(), Some("training.learning_rate"));
        assert_eq!(at("3]").as_deref(), Some("tests[1].stages[1]"));
        assert_eq!(at("learning_rate").as_deref(), Some("training.learning_rate"));
        assert_eq!(at("\"y\"").as_deref(), Some("tests[1].reinit.scale"));
        let sweep = text.find("[sweep]").expect("sweep");
        assert_eq!(key_at(text, sweep..sweep + 1).as_deref(), Some("sweep"));
        // A missing field's span covers its whole table: the table, or nothing at the root.
        assert_eq!(key_at(text, 0..text.len()), None);
        let training = text.find("[training]").expect("training");
        assert_eq!(key_at(text, training..text.find("\n\n[[tests]]").expect("end")).as_deref(), Some("training"));
        assert_eq!(sweep_key_line("sweep = { seed = [1, 2] }\n", "seed"), Some(1));
        // The span toml gives a missing top-level field, in a text without root keys.
        for text in ["[training]\nepochs = 1\n", "name = \"x\"\n[training]\nepochs = 1\n"] {
            let error = toml::from_str::<crate::config::Config>(text).expect_err("fields are missing");
            assert!(error.message().starts_with("missing field"), "{error}");
            assert_eq!(key_at(text, error.span().expect("a span")), None, "{error}");
        }
        assert_eq!(sweep_key_line(text, "training.epochs"), Some(12));
        assert_eq!(sweep_key_line(text, "seed"), None);
    }

    #[test]
    fn key_paths_are_found_on_their_lines() {
        let text = "name = \"x\"\n\n[attribution]\nn_images = 3\nmethods = [\n  { method = \"gradient\" },\n  { method = \"integrated_gradients\", steps = 0 },\n]\n\n[[tests]]\nkind = \"cascading\"\n\n[[tests]]\nkind = \"independent\"\nstages = [\"conv9\"]\n";
        assert_eq!(line_of(text, "name"), Some(1));
        assert_eq!(line_of(text, "attribution.n_images"), Some(4));
        assert_eq!(line_of(text, "attribution.methods[1]"), Some(7));
        assert_eq!(line_of(text, "tests[1].stages"), Some(15));
        assert_eq!(line_of(text, "tests[0]"), Some(10));
        assert_eq!(line_of(text, "statistics.alpha"), None);
    }
}
