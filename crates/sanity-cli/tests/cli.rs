//! End-to-end tests of the `sanity` binary on a tiny config.

mod common;
use assert_cmd::Command;
use common::{write_npy, write_npy_f32};
use std::path::{Path, PathBuf};

const TINY: &str = "tests/fixtures/tiny.toml";

fn sanity() -> Command {
    Command::cargo_bin("sanity").expect("the binary is built")
}

fn run_tiny(out: &Path, threads: &str) {
    sanity().args(["run", TINY, "--threads", threads, "--out"]).arg(out).assert().success();
}

/// `sanity train` of phantom-cnn on 32 phantoms for one epoch, writing `weights`.
fn train_tiny(weights: &Path) -> std::process::Output {
    let args =
        ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "32", "--epochs", "1", "--threads", "1"];
    sanity().args(args).arg("--out").arg(weights).output().expect("runs")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn run_writes_the_run_directory_and_is_identical_across_thread_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (one, two, four) = (tmp.path().join("one"), tmp.path().join("two"), tmp.path().join("four"));
    run_tiny(&one, "1");
    run_tiny(&two, "2");
    // Trained afresh with 4 threads (the others share the model cache): training is
    // deterministic across thread counts too.
    sanity().args(["run", TINY, "--threads", "4", "--no-model-cache", "--out"]).arg(&four).assert().success();
    assert_eq!(std::fs::read(one.join("model.safetensors")).ok(), std::fs::read(four.join("model.safetensors")).ok());
    for file in ["scores.csv", "summary.csv", "verdicts.csv", "config.resolved.toml"] {
        assert_eq!(read(one.join(file)), read(two.join(file)), "{file} differs between 1 and 2 threads");
        assert_eq!(read(one.join(file)), read(four.join(file)), "{file} differs between 1 and 4 threads");
    }
    assert!(tree(&one.join("maps")) == tree(&four.join("maps")), "maps/ differs between 1 and 4 threads");
    assert_eq!(std::fs::read(one.join("model.safetensors")).ok(), std::fs::read(two.join("model.safetensors")).ok());

    let scores = read(one.join("scores.csv"));
    let mut lines = scores.lines();
    assert_eq!(
        lines.next(),
        Some(
            "run_id,test,order,stage_index,stage,draw,method,method_b,postprocess,metric,sample,label,target,score,status"
        )
    );
    // (3 draws of 7 cascade stages and of 7 independent stages + 3 draws of the random-models
    // floor + 3 other controls) x 2 methods x (1 + 2 metrics) x 5 images, and one method pair
    // x 3 x 5.
    assert_eq!(lines.clone().count(), (3 * 7 + 3 * 7 + 3 + 3) * 2 * 3 * 5 + 3 * 5);
    let count = |pattern: &str| scores.lines().filter(|l| l.contains(pattern)).count();
    assert_eq!(count(",independent,,"), 3 * 7 * 2 * 3 * 5);
    assert_eq!(count(",method_agreement,,1,method_agreement,0,gradient,gradcam,"), 3 * 5);
    for (control, draws) in [("repeat", 1), ("random_models", 3), ("random_map", 1), ("sobel", 1)] {
        assert_eq!(count(&format!(",control,,1,{control},")), draws * 2 * 3 * 5, "{control}");
    }
    // A deterministic method's repeat is its own map: similarity 1 wherever it is defined.
    for line in scores.lines().filter(|l| l.contains(",control,,1,repeat,") && l.contains(",spearman,")) {
        let score = line.split(',').nth(13).expect("a score column");
        assert!(!line.ends_with(",ok") || (score.parse::<f64>().expect("a number") - 1.0).abs() < 1e-12, "{line}");
    }
    let first_stage: Vec<&str> = lines.next().expect("a row").split(',').collect();
    assert_eq!(
        (first_stage[1], first_stage[2], first_stage[3], first_stage[4]),
        ("cascading", "top_down", "1", "logit")
    );
    for line in scores.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (score, status) = (fields[13], fields[14]);
        assert!(
            (status == "ok" && score.parse::<f64>().is_ok_and(f64::is_finite)) || (status != "ok" && score.is_empty()),
            "a score must be a finite number with status ok, or empty with a reason: {line}"
        );
    }
    let summary = read(one.join("summary.csv"));
    assert!(summary.starts_with(
        "run_id,test,order,stage_index,stage,method,method_b,postprocess,metric,n,n_degenerate,n_degenerate_original,mean,std,sem,median,\
         ci_low,ci_high,ci_over,draws,draw_std,status,control_repeat,control_random_models,control_random_map,control_sobel"
    ));
    // A row per stage (over its draws), method, post-processing and metric.
    assert_eq!(summary.lines().count(), 1 + (7 + 7 + 4) * 2 * 3 + 3);
    let verdicts = read(one.join("verdicts.csv"));
    assert!(
        verdicts.starts_with("run_id,test,order,stage,method,postprocess,metric,n_pairs,mean,ceiling_mean,floor_mean,")
    );
    // The last cascade stage of each method, post-processing and metric.
    assert_eq!(verdicts.lines().count(), 1 + 2 * 3);

    let manifest: serde_json::Value = serde_json::from_str(&read(one.join("manifest.json"))).expect("manifest is JSON");
    assert_eq!(manifest["threads"], 1);
    // The second run found the first one's model in the shared cache instead of training.
    let second: serde_json::Value = serde_json::from_str(&read(two.join("manifest.json"))).expect("manifest is JSON");
    assert_eq!(manifest["model"]["origin"], "trained");
    assert!(second["model"]["origin"].as_str().is_some_and(|o| o.starts_with("trained (model cache")), "{second}");
    assert_eq!(manifest["model"]["epochs"], second["model"]["epochs"]);
    assert_eq!(manifest["seed"], 7);
    let accuracy = manifest["model"]["test_accuracy"].as_f64().expect("test accuracy");
    assert!((0.0..=1.0).contains(&accuracy));
    assert!(manifest["git_revision"].is_string() && manifest["timings_s"].is_array());
}

#[test]
fn runs_started_together_train_a_shared_model_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let binary = assert_cmd::cargo::cargo_bin("sanity");
    let one_test = "tests=[{ kind = \"cascading\" }]";
    let children: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            std::process::Command::new(&binary)
                .args(["run", TINY, "--threads", "1", "--set", one_test, "--out"])
                .arg(tmp.path().join(name))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starts")
        })
        .collect();
    let mut origins = Vec::new();
    for (child, name) in children.into_iter().zip(["a", "b", "c"]) {
        let out = child.wait_with_output().expect("runs");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let manifest: serde_json::Value =
            serde_json::from_str(&read(tmp.path().join(name).join("manifest.json"))).expect("manifest is JSON");
        origins.push(manifest["model"]["origin"].as_str().expect("origin").to_string());
    }
    // However the three overlap, one trains and the others load its model from the cache.
    assert_eq!(origins.iter().filter(|o| *o == "trained").count(), 1, "{origins:?}");
    assert_eq!(origins.iter().filter(|o| o.starts_with("trained (model cache")).count(), 2, "{origins:?}");
}

#[test]
fn expected_gradients_in_a_run_draws_from_the_training_images() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("eg");
    let methods = "attribution.methods=[{ method = \"expected_gradients\", samples = 4, batch = 16 }]";
    let tests = "tests=[{ kind = \"cascading\" }]";
    sanity()
        .args(["run", TINY, "--threads", "2", "--set", methods, "--set", tests, "--out"])
        .arg(&out)
        .assert()
        .success();
    let scores = read(out.join("scores.csv"));
    let rows: Vec<&str> = scores.lines().skip(1).collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.contains(",expected_gradients,")), "{scores}");
    assert!(rows.iter().any(|r| r.ends_with(",ok")), "no valid score: {scores}");
}

