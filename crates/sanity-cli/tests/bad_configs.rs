//! Bad configs, one table: every case exits with code 2 and says where (the file, and its line
//! when the file writes the key), which key, and what is accepted or meant.

use assert_cmd::Command;
use std::path::Path;

/// A small valid config; every case changes one thing.
const BASE: &str = r#"name = "bad"
seed = 1

[data]
source = "phantom"
n_train = 32
n_test = 8
size = 32

[model]
arch = "phantom-cnn"

[training]
epochs = 1

[attribution]
n_images = 4
methods = [{ method = "gradient" }, { method = "integrated_gradients", steps = 8 }]

[[tests]]
kind = "cascading"

[[comparisons]]
postprocess = [{ step = "abs" }]
metrics = [{ metric = "spearman" }, { metric = "ssim", data_range = 1.0 }]
"#;

/// How a case changes [`BASE`].
enum Change {
    /// Replace the first occurrence of `.0` with `.1`.
    Replace(&'static str, &'static str),
    /// Append text (new tables) at the end.
    Append(&'static str),
    /// Pass `--set` overrides.
    Set(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    change: Change,
    /// Text on the line the error must point at (as `FILE:LINE` or `line LINE`), if any.
    line_of: Option<&'static str>,
    /// Fragments the message must contain.
    says: &'static [&'static str],
}

use Change::{Append, Replace, Set};

fn cases() -> Vec<Case> {
    let case = |name, change, line_of, says| Case { name, change, line_of, says };
    vec![
        // Unknown keys and misspelt names: the closest valid name is suggested.
        case(
            "unknown top-level key",
            Replace("name = \"bad\"", "nmae = \"bad\""),
            Some("nmae"),
            &["unknown field `nmae`", "did you mean `name`?"],
        ),
        case(
            "unknown attribution key",
            Replace("n_images = 4", "n_imags = 4"),
            Some("n_imags"),
            &["did you mean `n_images`?"],
        ),
        case(
            "misspelt method",
            Replace("{ method = \"gradient\" }", "{ method = \"gradcm\" }"),
            Some("gradcm"),
            &["unknown variant `gradcm`", "did you mean `gradcam`?"],
        ),
        case(
            "misspelt metric",
            Replace("{ metric = \"spearman\" }", "{ metric = \"spearmann\" }"),
            Some("spearmann"),
            &["did you mean `spearman`?"],
        ),
        case(
            "misspelt test kind",
            Replace("kind = \"cascading\"", "kind = \"cascadin\""),
            Some("cascadin"),
            &["did you mean `cascading`?"],
        ),
        case(
            "misspelt post-processing step",
            Replace("{ step = \"abs\" }", "{ step = \"normalise\", mode = \"min_max\" }"),
            Some("normalise"),
            &["did you mean `normalize`?"],
        ),
        case(
            "misspelt layer",
            Replace("kind = \"cascading\"", "kind = \"cascading\"\nstages = [\"logitt\"]"),
            Some("stages"),
            &["tests[0].stages", "this model has: conv1", "did you mean `logit`?"],
        ),
        case(
            "misspelt architecture",
            Replace("arch = \"phantom-cnn\"", "arch = \"phantom-cn\""),
            Some("arch ="),
            &["model.arch", "did you mean `phantom-cnn`?"],
        ),
        case(
            "misspelt preset",
            Replace("seed = 1", "seed = 1\npreset = \"adebayo2019\""),
            Some("preset ="),
            &["not a preset", "accepted: adebayo2018", "did you mean `adebayo2018`?"],
        ),
        case(
            "misspelt controls key",
            Append("[controls]\nrandom_mapp = true\n"),
            Some("random_mapp"),
            &["did you mean `random_map`?"],
        ),
        case(
            "misspelt data source",
            Replace("source = \"phantom\"", "source = \"fashion-mnist\""),
            Some("fashion-mnist"),
            &["expected one of", "did you mean `fashion_mnist`?"],
        ),
        // Wrong types.
        case(
            "seed as a string",
            Replace("seed = 1", "seed = \"x\""),
            Some("seed ="),
            &["invalid type: string \"x\", expected u64"],
        ),
        case("n_images as a float", Replace("n_images = 4", "n_images = 1.5"), Some("n_images"), &["expected usize"]),
        case(
            "methods as a string",
            Replace(
                "methods = [{ method = \"gradient\" }, { method = \"integrated_gradients\", steps = 8 }]",
                "methods = \"gradient\"",
            ),
            Some("methods ="),
            &["invalid type"],
        ),
        // Out-of-range values.
        case(
            "integrated gradients with 0 steps",
            Replace("steps = 8", "steps = 0"),
            Some("methods ="),
            &["attribution.methods[1]", "steps = 0", "accepted: >= 1"],
        ),
        case(
            "smoothgrad with negative noise",
            Replace("{ method = \"gradient\" }", "{ method = \"smoothgrad\", noise = -0.1 }"),
            Some("methods ="),
            &["attribution.methods[0]", "noise = -0.1; accepted: 0 to"],
        ),
        case(
            "smoothgrad with 0 samples",
            Replace("{ method = \"gradient\" }", "{ method = \"smoothgrad\", samples = 0 }"),
            Some("methods ="),
            &["samples >= 1"],
        ),
        case(
            "percentile above 100",
            Replace("{ step = \"abs\" }", "{ step = \"adebayo_abs\", percentile = 101.0 }"),
            Some("postprocess ="),
            &["comparisons[0].postprocess[0]", "0 < p <= 100"],
        ),
        case(
            "clip percentile 0",
            Replace("{ step = \"abs\" }", "{ step = \"clip_percentile\", p = 0.0 }"),
            Some("postprocess ="),
            &["0 < p <= 100"],
        ),
        case(
            "ssim without data_range",
            Replace(", data_range = 1.0", ""),
            Some("metrics ="),
            &["missing field `data_range`"],
        ),
        case(
            "ssim with data_range 0",
            Replace("data_range = 1.0", "data_range = 0.0"),
            Some("metrics ="),
            &["comparisons[0].metrics[1]", "> 0"],
        ),
        case(
            "top-k with k 0",
            Replace("{ metric = \"spearman\" }", "{ metric = \"top_k_intersection\", k = 0 }"),
            Some("metrics ="),
            &["k = 0", "accepted: 1 to"],
        ),
        case(
            "more images than the test set",
            Replace("n_images = 4", "n_images = 9"),
            Some("n_images"),
            &["attribution.n_images", "1..=8"],
        ),
        case(
            "attribution batch 0",
            Replace("n_images = 4", "n_images = 4\nbatch_size = 0"),
            Some("batch_size"),
            &["attribution.batch_size", "accepted: 1 to"],
        ),
        case(
            "confidence above 1",
            Append("[statistics]\nconfidence = 1.5\n"),
            Some("confidence"),
            &["statistics.confidence", "0 < confidence < 1"],
        ),
        case("alpha 0", Append("[statistics]\nalpha = 0.0\n"), Some("alpha"), &["statistics.alpha", "0 < alpha < 1"]),
        case(
            "0 epochs",
            Replace("epochs = 1", "epochs = 0"),
            Some("epochs = 0"),
            &["training.epochs", "accepted: 1 to"],
        ),
        case(
            "negative learning rate",
            Replace("epochs = 1", "epochs = 1\nlearning_rate = -0.1"),
            Some("learning_rate = -0.1"),
            &["training.learning_rate", "accepted: a finite value > 0"],
        ),
        case(
            "momentum 1",
            Replace("epochs = 1", "epochs = 1\noptimizer = \"sgd\"\nmomentum = 1.0"),
            Some("momentum"),
            &["training.momentum", "0 <= momentum < 1"],
        ),
        case(
            "truncated normal std 0",
            Replace(
                "kind = \"cascading\"",
                "kind = \"cascading\"\nreinit = { kind = \"truncated_normal\", std = 0.0 }",
            ),
            Some("reinit"),
            &["tests[0].reinit", "> 0"],
        ),
        case(
            "gaussian perturbation scale < 0",
            Replace(
                "kind = \"cascading\"",
                "kind = \"cascading\"\nreinit = { kind = \"gaussian_perturb\", scale = -1.0 }",
            ),
            Some("reinit"),
            &["tests[0].reinit", ">= 0"],
        ),
        case(
            "target accuracy above 1",
            Replace("kind = \"cascading\"", "kind = \"data_randomization\"\ntarget_accuracy = 1.5"),
            Some("target_accuracy"),
            &["tests[0].target_accuracy", "0 < target_accuracy <= 1"],
        ),
        case(
            "smooth MPRT noise < 0",
            Replace("kind = \"cascading\"", "kind = \"smooth_mprt\"\nnoise = -1.0"),
            Some("noise"),
            &["tests[0].noise", "accepted: 0 to"],
        ),
        case("phantom side too small", Replace("size = 32", "size = 8"), Some("[data]"), &["size", "16 to 256"]),
        // Names and combinations that do not exist for this model or config.
        case(
            "empty stage list",
            Replace("kind = \"cascading\"", "kind = \"cascading\"\nstages = []"),
            Some("stages"),
            &["tests[0].stages", "omit it for all layers"],
        ),
        case(
            "random logit on one logit",
            Replace("kind = \"cascading\"", "kind = \"random_logit\""),
            Some("[[tests]]"),
            &["at least 2 outputs"],
        ),
        case(
            "agreement with a method not run",
            Replace("kind = \"cascading\"", "kind = \"method_agreement\"\npairs = [[\"gradient\", \"gradcam\"]]"),
            Some("pairs"),
            &["`gradcam` is not one of attribution.methods"],
        ),
        case("a test listed twice", Append("[[tests]]\nkind = \"cascading\"\n"), None, &["tests[1]", "listed twice"]),
        case(
            "no methods",
            Replace(
                "methods = [{ method = \"gradient\" }, { method = \"integrated_gradients\", steps = 8 }]",
                "methods = []",
            ),
            Some("methods ="),
            &["attribution.methods", "list at least one method"],
        ),
        case(
            "efficient MPRT without entropy",
            Replace("kind = \"cascading\"", "kind = \"efficient_mprt\""),
            Some("[[tests]]"),
            &["discrete_entropy"],
        ),
        case(
            "name with a slash",
            Replace("name = \"bad\"", "name = \"a/b\""),
            Some("name ="),
            &["not usable as a directory name"],
        ),
        case(
            "missing weights file",
            Replace("arch = \"phantom-cnn\"", "arch = \"phantom-cnn\"\nweights = \"/nonexistent/w.safetensors\""),
            Some("weights"),
            &["model.weights", "no such file"],
        ),
        // Sweeps.
        case("empty sweep list", Append("[sweep]\nseed = []\n"), None, &["sweep.seed", "empty list"]),
        case(
            "sweep over an unknown key",
            Append("[sweep]\n\"training.epochz\" = [1, 2]\n"),
            None,
            &["epochz", "did you mean `epochs`?"],
        ),
        case(
            "sweep value of a wrong type",
            Append("[sweep]\n\"training.learning_rate\" = [0.1, \"fast\"]\n"),
            Some("\"training.learning_rate\""),
            &["sweep point training.learning_rate = fast", "key `training.learning_rate`", "expected f64"],
        ),
        case(
            "sweep value out of range",
            Append("[sweep]\n\"attribution.n_images\" = [2, 0]\n"),
            Some("\"attribution.n_images\""),
            &["sweep point attribution.n_images = 0", "key `attribution.n_images`"],
        ),
        case(
            "bad value beside a sweep",
            Replace("[attribution]\nn_images = 4", "[sweep]\nseed = [1, 2]\n\n[attribution]\nn_images = 40"),
            Some("n_images = 40"),
            &["sweep point seed = 1", "key `attribution.n_images`"],
        ),
        // --set overrides: the override is named.
        case(
            "--set of an unknown key",
            Set(&["attribution.n_imags=3"]),
            None,
            &["--set attribution.n_imags=3", "did you mean `n_images`?"],
        ),
        case(
            "--set of a wrong type",
            Set(&["attribution.n_images=abc"]),
            None,
            &["--set attribution.n_images=abc", "expected usize"],
        ),
        case(
            "--set past a list's end",
            Set(&["attribution.methods.5.steps=3"]),
            None,
            &["index 5 is out of range", "2 elements"],
        ),
        case("--set of a bad value", Set(&["attribution.methods.1.steps=0"]), None, &["steps = 0", ">= 1"]),
    ]
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_containing(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("`{needle}` in the case"))
}

#[test]
fn bad_configs_exit_2_and_say_where_what_and_what_is_accepted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let all = cases();
    assert!(all.len() >= 30, "the issue asks for at least 30 cases");
    let mut failures = Vec::new();
    for (k, case) in all.iter().enumerate() {
        let path = tmp.path().join(format!("case{k}.toml"));
        let text = match case.change {
            Replace(old, new) => {
                assert!(BASE.contains(old), "{}: `{old}` is not in the base", case.name);
                BASE.replacen(old, new, 1)
            }
            Append(more) => format!("{BASE}\n{more}"),
            Set(_) => BASE.to_string(),
        };
        std::fs::write(&path, &text).expect("write");
        let mut command = Command::cargo_bin("sanity").expect("binary");
        command.arg("plan").arg(&path);
        if let Set(sets) = case.change {
            for set in sets {
                command.args(["--set", set]);
            }
        }
        let out = command.output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit code {:?}", out.status.code()));
        }
        if !stderr.contains(&path.display().to_string()) {
            problems.push("the file is not named".into());
        }
        if let Some(needle) = case.line_of {
            let line = line_containing(&text, needle);
            let shown = [format!("{}:{line}:", path.display()), format!("line {line},")];
            if !shown.iter().any(|s| stderr.contains(s.as_str())) {
                problems.push(format!("line {line} is not given"));
            }
        }
        for fragment in case.says {
            if !stderr.contains(fragment) {
                problems.push(format!("no `{fragment}`"));
            }
        }
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n  {}", case.name, problems.join("; "), stderr.trim().replace('\n', "\n  ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), all.len(), failures.join("\n"));
}

#[test]
fn bad_command_lines_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("base.toml");
    std::fs::write(&config, BASE).expect("write");
    let out_dir = tmp.path().join("out");
    let runs: [(&[&str], &str); 4] = [
        (&["--shard", "3/2"], "0 <= K < N"),
        (&["--shard", "x"], "K/N"),
        (&["--threads", "0"], "accepted: a whole number from 1 to 1024"),
        (&["--set", "novalue"], "KEY=VALUE"),
    ];
    for (args, says) in runs {
        let out = Command::cargo_bin("sanity")
            .expect("binary")
            .arg("run")
            .arg(&config)
            .args(args)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!Path::new(&out_dir).join("scores.csv").exists(), "{args:?} wrote results");
    }
}
