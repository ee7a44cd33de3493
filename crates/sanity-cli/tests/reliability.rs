//! Nothing silent, nothing unbounded: the real binary killed at every phase of a run and
//! resumed, models reused only for the same content, merges that refuse incomplete shards, one
//! run per directory, diverged trainings and non-finite weights and inputs refused.

mod common;
use assert_cmd::Command;
use common::write_npy_f32;
use std::path::{Path, PathBuf};

const TINY: &str = "tests/fixtures/tiny.toml";

fn sanity() -> Command {
    Command::cargo_bin("sanity").expect("the binary is built")
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// TINY with a data randomisation test, so that both models of a run are covered.
fn with_random_labels(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(TINY).expect("tiny")
        + "\n[[tests]]\nkind = \"data_randomization\"\ntarget_accuracy = 0.6\nmax_epochs = 3\nn_train = 16\n";
    let path = dir.join("tiny-random-labels.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// The manifest without what differs between any two runs (timings, memory, start time, where
/// the models came from).
fn stable_manifest(dir: &Path) -> serde_json::Value {
    let mut manifest: serde_json::Value = serde_json::from_slice(&read(&dir.join("manifest.json"))).expect("JSON");
    let m = manifest.as_object_mut().expect("object");
    for volatile in ["timings_s", "peak_rss_mib", "started_unix", "host"] {
        m.remove(volatile);
    }
    for model in ["model", "random_label_model"] {
        if let Some(report) = m.get_mut(model).and_then(|r| r.as_object_mut()) {
            report.remove("origin");
        }
    }
    manifest
}

#[test]
fn a_run_killed_at_every_phase_resumes_to_the_files_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = with_random_labels(tmp.path());
    let run = |out: &Path, extra: &[&str], kill_at: Option<&str>| {
        let mut cmd = sanity();
        cmd.arg("run").arg(&config).args(["--threads", "1", "--no-model-cache"]).args(extra).arg("--out").arg(out);
        if let Some(point) = kill_at {
            cmd.env("SANITY_TEST_KILL_AT", point);
        }
        cmd.output().expect("runs")
    };
    let whole = tmp.path().join("whole");
    let out = run(&whole, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // Three image batches of two images (tiny explains five).
    let points = [
        "after_training",
        "rows_written",
        "batch:0",
        "batch:2",
        "after_scores_rename",
        "inside_summary",
        "inside_manifest",
    ];
    for point in points {
        let dir = tmp.path().join(point.replace(':', "-"));
        let killed = run(&dir, &[], Some(point));
        assert!(!killed.status.success() && killed.status.code().is_none(), "{point}: not killed: {}", stderr(&killed));
        assert!(stderr(&killed).contains(&format!("killed at {point}")), "{point}: {}", stderr(&killed));
        assert!(!dir.join("manifest.json").exists(), "{point}: killed before the manifest");
        let resumed = run(&dir, &["--resume"], None);
        assert!(resumed.status.success(), "{point}: {}", stderr(&resumed));
        for file in [
            "scores.csv",
            "summary.csv",
            "verdicts.csv",
            "units.jsonl",
            "model.safetensors",
            "model.json",
            "model-random-labels.safetensors",
            "model-random-labels.json",
            "inputs.json",
        ] {
            assert!(read(&whole.join(file)) == read(&dir.join(file)), "{file} differs after a kill at {point}");
        }
        assert_eq!(stable_manifest(&whole), stable_manifest(&dir), "manifest after a kill at {point}");
        // A second --resume of the finished run changes nothing and says so.
        let again = run(&dir, &["--resume"], None);
        assert!(again.status.success() && stderr(&again).contains("nothing to resume"), "{}", stderr(&again));
    }
    // Scores shorter than their journal (rows lost after the journal vouched for them) are
    // refused, not resumed into a summary of fewer rows.
    let dir = tmp.path().join("lost-rows");
    assert!(!run(&dir, &[], Some("batch:1")).status.success());
    let partial = dir.join("scores.csv.partial");
    let bytes = read(&partial);
    std::fs::write(&partial, &bytes[..bytes.len() - 10]).expect("cut");
    let resumed = run(&dir, &["--resume"], None);
    assert_eq!(resumed.status.code(), Some(2), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("batch 1") && stderr(&resumed).contains("--force"), "{}", stderr(&resumed));
}

/// 40 grey 32x32 images whose class shows in the top or bottom half, drawn with `variant`, and
/// their labels (as float32 whole numbers), written to `x.npy` and `y.npy` in `dir`.
fn write_arrays(dir: &Path, variant: usize) -> String {
    let (n, side) = (40usize, 32usize);
    let mut pixels = Vec::with_capacity(n * side * side);
    for i in 0..n {
        for y in 0..side {
            for x in 0..side {
                let bright = (y < side / 2) == (i % 2 == 1);
                let base = if bright { 0.8 } else { 0.1 };
                pixels.push(base + ((i * 7 + x * 3 + y + variant * 5) % 13) as f32 / 100.0);
            }
        }
    }
    write_npy_f32(&dir.join("x.npy"), &[n, side, side], &pixels);
    let labels: Vec<f32> = (0..n).map(|i| ((i + variant) % 2) as f32).collect();
    write_npy_f32(&dir.join("y.npy"), &[n], &labels);
    format!(
        "data={{ source = \"arrays\", images = \"{}\", labels = \"{}\", test_fraction = 0.25 }}",
        dir.join("x.npy").display(),
        dir.join("y.npy").display()
    )
}

#[test]
fn a_model_is_reused_only_for_the_same_data_bytes_and_a_resume_refuses_changed_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = write_arrays(tmp.path(), 0);
    let out = tmp.path().join("runs").join("run");
    let run = |extra: &[&str]| {
        let sets =
            ["--set", &data, "--set", "model.arch=tests/fixtures/two-logits.toml", "--set", "attribution.n_images=4"];
        sanity()
            .args(["run", TINY, "--threads", "1"])
            .args(sets)
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("runs")
    };
    let first = run(&[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let trained_on_first = read(&out.join("model.safetensors"));
    // The same files under the same names, other bytes: the cache must not answer.
    write_arrays(tmp.path(), 1);
    let second = run(&["--force"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(!stderr(&second).contains("from the model cache"), "{}", stderr(&second));
    assert!(read(&out.join("model.safetensors")) != trained_on_first, "the model of the old data was reused");
    // The first data again: now the cache answers, with the first model.
    write_arrays(tmp.path(), 0);
    let third = run(&["--force"]);
    assert!(stderr(&third).contains("from the model cache"), "{}", stderr(&third));
    assert!(read(&out.join("model.safetensors")) == trained_on_first);
    // A resumed run whose data changed since it started would mix two experiments.
    std::fs::remove_file(out.join("manifest.json")).expect("unfinish");
    write_arrays(tmp.path(), 1);
    let resumed = run(&["--resume"]);
    assert_eq!(resumed.status.code(), Some(2), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("the training data") && stderr(&resumed).contains("changed"),
        "{}",
        stderr(&resumed)
    );
}

#[test]
fn merge_refuses_a_shard_cut_short_or_torn_and_leaves_no_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shards: Vec<PathBuf> = (0..2).map(|k| tmp.path().join(format!("shard{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        let shard = format!("{k}/2");
        sanity().args(["run", TINY, "--threads", "1", "--shard", &shard, "--out"]).arg(dir).assert().success();
    }
    let scores = shards[1].join("scores.csv");
    let whole = read(&scores);
    let merged = tmp.path().join("merged");
    let line_end = whole.len() - 1 - whole[..whole.len() - 1].iter().rev().position(|&b| b == b'\n').expect("lines");
    // Cut by a whole row, cut inside a row, and a stray row after the journalled ones.
    let stray: Vec<u8> = [&whole[..], &whole[line_end + 1..]].concat();
    let cases: [(&[u8], &str); 3] =
        [(&whole[..line_end + 1], "cut short"), (&whole[..whole.len() - 7], "cut short"), (&stray, "after its last")];
    for (bytes, expected) in cases {
        std::fs::write(&scores, bytes).expect("damage");
        let out = sanity().arg("merge").args(&shards).arg("--out").arg(&merged).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("shard1") && message.contains(expected) && message.contains("batch"), "{message}");
        assert!(!merged.exists(), "a refused merge left {}", merged.display());
    }
    std::fs::write(&scores, &whole).expect("mend");
    // A shard whose run did not finish, and shards of other inputs, are refused too.
    let manifest = shards[1].join("manifest.json");
    let kept = read(&manifest);
    std::fs::remove_file(&manifest).expect("unfinish");
    let out = sanity().arg("merge").args(&shards).arg("--out").arg(&merged).output().expect("runs");
    assert!(out.status.code() == Some(2) && stderr(&out).contains("did not finish"), "{}", stderr(&out));
    std::fs::write(&manifest, kept).expect("mend");
    let inputs = shards[1].join("inputs.json");
    let kept = read(&inputs);
    std::fs::write(&inputs, String::from_utf8_lossy(&kept).replace("hash", "hash 0")).expect("other inputs");
    let out = sanity().arg("merge").args(&shards).arg("--out").arg(&merged).output().expect("runs");
    assert!(out.status.code() == Some(2) && stderr(&out).contains("inputs"), "{}", stderr(&out));
    assert!(!merged.exists());
    std::fs::write(&inputs, kept).expect("mend");
    sanity().arg("merge").args(&shards).arg("--out").arg(&merged).assert().success();
}

#[test]
fn a_second_run_on_a_run_directory_in_use_is_refused_with_the_holder_s_pid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    let sets = ["--set", "attribution.n_images=12", "--set", "attribution.batch_size=1"];
    let binary = assert_cmd::cargo::cargo_bin("sanity");
    let mut first = std::process::Command::new(&binary)
        .args(["run", TINY, "--threads", "1", "--no-model-cache"])
        .args(sets)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.join("config.resolved.toml").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Frozen while it holds the directory, so that the second run surely meets it running.
    let pid = first.id();
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name}");
    };
    signal("STOP");
    assert!(first.try_wait().expect("waits").is_none(), "the first run ended before the second started");
    for flag in ["--resume", "--force"] {
        let second = sanity().args(["run", TINY, "--threads", "1", flag]).args(sets).arg("--out").arg(&out).output();
        let second = second.expect("runs");
        assert_eq!(second.status.code(), Some(2), "{flag}: {}", stderr(&second));
        let message = stderr(&second);
        assert!(message.contains("in use") && message.contains(&format!("pid {pid}")), "{message}");
    }
    signal("CONT");
    assert!(first.wait().expect("waits").success(), "the first run was disturbed");
    assert!(out.join("manifest.json").exists());
}

#[test]
fn a_diverged_training_fails_and_saves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    let run = sanity()
        .args(["run", TINY, "--threads", "1", "--no-model-cache", "--set", "training.learning_rate=1e30", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("diverged"), "{}", stderr(&run));
    assert!(!out.join("model.safetensors").exists() && !out.join("scores.csv").exists());
    let weights = tmp.path().join("w.safetensors");
    let train = sanity()
        .args(["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "64", "--epochs", "3"])
        .args(["--batch-size", "16", "--lr", "1e30", "--threads", "1", "--out"])
        .arg(&weights)
        .output()
        .expect("runs");
    assert_eq!(train.status.code(), Some(1), "{}", stderr(&train));
    assert!(stderr(&train).contains("diverged") && !weights.exists(), "{}", stderr(&train));
}

#[test]
fn non_finite_weights_and_inputs_are_refused_naming_the_tensor_or_the_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("w.safetensors");
    let args = ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "32", "--epochs", "1"];
    sanity().args(args).args(["--threads", "1", "--out"]).arg(&weights).assert().success();
    let input = tmp.path().join("x.npy");
    let mut pixels: Vec<f32> = (0..2 * 32 * 32).map(|i| (i % 17) as f32 / 17.0).collect();
    write_npy_f32(&input, &[2, 1, 32, 32], &pixels);
    let attribute = |weights: &Path| {
        sanity()
            .args(["attribute", "--arch", "phantom-cnn", "--method", "gradient", "--weights"])
            .arg(weights)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(tmp.path().join("maps.npy"))
            .output()
            .expect("runs")
    };
    assert!(attribute(&weights).status.success());
    // The last value of the file's data is the last tensor's (in name order) last value.
    let mut bytes = read(&weights);
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    let poisoned = tmp.path().join("nan.safetensors");
    std::fs::write(&poisoned, &bytes).expect("write");
    let out = attribute(&poisoned);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nan.safetensors") && stderr(&out).contains("finite"), "{}", stderr(&out));
    let run = sanity()
        .args(["run", TINY, "--threads", "1", "--set"])
        .arg(format!("model.weights=\"{}\"", poisoned.display()))
        .arg("--out")
        .arg(tmp.path().join("run"))
        .output()
        .expect("runs");
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    pixels[1000] = f32::INFINITY;
    write_npy_f32(&input, &[2, 1, 32, 32], &pixels);
    let out = attribute(&weights);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("flat index 1000") && stderr(&out).contains("x.npy"), "{}", stderr(&out));
}

#[test]
fn wrong_values_are_refused_naming_the_value_the_key_or_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let expect_2 = |output: std::process::Output, needles: &[&str]| {
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "`{needle}` not in: {message}");
        }
    };
    // A seed beyond TOML's integers is named as such, not as "invalid type: string".
    expect_2(
        sanity().args(["plan", TINY, "--set", "seed=18446744073709551616"]).output().expect("runs"),
        &["18446744073709551616", "does not fit"],
    );
    // --out naming a regular file is not "an interrupted run".
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    expect_2(sanity().args(["run", TINY, "--out"]).arg(&file).output().expect("runs"), &["is a file"]);
    // A shard beyond the units of work does nothing, and says so (a job array may be wider
    // than the work).
    let idle = sanity().args(["run", TINY, "--shard", "5/1000000", "--out"]).arg(tmp.path().join("s")).output();
    let idle = idle.expect("runs");
    assert!(idle.status.success() && stderr(&idle).contains("nothing to do"), "{}", stderr(&idle));
    assert!(stderr(&idle).contains("3 units of work"), "{}", stderr(&idle));
    assert!(!tmp.path().join("s").exists());
    let train = |extra: &[&str]| {
        sanity()
            .args(["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "8"])
            .args(extra)
            .arg("--out")
            .arg(tmp.path().join("w.safetensors"))
            .output()
            .expect("runs")
    };
    expect_2(train(&["--epochs", "0"]), &["--epochs", "accepted"]);
    expect_2(train(&["--stop-at-accuracy", "2.0"]), &["--stop-at-accuracy", "accepted"]);
    assert!(!tmp.path().join("w.safetensors").exists(), "untrained weights were saved");
    // Every training label of one class: no classifier can be trained on it.
    let (n, side) = (12usize, 32usize);
    let pixels: Vec<f32> = (0..n * side * side).map(|i| (i % 11) as f32 / 11.0).collect();
    write_npy_f32(&tmp.path().join("x.npy"), &[n, side, side], &pixels);
    write_npy_f32(&tmp.path().join("y.npy"), &[n], &vec![1.0; n]);
    let data = format!(
        "data={{ source = \"arrays\", images = \"{}\", labels = \"{}\" }}",
        tmp.path().join("x.npy").display(),
        tmp.path().join("y.npy").display()
    );
    expect_2(sanity().args(["plan", TINY, "--set", &data]).output().expect("runs"), &["one class"]);
    // --targets with a negative or fractional entry names its index.
    let weights = tmp.path().join("m.safetensors");
    sanity()
        .args(["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "8", "--epochs", "1", "--out"])
        .arg(&weights)
        .assert()
        .success();
    write_npy_f32(&tmp.path().join("in.npy"), &[3, 1, side, side], &pixels[..3 * side * side]);
    for (bad, index) in [(-1.0f32, 1), (0.5, 2)] {
        let mut targets = vec![0.0f32; 3];
        targets[index] = bad;
        write_npy_f32(&tmp.path().join("t.npy"), &[3], &targets);
        let out = sanity()
            .args(["attribute", "--arch", "phantom-cnn", "--method", "gradient", "--weights"])
            .arg(&weights)
            .arg("--input")
            .arg(tmp.path().join("in.npy"))
            .arg("--targets")
            .arg(tmp.path().join("t.npy"))
            .arg("--out")
            .arg(tmp.path().join("maps.npy"))
            .output()
            .expect("runs");
        expect_2(out, &["t.npy", &format!("at index {index}")]);
    }
    // A report of an edited summary is bad input (exit 2), naming the file.
    let run = tmp.path().join("run");
    sanity().args(["run", TINY, "--threads", "1", "--out"]).arg(&run).assert().success();
    let summary = std::fs::read_to_string(run.join("summary.csv")).expect("summary");
    std::fs::write(run.join("summary.csv"), summary.replacen(",cascading,", ",cascading,x,y,", 1)).expect("tamper");
    expect_2(sanity().arg("report").arg(&run).output().expect("runs"), &["summary.csv"]);
}