#[test]
fn random_logit_explains_another_class_of_a_multi_class_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("rl");
    let sets = [
        "model.arch=tests/fixtures/two-logits.toml",
        "tests=[{ kind = \"random_logit\" }]",
        "attribution.methods=[{ method = \"gradient\" }]",
        "controls.random_map=false",
        "controls.sobel=false",
    ];
    let mut command = sanity();
    command.args(["run", TINY, "--threads", "1", "--out"]).arg(&out);
    for set in sets {
        command.args(["--set", set]);
    }
    command.assert().success();
    let scores = read(out.join("scores.csv"));
    let random_logit: Vec<Vec<&str>> =
        scores.lines().filter(|l| l.contains(",random_logit,")).map(|l| l.split(',').collect()).collect();
    assert_eq!(random_logit.len(), 3 * 5, "{scores}");
    // Two classes: the random other class is the one that is not explained in the original.
    let original: Vec<Vec<&str>> =
        scores.lines().filter(|l| l.contains(",control,,1,repeat,")).map(|l| l.split(',').collect()).collect();
    let header: Vec<&str> = scores.lines().next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    for (r, o) in random_logit.iter().zip(&original) {
        assert_eq!(r[col("sample")], o[col("sample")], "same sample");
        assert_ne!(r[col("target")], o[col("target")], "another class: {r:?} {o:?}");
    }
    let verdicts = read(out.join("verdicts.csv"));
    assert_eq!(verdicts.lines().filter(|l| l.contains(",random_logit,")).count(), 3, "{verdicts}");
}

#[test]
fn data_randomization_trains_on_permuted_labels_and_reports_both_models() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("dr");
    let test = "tests=[{ kind = \"data_randomization\", target_accuracy = 0.99, max_epochs = 2 }]";
    sanity().args(["run", TINY, "--threads", "2", "--set", test, "--out"]).arg(&out).assert().success();
    let scores = read(out.join("scores.csv"));
    let rows = scores.lines().filter(|l| l.contains(",data_randomization,,1,random_labels,")).count();
    assert_eq!(rows, 2 * 3 * 5, "{scores}");
    assert!(out.join("model-random-labels.safetensors").exists());
    let manifest: serde_json::Value = serde_json::from_str(&read(out.join("manifest.json"))).expect("JSON");
    let report = &manifest["random_label_model"];
    for key in ["train_accuracy_random_labels", "train_accuracy_true_labels", "test_accuracy"] {
        assert!(report[key].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{key}: {report}");
    }
    // 48 phantoms do not get memorised in 2 epochs: the miss is reported, not hidden.
    assert_eq!(report["epochs"].as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(report["reached_target"], false);
    let verdicts = read(out.join("verdicts.csv"));
    assert_eq!(verdicts.lines().filter(|l| l.contains(",data_randomization,")).count(), 2 * 3, "{verdicts}");
}

#[test]
fn smooth_mprt_without_noise_is_the_cascade_and_efficient_mprt_reads_the_entropy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("mprt");
    let tests = "tests=[{ kind = \"cascading\", order = \"bottom_up\", stages = [\"conv4\", \"logit\"] }, \
                 { kind = \"smooth_mprt\", samples = 1, noise = 0.0, stages = [\"conv4\", \"logit\"] }, \
                 { kind = \"efficient_mprt\" }]";
    let metrics = "comparisons.1.metrics=[{ metric = \"spearman\" }, { metric = \"discrete_entropy\" }]";
    sanity()
        .args(["run", TINY, "--threads", "2", "--set", tests, "--set", metrics, "--out"])
        .arg(&out)
        .assert()
        .success();
    let scores = read(out.join("scores.csv"));
    let tail = |test: &str| -> Vec<String> {
        scores
            .lines()
            .filter(|l| l.contains(&format!(",{test},bottom_up,")))
            .map(|l| l.splitn(4, ',').nth(3).expect("columns").to_string())
            .collect()
    };
    // One noisy copy with zero noise is the method itself: the same rows as the cascade.
    assert_eq!(tail("smooth_mprt").len(), 3 * 2 * 2 * 3 * 5);
    assert_eq!(tail("smooth_mprt"), tail("cascading"));
    let efficient: Vec<&str> = scores.lines().filter(|l| l.contains(",efficient_mprt,,7,all,")).collect();
    assert_eq!(efficient.len(), 3 * 2 * 3 * 5, "{scores}");
    assert!(efficient.iter().any(|l| l.contains(",discrete_entropy,") && l.ends_with(",ok")));
    let without_entropy =
        sanity().args(["plan", TINY, "--set", "tests=[{ kind = \"efficient_mprt\" }]"]).output().expect("runs");
    assert_eq!(without_entropy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without_entropy.stderr).contains("discrete_entropy"));
}

#[test]
fn an_unknown_key_is_refused_with_exit_code_2_and_its_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("typo.toml");
    std::fs::write(&config, read(PathBuf::from(TINY)).replace("n_images = 5", "n_imagez = 5")).expect("write");
    let out = sanity().args(["run"]).arg(&config).args(["--out"]).arg(tmp.path().join("o")).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("n_imagez") && stderr.contains("line"), "{stderr}");
    assert!(!tmp.path().join("o").exists(), "nothing is created for a bad config");
}

#[test]
fn bad_values_and_names_are_refused_with_exit_code_2() {
    let cases: [(&str, &[&str]); 17] = [
        ("random-label subset of 0", &["tests=[{ kind = \"data_randomization\", n_train = 0 }]", "tests[0].n_train"]),
        ("negative perturbation", &["tests.1.reinit={ kind = \"gaussian_perturb\", scale = -0.1 }", "scale = -0.1"]),
        ("zero std", &["tests.0.reinit={ kind = \"truncated_normal\", std = 0.0 }", "std = 0"]),
        ("random logit of one logit", &["tests=[{ kind = \"random_logit\" }]", "at least 2 outputs"]),
        (
            "unknown method in a pair",
            &["tests.2.pairs=[[\"gradient\", \"occlusion\"]]", "not one of attribution.methods"],
        ),
        ("method paired with itself", &["tests.2.pairs=[[\"gradient\", \"gradient\"]]", "paired with itself"]),
        ("same test twice", &["tests=[{ kind = \"independent\" }, { kind = \"independent\" }]", "listed twice"]),
        ("alpha out of range", &["statistics.alpha=1.5", "0 < alpha < 1"]),
        ("misspelled method", &["attribution.methods=[{ method = \"gradiant\" }]", "gradient"]),
        ("unknown gradcam layer", &["attribution.methods=[{ method = \"gradcam\", layer = \"conv9\" }]", "conv4"]),
        ("too many images", &["attribution.n_images=500", "attribution.n_images"]),
        ("unknown stage", &["tests.0.stages=[\"conv1\", \"fc9\"]", "fc9"]),
        ("unknown preset", &["model.arch=resnet", "phantom-cnn"]),
        ("zero data range", &["comparisons.1.metrics.1.data_range=0.0", "data_range"]),
        (
            "occlusion stride over window",
            &["attribution.methods=[{ method = \"occlusion\", window = 2, stride = 3 }]", "stride <= window"],
        ),
        ("lrp alpha-beta", &["attribution.methods=[{ method = \"lrp_alpha_beta\", alpha = 2.0 }]", "alpha - beta = 1"]),
        (
            "noise tunnel over a bad inner method",
            &[
                "attribution.methods=[{ method = \"smoothgrad\", inner = { method = \"integrated_gradients\", steps = 0 } }]",
                "steps = 0",
            ],
        ),
    ];
    for (what, args) in cases {
        let out = sanity().args(["plan", TINY, "--set", args[0]]).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains(args[1]), "{what}: the message should mention `{}`: {stderr}", args[1]);
    }
}

