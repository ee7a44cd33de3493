//! The method and metric registries are the one list: the README's sections and the CLI's
//! help name every entry, and nothing else.

use assert_cmd::Command;
use std::path::Path;

/// The text of the README's section `heading` (up to the next heading of any level).
fn readme_section(heading: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("README has `{heading}`"));
    let rest = &readme[start + heading.len() + 2..];
    rest[..rest.find("\n#").unwrap_or(rest.len())].to_string()
}

/// The first `` `name` `` of each list item of a README section: what the item documents.
fn item_heads(section: &str) -> Vec<String> {
    section
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|item| item.split('`').nth(1).map(str::to_string))
        .collect()
}

fn help(args: &[&str]) -> String {
    let out = Command::cargo_bin("sanity").expect("binary").args(args).output().expect("runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_readme_and_the_help_list_every_method() {
    let ids = sanity_attribution::registry::method_ids();
    let section = readme_section("### Methods");
    for id in &ids {
        assert!(section.contains(&format!("`{id}`")), "README's Methods section does not document `{id}`");
    }
    for head in item_heads(&section) {
        assert!(ids.contains(&head.as_str()), "README's Methods section has an item on `{head}`, which is no method");
    }
    for args in [["attribute", "--help"], ["explain", "--help"]] {
        let text = help(&args);
        for id in &ids {
            assert!(text.contains(&format!("{id}: ")), "`sanity {}` does not list `{id}`", args.join(" "));
        }
    }
}

#[test]
fn the_readme_and_the_help_list_every_metric() {
    let ids = sanity_metrics::registry::metric_ids();
    let section = readme_section("### Metrics");
    for id in &ids {
        assert!(section.contains(&format!("`{id}`")), "README's Metrics section does not document `{id}`");
    }
    for args in [["compare", "--help"], ["explain", "--help"]] {
        let text = help(&args);
        for id in &ids {
            assert!(text.contains(&format!("{id}: ")), "`sanity {}` does not list `{id}`", args.join(" "));
        }
    }
}