#[test]
fn an_existing_run_is_not_overwritten_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("manifest.json"), "{}").expect("write");
    let result = sanity().args(["run", TINY, "--out"]).arg(&out).output().expect("runs");
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("--force"));
    assert_eq!(read(out.join("manifest.json")), "{}");
}

#[test]
fn plan_lists_the_cascade_and_the_resolved_defaults() {
    let out = sanity().args(["plan", TINY]).output().expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("logit -> dense2 -> dense1 -> conv4 -> conv3 -> conv2 -> conv1"), "{stdout}");
    assert!(stdout.contains("layer = \"conv4\""), "GradCAM's default layer is resolved: {stdout}");
    let embedded = sanity().args(["plan"]).output().expect("runs");
    assert!(embedded.status.success() && String::from_utf8_lossy(&embedded.stdout).contains("quick"));
}

#[test]
fn a_sweep_runs_every_point_into_its_own_directory_with_param_columns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("sweep.toml");
    let sweep = "\n[sweep]\n\"tests.0.order\" = [\"top_down\", \"bottom_up\"]\n";
    std::fs::write(&config, read(PathBuf::from(TINY)) + sweep).expect("write");
    let out = tmp.path().join("runs");
    let set = "tests=[{ kind = \"cascading\" }]";
    let result = sanity()
        .arg("run")
        .arg(&config)
        .args(["--threads", "2", "--set", set, "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let dirs: Vec<PathBuf> = String::from_utf8_lossy(&result.stdout).lines().map(PathBuf::from).collect();
    assert_eq!(dirs.len(), 2);
    for (dir, order) in dirs.iter().zip(["top_down", "bottom_up"]) {
        assert_eq!(dir.parent(), Some(out.as_path()), "{}", dir.display());
        let scores = read(dir.join("scores.csv"));
        assert!(scores.lines().next().is_some_and(|h| h.ends_with(",status,param_tests_0_order")), "{scores}");
        let cascade: Vec<&str> = scores.lines().filter(|l| l.contains(",cascading,")).collect();
        assert!(
            !cascade.is_empty()
                && cascade
                    .iter()
                    .all(|l| l.contains(&format!(",cascading,{order},")) && l.ends_with(&format!(",{order}"))),
            "{scores}"
        );
        assert!(read(dir.join("summary.csv")).lines().next().is_some_and(|h| h.ends_with("param_tests_0_order")));
    }
    // `sanity report` on the sweep's folder reports every run in it.
    let reported = sanity().arg("report").arg(&out).output().expect("runs");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    assert_eq!(String::from_utf8_lossy(&reported.stdout).lines().count(), 2);
    assert!(dirs.iter().all(|d| d.join("report.md").exists() && d.join("figures").is_dir()));
    let listing = sanity().arg("plan").arg(&config).args(["--set", set]).output().expect("runs");
    assert!(
        String::from_utf8_lossy(&listing.stdout).starts_with("2 runs"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );
}

#[test]
fn merged_shards_equal_the_unsharded_run_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = tmp.path().join("whole");
    run_tiny(&whole, "2");
    let shards: Vec<PathBuf> = (0..2).map(|k| tmp.path().join(format!("shard{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        let shard = format!("{k}/2");
        sanity().args(["run", TINY, "--threads", "1", "--shard", &shard, "--out"]).arg(dir).assert().success();
        assert!(!dir.join("summary.csv").exists(), "a shard writes no summary");
    }
    let merged = tmp.path().join("merged");
    sanity().arg("merge").args(&shards).arg("--out").arg(&merged).assert().success();
    for file in
        ["scores.csv", "summary.csv", "verdicts.csv", "units.jsonl", "config.resolved.toml", "model.safetensors"]
    {
        assert!(
            std::fs::read(whole.join(file)).expect("whole") == std::fs::read(merged.join(file)).expect("merged"),
            "{file} differs between the merged shards and the unsharded run"
        );
    }
    // The example maps come from both shards (tiny's 4 examples span batches 0 and 1).
    assert!(tree(&whole.join("maps")) == tree(&merged.join("maps")), "maps/ differs");
    // examples.csv, then per example its input and 2 methods' maps under 49 models: the original,
    // 3 draws of 7 cascade stages and of 7 independent ones, and 3 pairs of random models; and
    // the mask of each example with an effusion (label 1).
    let effusions =
        read(whole.join("maps/examples.csv")).lines().skip(1).filter(|l| l.split(',').nth(1) == Some("1")).count();
    let masks = tree(&whole.join("maps")).keys().filter(|p| p.ends_with("mask.npy")).count();
    assert!(effusions > 0 && masks == effusions, "{masks} masks for {effusions} effusion examples");
    assert_eq!(tree(&whole.join("maps")).len(), 1 + 4 * (1 + 2 * (1 + 3 * 7 + 3 * 7 + 3 * 2)) + masks);
    // A missing shard is named, not papered over.
    let partial = tmp.path().join("partial");
    let out = sanity().arg("merge").arg(&shards[0]).arg("--out").arg(&partial).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing shard"), "{}", String::from_utf8_lossy(&out.stderr));
    for bad in ["2/2", "1/0", "x/2"] {
        let out = sanity().args(["plan", TINY]).output().expect("runs");
        assert!(out.status.success());
        let out =
            sanity().args(["run", TINY, "--shard", bad, "--out"]).arg(tmp.path().join("bad")).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "--shard {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("0 <= K < N"));
    }
}

/// Starts the real binary on TINY with `sets` into `out`, waits until its journal has `lines`
/// lines (0: until the run directory exists), then sends `signal` (`KILL` or `INT`); returns the
/// exit status and stderr.
fn interrupt_run(out: &Path, sets: &[&str], lines: usize, signal: &str) -> (std::process::ExitStatus, String) {
    let journal = out.join("units.jsonl");
    let reached = || match lines {
        0 => out.join("config.resolved.toml").exists(),
        n => std::fs::read_to_string(&journal).is_ok_and(|j| j.lines().count() >= n),
    };
    interrupt_run_when(out, sets, reached, signal)
}

/// Starts the real binary on TINY with `sets` into `out`, waits until `reached` (two minutes
/// at most), then sends `signal`; returns the exit status and stderr.
fn interrupt_run_when(
    out: &Path,
    sets: &[&str],
    reached: impl Fn() -> bool,
    signal: &str,
) -> (std::process::ExitStatus, String) {
    let binary = assert_cmd::cargo::cargo_bin("sanity");
    let child = std::process::Command::new(&binary)
        .args(["run", TINY, "--threads", "1"])
        .args(sets)
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !reached() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // A signal after the run ended, or to a run that never got there, would test nothing.
    assert!(reached(), "the run did not get to the point of the {signal} in 120 s");
    assert!(child.try_wait().expect("waits").is_none(), "the run ended before the {signal}");
    let sent = std::process::Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{signal}");
    let output = child.wait_with_output().expect("reaped");
    (output.status, String::from_utf8_lossy(&output.stderr).to_string())
}

#[test]
fn runs_killed_or_interrupted_at_several_points_resume_to_the_files_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Twelve one-image batches: the signals land well before the end.
    let sets = ["--set", "attribution.n_images=12", "--set", "attribution.batch_size=1"];
    let whole = tmp.path().join("whole");
    sanity().args(["run", TINY, "--threads", "2"]).args(sets).arg("--out").arg(&whole).assert().success();
    let points: [(usize, &str); 6] = [(0, "KILL"), (1, "KILL"), (5, "KILL"), (9, "KILL"), (3, "INT"), (6, "TERM")];
    for (k, (lines, signal)) in points.into_iter().enumerate() {
        let resumed = tmp.path().join(format!("resumed{k}"));
        let (status, stderr) = interrupt_run(&resumed, &sets, lines, signal);
        if signal == "INT" || signal == "TERM" {
            // SIGINT or SIGTERM: the batch in flight is finished and journalled, then exit code 130.
            assert_eq!(status.code(), Some(130), "{stderr}");
            assert!(stderr.contains("interrupted") && stderr.contains("--resume"), "{stderr}");
            let journal = read(resumed.join("units.jsonl"));
            assert!(journal.ends_with('\n'), "no torn line after SIGINT: {journal}");
            let finished = journal.lines().count();
            assert!(stderr.contains(&format!("{finished} of 12 image batches")), "{stderr}");
        }
        assert!(!resumed.join("summary.csv").exists(), "stopped before the end ({signal} after {lines})");
        // Without --resume the directory is refused; with it the run finishes.
        let refused = sanity().args(["run", TINY]).args(sets).arg("--out").arg(&resumed).output().expect("runs");
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
        sanity()
            .args(["run", TINY, "--threads", "2", "--resume"])
            .args(sets)
            .arg("--out")
            .arg(&resumed)
            .assert()
            .success();
        for file in ["scores.csv", "summary.csv", "verdicts.csv", "units.jsonl", "model.safetensors"] {
            assert!(
                std::fs::read(whole.join(file)).expect("whole") == std::fs::read(resumed.join(file)).expect("resumed"),
                "{file} differs between the run resumed after {signal} at {lines} batches and the uninterrupted run"
            );
        }
        assert!(tree(&whole.join("maps")) == tree(&resumed.join("maps")), "maps/ after {signal} at {lines}");
    }
}

/// Twelve epochs of about a tenth of a second, a checkpoint every second one: wide enough a
/// window for a signal to land while a model trains.
const TWELVE_EPOCHS: [&str; 6] =
    ["--set", "data.n_train=100", "--set", "training.epochs=12", "--set", "training.checkpoint_every=2"];

#[test]
fn runs_stopped_while_training_go_on_from_the_checkpoint_to_the_files_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Every model trained afresh; the random-label model does not reach its target (0.999).
    let tests =
        "tests=[{ kind = \"data_randomization\", max_epochs = 12, target_accuracy = 0.999 }, { kind = \"cascading\" }]";
    let sets = [&["--no-model-cache"], &TWELVE_EPOCHS[..], &["--set", tests]].concat();
    let whole = tmp.path().join("whole");
    sanity().args(["run", TINY, "--threads", "1"]).args(&sets).arg("--out").arg(&whole).assert().success();
    let manifest = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&read(dir.join("manifest.json"))).expect("manifest is JSON")
    };
    let checkpoint = |dir: &Path, folder: &str, epoch: usize| dir.join(folder).join(format!("epoch-{epoch:04}.toml"));
    // SIGKILL while the model trains; SIGINT while the random-label model trains.
    let cuts = [("KILL", "checkpoints", "model"), ("INT", "checkpoints-random-labels", "random_label_model")];
    for (signal, folder, entry) in cuts {
        let cut = tmp.path().join(signal);
        let (status, stderr) = interrupt_run_when(&cut, &sets, || checkpoint(&cut, folder, 2).exists(), signal);
        if signal == "INT" {
            // Stopped after the epoch in flight (3 or later, before the last), its state saved
            // although it is not a checkpoint epoch.
            assert_eq!(status.code(), Some(130), "{stderr}");
            let said =
                |e: usize| stderr.contains(&format!("training on permuted labels stopped after epoch {e} of 12"));
            let epoch = (3..12).find(|&e| said(e)).unwrap_or_else(|| panic!("stopped while training: {stderr}"));
            assert!(checkpoint(&cut, folder, epoch).exists() && stderr.contains("--resume"), "{stderr}");
            assert!(cut.join("model.safetensors").exists());
        }
        assert!(!cut.join("model-random-labels.safetensors").exists(), "{signal} landed after training");
        // The KILL case goes on with the model cache on: --resume also finds the run
        // directory's checkpoints then, and adds the later ones to them.
        let resume_sets = if signal == "KILL" { &sets[1..] } else { &sets[..] };
        let resumed = sanity()
            .args(["run", TINY, "--threads", "1", "--resume"])
            .args(resume_sets)
            .arg("--out")
            .arg(&cut)
            .output()
            .expect("runs");
        assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
        for file in ["model.safetensors", "model-random-labels.safetensors", "scores.csv", "summary.csv"] {
            assert!(
                std::fs::read(whole.join(file)).expect("whole") == std::fs::read(cut.join(file)).expect("resumed"),
                "{file} differs between the run resumed after {signal} while training and the uninterrupted run"
            );
        }
        let (a, b) = (manifest(&whole), manifest(&cut));
        assert_eq!(a[entry]["epochs"], b[entry]["epochs"], "every epoch's statistics, also those before the cut");
        let origin = b[entry]["origin"].as_str().unwrap_or_default();
        assert!(origin.starts_with("trained (went on from the checkpoint of epoch"), "{signal}: {origin}");
        assert!(checkpoint(&cut, folder, 2).exists() && checkpoint(&cut, folder, 12).exists(), "{signal}");
    }
    // --force starts afresh: the old checkpoints go.
    let fresh = ["--set", "training.checkpoint_every=0"];
    let mut forced = sanity();
    forced.args(["run", TINY, "--threads", "1", "--force"]).args(&sets).args(fresh).arg("--out").arg(&whole);
    forced.assert().success();
    assert!(!whole.join("checkpoints").exists() && !whole.join("checkpoints-random-labels").exists());
}

#[test]
fn a_model_whose_training_was_killed_is_trained_on_by_the_next_run_that_needs_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sets = [&TWELVE_EPOCHS[..], &["--set", "tests=[{ kind = \"cascading\" }]"]].concat();
    // The checkpoints of a model being trained lie beside the model cache (OUT/../.model-cache).
    let cache = tmp.path().join(".model-cache");
    let cached_checkpoints = || -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&cache) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "checkpoints"))
            .collect()
    };
    let killed = tmp.path().join("killed");
    let second_written = || cached_checkpoints().iter().any(|d| d.join("epoch-0002.toml").exists());
    let (_, stderr) = interrupt_run_when(&killed, &sets, second_written, "KILL");
    assert!(!killed.join("model.safetensors").exists(), "the kill landed after training: {stderr}");
    // Another run (not a --resume of the killed one) takes the model over.
    let next = tmp.path().join("next");
    let out =
        sanity().args(["run", TINY, "--threads", "1"]).args(&sets).arg("--out").arg(&next).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("training: going on after epoch"), "{stderr}");
    // Its checkpoints end in its run directory, and the model is the one of a training that never stopped.
    assert!(cached_checkpoints().is_empty(), "{:?}", cached_checkpoints());
    assert!(next.join("checkpoints").join("epoch-0012.toml").exists());
    let whole = tmp.path().join("whole");
    sanity()
        .args(["run", TINY, "--threads", "1", "--no-model-cache"])
        .args(&sets)
        .arg("--out")
        .arg(&whole)
        .assert()
        .success();
    assert!(
        std::fs::read(whole.join("model.safetensors")).expect("whole")
            == std::fs::read(next.join("model.safetensors")).expect("next")
    );

    // A damaged checkpoint beside the cache (a node crash mid-write) is dropped, not fatal.
    let other_seed = [&sets[..], &["--set", "seed=1"]].concat();
    let (_, stderr) = interrupt_run_when(&tmp.path().join("killed-again"), &other_seed, second_written, "KILL");
    let damaged = cached_checkpoints().pop().unwrap_or_else(|| panic!("no checkpoints beside the cache: {stderr}"));
    for entry in std::fs::read_dir(&damaged).expect("folder") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".optimizer.safetensors") {
            std::fs::write(&path, b"").expect("truncate");
        }
    }
    let after = tmp.path().join("after-damage");
    let out = sanity()
        .args(["run", TINY, "--threads", "1"])
        .args(&other_seed)
        .arg("--out")
        .arg(&after)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("not going on from") && stderr.contains("dropped"), "{stderr}");
}

#[test]
fn a_run_on_numpy_arrays_splits_them_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 40 grey 32x32 images: class 1 is bright in the top half, class 0 in the bottom half.
    let (n, side) = (40usize, 32usize);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
    let mut pixels = Vec::with_capacity(n * side * side);
    for (i, &label) in labels.iter().enumerate() {
        for y in 0..side {
            for x in 0..side {
                let bright = (y < side / 2) == (label == 1);
                pixels.push(if bright { 200u8 } else { 20 } + ((i * 7 + x * 3 + y) % 13) as u8);
            }
        }
    }
    let (images, labels_path) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"));
    write_npy(&images, "|u1", &[n, side, side], &pixels);
    let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    write_npy(&labels_path, "<i8", &[n], &label_bytes);
    let data = format!(
        "data={{ source = \"arrays\", images = \"{}\", labels = \"{}\", test_fraction = 0.25 }}",
        images.display(),
        labels_path.display()
    );
    let out = tmp.path().join("run");
    let sets =
        ["--set", &data, "--set", "model.arch=tests/fixtures/two-logits.toml", "--set", "attribution.n_images=6"];
    sanity().args(["run", TINY, "--threads", "2"]).args(sets).arg("--out").arg(&out).assert().success();
    let manifest: serde_json::Value = serde_json::from_str(&read(out.join("manifest.json"))).expect("JSON");
    assert_eq!(
        (
            manifest["data"]["source"].as_str(),
            manifest["data"]["n_train"].as_u64(),
            manifest["data"]["n_test"].as_u64()
        ),
        (Some("arrays"), Some(30), Some(10))
    );
    assert!(read(out.join("scores.csv")).lines().count() > 1);
    // Six labels for forty images: the labels file is named with what it should hold.
    write_npy(&labels_path, "<i8", &[6], &label_bytes[..48]);
    let result = sanity().args(["plan", TINY]).args(sets).output().expect("runs");
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("y.npy") && stderr.contains("expected [40]"), "{stderr}");
}

#[test]
fn a_run_on_an_image_folder_reads_resizes_and_splits_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("xrays");
    for (class, bright_top) in [("effusion", true), ("normal", false)] {
        std::fs::create_dir_all(dir.join(class)).expect("mkdir");
        for i in 0..10u32 {
            // 40x40 grey images, resized to 32x32 by the loader.
            let image = image::GrayImage::from_fn(40, 40, |x, y| {
                image::Luma([if (y < 20) == bright_top { 200 } else { 30 } + ((x * 3 + y + i) % 11) as u8])
            });
            image.save(dir.join(class).join(format!("{i:02}.png"))).expect("save png");
        }
    }
    let data = format!(
        "data={{ source = \"image_folder\", dir = \"{}\", height = 32, width = 32, test_fraction = 0.3 }}",
        dir.display()
    );
    let out = tmp.path().join("run");
    let sets =
        ["--set", &data, "--set", "model.arch=tests/fixtures/two-logits.toml", "--set", "attribution.n_images=4"];
    sanity().args(["run", TINY, "--threads", "2"]).args(sets).arg("--out").arg(&out).assert().success();
    let manifest: serde_json::Value = serde_json::from_str(&read(out.join("manifest.json"))).expect("JSON");
    let data = &manifest["data"];
    assert_eq!(
        (data["source"].as_str(), data["n_train"].as_u64(), data["n_test"].as_u64()),
        (Some("image_folder"), Some(14), Some(6))
    );
    // Results are not written into the input folder.
    let inside = sanity().args(["run", TINY]).args(sets).arg("--out").arg(dir.join("runs/a")).output().expect("runs");
    assert_eq!(inside.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&inside.stderr);
    assert!(stderr.contains("inside the input folder") && stderr.contains("data.dir"), "{stderr}");
    assert!(!dir.join("runs").exists(), "nothing written");
    // An output path under a file: the error names the path.
    std::fs::write(tmp.path().join("file"), "x").expect("write");
    let under_file =
        sanity().args(["run", TINY]).args(sets).arg("--out").arg(tmp.path().join("file/run")).output().expect("runs");
    // An I/O error (exit 1), reported, not a panic (101).
    let stderr = String::from_utf8_lossy(&under_file.stderr);
    assert_eq!(under_file.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("file/run") && !stderr.contains("panicked"), "{stderr}");
    std::fs::create_dir_all(dir.join("pleural_thickening")).expect("an empty class");
    let result = sanity().args(["plan", TINY]).args(sets).output().expect("runs");
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("pleural_thickening"));
}

#[test]
fn sgd_training_writes_checkpoints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("sgd");
    let sets = [
        "--set",
        "training={ epochs = 2, batch_size = 16, optimizer = \"sgd\", momentum = 0.9, learning_rate = 0.01, checkpoint_every = 1 }",
        "--set",
        "tests=[{ kind = \"cascading\" }]",
    ];
    sanity()
        .args(["run", TINY, "--threads", "2", "--no-model-cache"])
        .args(sets)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    for epoch in ["epoch-0001", "epoch-0002"] {
        assert!(out.join("checkpoints").join(format!("{epoch}.safetensors")).exists(), "{epoch}");
    }
    // The last checkpoint is the trained model.
    assert_eq!(
        std::fs::read(out.join("checkpoints/epoch-0002.safetensors")).expect("checkpoint"),
        std::fs::read(out.join("model.safetensors")).expect("model")
    );
    let bad = sanity().args(["plan", TINY, "--set", "training.momentum=1.5"]).output().expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0 <= momentum < 1"));
}

#[test]
fn every_shipped_config_makes_a_plan() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("experiments/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 6, "{configs:?}");
    for config in configs {
        let out = sanity().arg("plan").arg(&config).output().expect("runs");
        assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn train_goes_on_from_its_checkpoints_to_the_weights_of_one_longer_training() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = |out: &Path, epochs: &str, more: &[&str]| {
        let args = ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "32", "--threads", "1"];
        let output = sanity()
            .args(args)
            .args(["--epochs", epochs, "--checkpoint-every", "1"])
            .args(more)
            .arg("--out")
            .arg(out)
            .output()
            .expect("runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let (whole, cut) = (tmp.path().join("whole.safetensors"), tmp.path().join("cut.safetensors"));
    train(&whole, "4", &[]);
    assert!(tmp.path().join("whole.checkpoints").join("epoch-0004.toml").exists());
    train(&cut, "2", &[]);
    let stderr = train(&cut, "4", &["--resume"]);
    assert!(stderr.contains("going on after epoch 2"), "{stderr}");
    assert!(std::fs::read(&whole).expect("whole") == std::fs::read(&cut).expect("cut"), "weights differ");
    // Other settings cannot go on from them; training afresh clears them.
    let args = ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "32", "--epochs", "5"];
    let other = sanity().args(args).args(["--lr", "0.01", "--resume", "--out"]).arg(&cut).output().expect("runs");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("learning_rate") && stderr.contains("delete the folder or train without --resume"),
        "{stderr}"
    );
    // Four epochs' checkpoints of three files each (weights, optimiser state, metadata).
    let files = std::fs::read_dir(tmp.path().join("cut.checkpoints")).expect("folder").count();
    assert_eq!(files, 4 * 3);
    let afresh = train(&cut, "1", &[]);
    assert!(afresh.contains(&format!("removed {files} files of an earlier training's checkpoints")), "{afresh}");

    // Ctrl-C stops after the epoch in flight, its state saved although no checkpoints were
    // asked for; --resume goes on from it to where uninterrupted training ends.
    let longer = ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "100", "--threads", "1"];
    let longer = [&longer[..], &["--epochs", "8"]].concat();
    let (eight, stopped) = (tmp.path().join("eight.safetensors"), tmp.path().join("stopped.safetensors"));
    sanity().args(&longer).arg("--out").arg(&eight).assert().success();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sanity"))
        .args(&longer)
        .arg("--out")
        .arg(&stopped)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    // The signal goes once the first epoch's note is out (the handler is installed before).
    let mut stderr = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    while !stderr.contains("epoch 1:") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut lines, &mut line).expect("reads") == 0 {
            break;
        }
        stderr.push_str(&line);
    }
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()));
    std::io::Read::read_to_string(&mut lines, &mut stderr).expect("reads");
    assert_eq!(child.wait().expect("reaped").code(), Some(130), "{stderr}");
    let said = |e: usize| stderr.contains(&format!("training stopped after epoch {e} of 8"));
    let epoch = (1..8).find(|&e| said(e)).unwrap_or_else(|| panic!("stopped while training: {stderr}"));
    let saved = tmp.path().join("stopped.checkpoints").join(format!("epoch-{epoch:04}.toml"));
    assert!(saved.exists() && !stopped.exists(), "the state is saved, no weights written: {stderr}");
    let resumed = sanity().args(&longer).args(["--resume", "--out"]).arg(&stopped).output().expect("runs");
    let resumed_stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        resumed.status.success() && resumed_stderr.contains(&format!("going on after epoch {epoch}")),
        "{resumed_stderr}"
    );
    assert!(std::fs::read(&eight).expect("eight") == std::fs::read(&stopped).expect("stopped"), "weights differ");
}

#[test]
fn train_writes_weights_that_a_run_can_load() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("m.safetensors");
    let out = train_tiny(&weights);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("test accuracy"));
    let run_dir = tmp.path().join("run");
    let set = format!("model.weights={}", weights.display());
    sanity()
        .args(["run", TINY, "--set", &set, "--set", "data.size=64", "--threads", "1", "--out"])
        .arg(&run_dir)
        .assert()
        .success();
    let manifest: serde_json::Value =
        serde_json::from_str(&read(run_dir.join("manifest.json"))).expect("manifest is JSON");
    assert_eq!(manifest["model"]["origin"], weights.display().to_string());
    let bad = sanity()
        .args(["train", "--arch", "phantom-cnn", "--data", "mnist", "--out"])
        .arg(&weights)
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fashion-mnist"));
}

#[test]
fn attribute_writes_maps_as_npy_and_refuses_bad_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("m.safetensors");
    let trained = train_tiny(&weights);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let input = tmp.path().join("x.npy");
    let data: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
    write_npy_f32(&input, &[3, 1, 32, 32], &data);
    let attribute = |extra: &[&str]| {
        let mut cmd = sanity();
        cmd.args(["attribute", "--arch", "phantom-cnn", "--weights"]).arg(&weights).arg("--input").arg(&input);
        cmd.args(extra).arg("--out").arg(tmp.path().join("maps.npy"));
        cmd.output().expect("runs")
    };
    for (method, channels) in [("integrated_gradients", 1), ("gradcam", 1), ("guided_backprop", 1)] {
        let mut args = vec!["--method", method];
        if method == "integrated_gradients" {
            args.extend(["--set", "steps=4"]);
        }
        let out = attribute(&args);
        assert!(out.status.success(), "{method}: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(tmp.path().join("maps.npy")).expect("maps written");
        let header = String::from_utf8_lossy(&bytes[10..bytes.len().min(128)]).replace(' ', "");
        assert!(header.contains(&format!("(3,{channels},32,32")) && header.contains("<f4"), "{method}: {header}");
        let header_len = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(bytes.len() - header_len, 3 * channels * 32 * 32 * 4, "{method}: payload size");
    }
    // Expected gradients draws baselines from --references (here the inputs themselves).
    let out =
        attribute(&["--method", "expected_gradients", "--set", "samples=4", "--references", &input.to_string_lossy()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = attribute(&["--method", "expected_gradients"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--references"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = attribute(&["--method", "gradiant"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gradient"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = attribute(&["--method", "gradient", "--target", "4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compare_scores_map_pairs_as_csv_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b, small) = (tmp.path().join("a.npy"), tmp.path().join("b.npy"), tmp.path().join("small.npy"));
    let values =
        |salt: usize| -> Vec<f32> { (0..3 * 16 * 16).map(|i| (((i * 37 + salt) % 101) as f32) / 101.0).collect() };
    write_npy_f32(&a, &[3, 16, 16], &values(0));
    write_npy_f32(&b, &[3, 16, 16], &values(11));
    write_npy_f32(&small, &[3, 8, 8], &values(0)[..192]);
    let compare = |extra: &[&str], second: &Path| {
        let mut cmd = sanity();
        cmd.arg("compare").arg(&a).arg(second).args(extra);
        cmd.output().expect("runs")
    };
    let out = compare(
        &["--metric", "spearman", "--metric", "{ metric = \"ssim\", data_range = 1.0 }", "--postprocess", "abs"],
        &b,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "pair,postprocess,metric,score,status");
    assert_eq!(lines.len(), 1 + 3 * 2, "{csv}");
    assert!(lines[1].starts_with("0,abs,spearman,") && lines[1].ends_with(",ok"), "{csv}");
    // The same maps give 1.
    let same = compare(&["--metric", "pearson"], &a);
    assert!(
        String::from_utf8_lossy(&same.stdout).contains("0,raw,pearson,1,ok"),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    for (args, second, expected) in [
        (vec!["--metric", "spearmann"], &b, "spearman"),
        (vec!["--metric", "{ metric = \"ssim\" }"], &b, "data_range"),
        (vec!["--metric", "spearman"], &small, "shape"),
    ] {
        let out = compare(&args, second);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.insert(path.strip_prefix(dir).expect("inside").to_path_buf(), bytes);
            }
        }
    }
    files
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn report_draws_each_test_and_the_same_run_gives_the_same_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    // Every kind of figure: staged tests (curves, grids), a single-stage test (scores, grids)
    // and method agreement; the two-logit model also allows the random logit test.
    let tests = "tests=[{ kind = \"cascading\" }, { kind = \"independent\" }, { kind = \"random_logit\" }, \
                 { kind = \"data_randomization\", target_accuracy = 0.99, max_epochs = 1 }, { kind = \"method_agreement\" }]";
    let sets = ["model.arch=tests/fixtures/two-logits.toml", tests, "report.examples=3"];
    let mut command = sanity();
    command.args(["run", TINY, "--threads", "2", "--out"]).arg(&out);
    for set in sets {
        command.args(["--set", set]);
    }
    command.assert().success();
    // The kept maps: 3 examples, each with its input and every model's map of each method.
    let examples = read(out.join("maps/examples.csv"));
    assert_eq!(examples.lines().count(), 1 + 3, "{examples}");
    assert!(examples.starts_with("sample,label,target,prediction,probability"), "{examples}");
    for file in ["input", "original.gradient", "cascading.top_down.logits.gradcam", "independent.conv1.gradient"] {
        assert!(out.join(format!("maps/image-0002/{file}.npy")).exists(), "{file}");
    }
    for file in
        ["data_randomization.random_labels.gradcam", "random_logit.gradient", "control.random_models.b.gradient"]
    {
        assert!(out.join(format!("maps/image-0000/{file}.npy")).exists(), "{file}");
    }

    let printed = sanity().arg("report").arg(&out).output().expect("runs");
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    assert_eq!(String::from_utf8_lossy(&printed.stdout), format!("{}\n", out.join("report.md").display()));
    let figures = out.join("figures");
    // The two-logit model has one conv and one linear layer: the cascade grid has the input,
    // the original and 2 stages as columns, one row per method.
    let grid = figures.join("maps-cascading-top_down-abs--normalize_min_max-image-0001.png");
    // The expected sizes come from the grid's own layout for that many rows and columns.
    let layout_of = |shared: bool| {
        use sanity_report::figures::{colormap::ColorMap, grid, raster::Scale};
        let grid = grid::MapGrid {
            title: String::new(),
            rows: vec!["gradient".into(), "gradcam".into()],
            columns: Vec::new(),
            cells: Vec::new(),
            shared: shared.then_some((Scale::Sequential { lo: 0.0, hi: 1.0 }, ColorMap::Gray)),
            note: String::new(),
            mask: None,
        };
        grid::GridLayout::of(&grid, 112)
    };
    // As wide as the cells, or wider where the title needs it (never cut).
    let (width, height) = png_size(&grid);
    let cells = layout_of(true).size(2, 4);
    assert!(height == cells.1 && width >= cells.0, "2 method rows; input, original, 2 stages; a colour bar");
    for name in [
        "curves-cascading-top_down-raw",
        "curves-independent-abs--normalize_min_max",
        "scores-random_logit-raw",
        "scores-data_randomization-abs--normalize_min_max",
        "agreement-raw",
    ] {
        assert!(figures.join(format!("{name}.png")).exists(), "{name}.png");
        let svg = read(figures.join(format!("{name}.svg")));
        assert!(svg.contains("gradcam"), "{name}.svg names the methods");
    }
    for name in ["maps-random_logit-raw-image-0000", "maps-data_randomization-raw-image-0002"] {
        let (width, height) = png_size(&figures.join(format!("{name}.png")));
        let cells = layout_of(false).size(2, 3);
        assert!(height == cells.1 && width >= cells.0, "{name}: input, original and the test's model");
    }
    // report.md embeds every figure it names, and they exist.
    let md = read(out.join("report.md"));
    for heading in [
        "## Cascading randomisation",
        "## Independent",
        "## Random logit",
        "## Data randomisation",
        "## Method agreement",
        "## Verdicts",
        "## Summary",
    ] {
        assert!(md.contains(heading), "{heading}");
    }
    let linked: Vec<&str> = md.split("](").skip(1).filter_map(|s| s.split(')').next()).collect();
    assert!(linked.len() > 10, "{linked:?}");
    for link in linked {
        assert!(out.join(link).exists(), "report.md links {link}");
    }
    // Every figure is named as the README's figure table says, placeholders filled with the
    // run's tests, cascade orders, post-processing (each `+` written `--`) and example images.
    let readme = read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"));
    let patterns: Vec<String> = readme
        .lines()
        .filter(|l| ["| `curves-", "| `maps-", "| `scores-", "| `agreement-"].iter().any(|p| l.starts_with(p)))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    assert_eq!(patterns.len(), 4, "{patterns:?}");
    let mut documented = std::collections::BTreeSet::new();
    let tests = [("cascading", Some("top_down")), ("independent", None), ("random_logit", None)];
    let tests = tests.into_iter().chain([("data_randomization", None), ("method_agreement", None)]);
    for (test, order) in tests {
        for post in ["raw", "abs--normalize_min_max"] {
            for n in 0..3 {
                for pattern in &patterns {
                    let name = pattern
                        .replace("<test>", test)
                        .replace("[-<order>]", &order.map(|o| format!("-{o}")).unwrap_or_default())
                        .replace("<postprocess>", post)
                        .replace("<n>", &format!("{n:04}"));
                    documented.insert(name.clone());
                    documented.insert(name.replace(".png", ".svg"));
                }
            }
        }
    }
    for file in std::fs::read_dir(&figures).expect("figures").map(|e| e.expect("entry").file_name()) {
        let file = file.to_string_lossy().to_string();
        assert!(documented.contains(&file), "{file} is not named as the README documents: {patterns:?}");
    }
    // Drawn again: the same bytes.
    let before = tree(&figures);
    sanity().arg("report").arg(&out).assert().success();
    assert!(before == tree(&figures), "figures differ between two reports of one run");
    assert!(before.keys().all(|p| p.extension().is_some_and(|e| e == "png" || e == "svg")));
}

#[test]
fn report_refuses_a_directory_that_is_not_a_finished_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = sanity().arg("report").arg(tmp.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.resolved.toml") && stderr.contains("not a finished run"), "{stderr}");
    let small = sanity().arg("report").arg(tmp.path()).args(["--cell", "4"]).output().expect("runs");
    assert_eq!(small.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&small.stderr).contains("--cell"));
}

#[test]
fn force_clears_a_run_directory_but_not_a_project_folder_of_the_same_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A folder that is not a run directory, with its own figures/: --force must leave them.
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join("figures")).expect("mkdir");
    std::fs::write(project.join("figures/plot.png"), "mine").expect("write");
    sanity().args(["run", TINY, "--threads", "2", "--force", "--out"]).arg(&project).assert().success();
    assert!(project.join("figures/plot.png").exists(), "a project's figures/ survives --force");
    // Once it is a run directory, --force clears the previous report.
    sanity().arg("report").arg(&project).assert().success();
    assert!(project.join("report.md").exists());
    sanity().args(["run", TINY, "--threads", "2", "--force", "--out"]).arg(&project).assert().success();
    assert!(!project.join("report.md").exists() && !project.join("figures").exists(), "the old report is gone");
}

#[test]
fn explain_draws_one_figure_per_image_and_scores_every_pair_of_methods() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("w.safetensors");
    assert!(train_tiny(&weights).status.success());
    let out = tmp.path().join("explain");
    let methods = "gradient,gradcam,integrated_gradients";
    let args = ["explain", "--arch", "phantom-cnn", "--data", "phantom", "--methods", methods, "--n", "3"];
    let mut command = sanity();
    command.args(args).args(["--panel", "96", "--threads", "2", "--weights"]).arg(&weights).arg("--out").arg(&out);
    command.args(["--postprocess", "abs", "--postprocess", "{ step = \"normalize\", mode = \"min_max\" }"]);
    command.args(["--metric", "spearman", "--metric", "{ metric = \"ssim\", data_range = 1.0 }"]).assert().success();
    for sample in 0..3 {
        let (w, h) = png_size(&out.join(format!("explain-{sample:04}.png")));
        // The image and 3 methods, each panel with room for its colour bar.
        assert_eq!((w, h), sanity_report::figures::overlay::OverlayLayout { panel: 96 }.size(3, ""));
    }
    let csv = read(out.join("agreement.csv"));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("sample,label,target,prediction,probability,method,method_b,postprocess,metric,score,status")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3 * 3 * 2, "3 images x 3 pairs x 2 metrics:\n{csv}");
    assert!(rows.iter().any(|r| r.contains(",gradcam,integrated_gradients,abs+normalize_min_max,ssim,")), "{csv}");
    // Unknown methods and bad post-processing exit with 2 and say what is accepted.
    for (flag, value, expected) in [("--methods", "gradcm", "gradcam"), ("--postprocess", "abss", "abs")] {
        let mut command = sanity();
        command.args(["explain", "--arch", "phantom-cnn", "--data", "phantom", "--n", "1", "--weights"]).arg(&weights);
        command.arg("--out").arg(tmp.path().join("bad"));
        if flag != "--methods" {
            command.args(["--methods", "gradient"]);
        }
        let out = command.args([flag, value]).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag) && stderr.contains(&format!("did you mean `{expected}`")), "{stderr}");
    }
    // The colour map and opacity are options; values out of range exit with 2, naming them.
    let jet = tmp.path().join("jet");
    let mut command = sanity();
    command.args(["explain", "--arch", "phantom-cnn", "--data", "phantom", "--n", "1", "--methods", "gradient"]);
    command.args(["--colormap", "jet", "--alpha", "0.8", "--weights"]).arg(&weights).arg("--out").arg(&jet);
    command.assert().success();
    assert!(jet.join("explain-0000.png").exists());
    for (flag, value, expected) in [("--alpha", "1.5", "from 0 to 1"), ("--colormap", "viridis", "diverging")] {
        let mut command = sanity();
        command.args(["explain", "--arch", "phantom-cnn", "--data", "phantom", "--n", "1", "--methods", "gradient"]);
        command.args([flag, value, "--weights"]).arg(&weights).arg("--out").arg(tmp.path().join("bad"));
        let out = command.output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && stderr.contains(flag) && stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn maps_of_a_diverged_model_are_counted_as_degenerate_never_averaged_as_nan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("w.safetensors");
    assert!(train_tiny(&weights).status.success());
    // Every value of the file's first tensor becomes the largest float: finite weights whose
    // activations overflow (NaN weights themselves are refused: tests/reliability.rs).
    let mut bytes = std::fs::read(&weights).expect("read");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).expect("JSON header");
    let (_, first) = header.as_object().expect("object").iter().find(|(k, _)| *k != "__metadata__").expect("a tensor");
    let offsets: Vec<usize> =
        first["data_offsets"].as_array().expect("offsets").iter().map(|v| v.as_u64().expect("u64") as usize).collect();
    let start = 8 + header_len;
    for chunk in bytes[start + offsets[0]..start + offsets[1]].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::MAX.to_le_bytes());
    }
    std::fs::write(&weights, &bytes).expect("write");
    let out = tmp.path().join("run");
    let set = format!("model.weights={}", weights.display());
    let data = "data={ source = \"phantom\", n_train = 32, n_test = 12, size = 64 }";
    let ran = sanity().args(["run", TINY, "--threads", "2", "--set", &set, "--set", data, "--out"]).arg(&out).output();
    let ran = ran.expect("runs");
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let scores = read(out.join("scores.csv"));
    assert!(!scores.contains("NaN") && !scores.contains(",nan"), "no NaN is written");
    assert!(scores.contains(",non_finite") || scores.contains(",constant_map"), "statuses are given");
    let mut summary = csv_rows(&read(out.join("summary.csv")));
    let header = summary.remove(0);
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (n_degenerate, mean, status) = (col("n_degenerate"), col("mean"), col("status"));
    let degenerate: Vec<&Vec<String>> =
        summary.iter().filter(|r| r[n_degenerate].parse::<usize>().expect("count") > 0).collect();
    assert!(!degenerate.is_empty(), "degenerate maps are counted");
    for row in &summary {
        assert!(!row[mean].to_lowercase().contains("nan"), "{row:?}");
        if row[mean].is_empty() {
            assert_ne!(row[status], "ok", "an empty mean says why: {row:?}");
        }
    }
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn train_and_explain_take_numpy_arrays_as_an_inline_data_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 20 images 1x32x32: class 1 bright on top, class 0 bright below.
    let (n, side) = (20usize, 32usize);
    let mut pixels = Vec::with_capacity(n * side * side);
    let mut labels = Vec::new();
    for i in 0..n {
        let class = i % 2;
        for y in 0..side {
            for x in 0..side {
                let bright = (y < side / 2) == (class == 1);
                pixels.push(if bright { 0.8 } else { 0.1 } + ((x + y + i) % 5) as f32 * 0.01);
            }
        }
        labels.extend((class as i64).to_le_bytes());
    }
    write_npy_f32(&tmp.path().join("x.npy"), &[n, 1, side, side], &pixels);
    write_npy(&tmp.path().join("y.npy"), "<i8", &[n], &labels);
    let data = format!(
        "{{ source = \"arrays\", images = \"{}\", labels = \"{}\", test_fraction = 0.25 }}",
        tmp.path().join("x.npy").display(),
        tmp.path().join("y.npy").display()
    );
    let weights = tmp.path().join("w.safetensors");
    let arch = "tests/fixtures/two-logits.toml";
    sanity()
        .args(["train", "--arch", arch, "--data", &data, "--epochs", "1", "--threads", "1", "--out"])
        .arg(&weights)
        .assert()
        .success();
    let out = tmp.path().join("explained");
    let args =
        ["explain", "--arch", arch, "--data", &data, "--methods", "gradient,gradcam", "--n", "2", "--panel", "64"];
    sanity().args(args).arg("--weights").arg(&weights).arg("--out").arg(&out).assert().success();
    let rows = read(out.join("agreement.csv")).lines().count();
    assert_eq!(rows, 1 + 2, "2 images x 1 pair x spearman");
    assert_eq!(std::fs::read_dir(&out).expect("dir").count(), 3, "2 figures and agreement.csv");
    // A misspelt source in the inline table is named with the closest one.
    let bad = sanity()
        .args(["explain", "--arch", arch, "--data", "{ source = \"aray\" }", "--methods", "gradient"])
        .arg("--weights")
        .arg(&weights)
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("did you mean `arrays`?"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The `localisation` rows of a run's `scores.csv`: (stage, method, postprocess, metric,
/// sample, score, status).
fn localisation_rows(scores: &str) -> Vec<Vec<String>> {
    let mut lines = scores.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let columns = ["stage", "method", "postprocess", "metric", "sample", "score", "status", "test", "label"].map(at);
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|f| columns.iter().map(|&c| f[c].to_string()).collect::<Vec<_>>())
        .filter(|r| r[7] == "localisation" || r[7] == "cascading")
        .collect()
}

#[test]
fn localisation_scores_every_model_s_maps_against_the_masks_with_controls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    let tests = "tests=[{ kind = \"cascading\" }, { kind = \"independent\" }, { kind = \"localisation\", metrics = [{ metric = \"pointing_game\" }, { metric = \"auc\" }, { metric = \"top_k_in_mask\", k = 20 }] }]";
    sanity().args(["run", TINY, "--threads", "2", "--set", tests, "--out"]).arg(&out).assert().success();
    let all = localisation_rows(&read(out.join("scores.csv")));
    // The phantom's effusion images (label 1) hold the object; normal ones have empty masks.
    let with_object: std::collections::BTreeSet<&str> =
        all.iter().filter(|r| r[7] == "cascading" && r[8] == "1").map(|r| r[4].as_str()).collect();
    assert!(!with_object.is_empty());
    let rows: Vec<&Vec<String>> = all.iter().filter(|r| r[7] == "localisation").collect();
    let mut groups: std::collections::BTreeMap<(&str, &str, &str, &str), Vec<&str>> = Default::default();
    for r in &rows {
        groups.entry((r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str())).or_default().push(r[4].as_str());
        assert!(["ok", "constant_map"].contains(&r[6].as_str()), "{r:?}");
    }
    let stages: std::collections::BTreeSet<&str> = groups.keys().map(|k| k.0).collect();
    assert!(stages.contains("trained") && stages.contains("control"), "{stages:?}");
    assert!(stages.iter().any(|s| s.starts_with("cascading.")) && stages.iter().any(|s| s.starts_with("independent.")));
    for (key, samples) in &groups {
        // One row per image with an object (and draw), none for the others.
        let distinct: std::collections::BTreeSet<&str> = samples.iter().copied().collect();
        assert_eq!(distinct, with_object, "{key:?}");
    }
    let methods: std::collections::BTreeSet<&str> = groups.keys().filter(|k| k.0 == "control").map(|k| k.1).collect();
    assert_eq!(methods, ["random_map", "sobel", "uniform"].into_iter().collect());
    assert!(rows.iter().filter(|r| r[1] == "uniform" && r[3] == "auc").all(|r| r[5] == "0.5"));

    // Data without masks: refused at the plan, naming the test and what is accepted.
    let fashion = "data={ source = \"fashion_mnist\", n_train = 10, n_test = 10 }";
    let cnn = "model.arch=adebayo-cnn";
    let refused = sanity().args(["plan", TINY, "--set", tests, "--set", fashion, "--set", cnn]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tests[2]") && stderr.contains("ground-truth masks") && stderr.contains("mask_dir"),
        "{stderr}"
    );
}
