//! A run that would answer nothing is refused by `plan`: a CAM at a layer of one pixel, a
//! metric that cannot score maps of the model's size (SSIM's window, HOG's blocks, top-k's k).

mod common;
use assert_cmd::Command;

const TINY: &str = "tests/fixtures/tiny.toml";

fn plan(sets: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::cargo_bin("sanity").expect("the binary is built");
    cmd.args(["plan", TINY]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().expect("runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_cam_at_a_one_pixel_layer_is_refused_naming_the_method_the_layer_and_its_size() {
    // lesson-cnn on 64x64 phantoms: six pools leave conv7 at 1x1 (the shipped lesson's bug).
    let sets = [
        "model.arch=\"lesson-cnn\"",
        "data.size=64",
        "attribution.methods=[{ method = \"gradcam\", layer = \"conv7\" }, { method = \"gradient\" }]",
    ];
    let (code, stderr) = plan(&sets);
    assert_eq!(code, Some(2), "{stderr}");
    for needle in ["attribution.methods[0]", "gradcam", "`conv7`", "1x1", "`conv5` 4x4"] {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
    // Inside a noise tunnel the same layer is refused too; a layer with pixels left is fine.
    let tunnel =
        "attribution.methods=[{ method = \"smoothgrad\", inner = { method = \"layercam\", layer = \"conv7\" } }]";
    let (code, stderr) = plan(&[sets[0], sets[1], tunnel]);
    assert_eq!(code, Some(2), "{stderr}");
    let fine = "attribution.methods=[{ method = \"gradcam\", layer = \"conv5\" }, { method = \"gradient\" }]";
    let (code, stderr) = plan(&[sets[0], sets[1], fine]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn metrics_that_cannot_score_the_model_s_maps_are_refused_with_what_would_work() {
    // tiny's maps are 32x32; resized to 8x8 they are narrower than SSIM's default 11-pixel window.
    let small = "comparisons=[{ postprocess = [{ step = \"resize\", h = 8, w = 8 }], metrics = [{ metric = \"ssim\", data_range = 1.0 }] }]";
    let (code, stderr) = plan(&[small]);
    assert_eq!(code, Some(2), "{stderr}");
    for needle in ["comparisons[0].metrics[0]", "11 pixels wide", "8x8", "size = 7"] {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
    let fixed = "comparisons=[{ postprocess = [{ step = \"resize\", h = 8, w = 8 }], metrics = [{ metric = \"ssim\", data_range = 1.0, window = { kind = \"uniform\", size = 7 } }] }]";
    assert_eq!(plan(&[fixed]).0, Some(0));
    let hog = "comparisons=[{ metrics = [{ metric = \"hog_pearson\", pixels_per_cell = [16, 16], cells_per_block = [3, 3] }] }]";
    let (code, stderr) = plan(&[hog]);
    assert!(code == Some(2) && stderr.contains("HOG block"), "{stderr}");
    let top_k = "comparisons=[{ metrics = [{ metric = \"top_k_intersection\", k = 5000 }] }]";
    let (code, stderr) = plan(&[top_k]);
    assert!(code == Some(2) && stderr.contains("k at most 1024"), "{stderr}");
}

#[test]
fn a_random_label_model_that_missed_its_target_gets_inconclusive_verdicts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // One epoch cannot memorise 48 permuted labels to 100%.
    let config = tmp.path().join("missed.toml");
    let text = std::fs::read_to_string(TINY).expect("tiny")
        + "\n[[tests]]\nkind = \"data_randomization\"\ntarget_accuracy = 1.0\nmax_epochs = 1\n";
    std::fs::write(&config, text).expect("write");
    let out = tmp.path().join("run");
    let mut cmd = Command::cargo_bin("sanity").expect("the binary is built");
    cmd.arg("run").arg(&config).args(["--threads", "1", "--no-model-cache", "--out"]).arg(&out).assert().success();
    let verdicts = std::fs::read_to_string(out.join("verdicts.csv")).expect("verdicts");
    let random_label: Vec<&str> = verdicts.lines().filter(|l| l.contains(",data_randomization,")).collect();
    assert!(!random_label.is_empty(), "{verdicts}");
    assert!(random_label.iter().all(|l| l.ends_with(",inconclusive_target_not_reached")), "{verdicts}");
    // The other tests keep their verdicts.
    assert!(verdicts.lines().any(|l| l.contains(",cascading,") && !l.contains("inconclusive")), "{verdicts}");
}

#[test]
fn relative_paths_resolve_from_the_config_s_folder_and_set_values_from_the_working_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let project = tmp.path().join("digits");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::copy("tests/fixtures/two-logits.toml", project.join("digits-net.toml")).expect("arch");
    let text =
        std::fs::read_to_string(TINY).expect("tiny").replace("arch = \"phantom-cnn\"", "arch = \"digits-net.toml\"");
    std::fs::write(project.join("digits.toml"), text).expect("config");
    let plan = |args: &[&str]| {
        let mut cmd = Command::cargo_bin("sanity").expect("the binary is built");
        cmd.current_dir(tmp.path()).arg("plan").args(args).output().expect("runs")
    };
    let out = plan(&["digits/digits.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let absolute = project.join("digits-net.toml").canonicalize().expect("exists");
    let recorded = stdout.lines().find(|l| l.starts_with("arch = ")).expect("arch line");
    assert!(
        std::path::Path::new(recorded.trim_start_matches("arch = ").trim_matches('"')).canonicalize().expect("file")
            == absolute,
        "{recorded}"
    );
    // A --set value is the user's, typed from where they are: the working directory.
    let out = plan(&["digits/digits.toml", "--set", "model.arch=digits-net.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let out = plan(&["digits/digits.toml", "--set", "model.arch=digits/digits-net.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn split_csv_says_which_row_of_the_user_s_array_each_sample_is() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 40 images of 16x16, labels i % 10: the label of a test sample tells its source row's.
    let (n, side) = (40usize, 16usize);
    let pixels: Vec<f32> = (0..n * side * side).map(|i| ((i * 7) % 23) as f32 / 23.0).collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 10) as f32).collect();
    common::write_npy_f32(&tmp.path().join("x.npy"), &[n, side, side], &pixels);
    common::write_npy_f32(&tmp.path().join("y.npy"), &[n], &labels);
    let data = format!(
        "data={{ source = \"arrays\", images = \"{}\", labels = \"{}\", num_classes = 10, test_fraction = 0.25 }}",
        tmp.path().join("x.npy").display(),
        tmp.path().join("y.npy").display()
    );
    let out = tmp.path().join("run");
    let sets = [
        "--set",
        &data,
        "--set",
        "model.arch=adebayo-mlp",
        "--set",
        "attribution.methods=[{ method = \"gradient\" }]",
        "--set",
        "tests=[{ kind = \"cascading\" }]",
        "--set",
        "attribution.n_images=10",
    ];
    let mut cmd = Command::cargo_bin("sanity").expect("the binary is built");
    cmd.args(["run", TINY, "--threads", "1", "--no-model-cache"]).args(sets).arg("--out").arg(&out).assert().success();
    let split = std::fs::read_to_string(out.join("split.csv")).expect("split.csv");
    let mut lines = split.lines();
    assert_eq!(lines.next(), Some("split,sample,source,source_row"));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert_eq!(rows.len(), n, "{split}");
    let mut seen: Vec<usize> = rows.iter().map(|r| r[3].parse().expect("row")).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every source row once");
    assert!(rows.iter().all(|r| r[2].ends_with("x.npy")), "{split}");
    // The label of each explained test sample is its source row's.
    let scores = std::fs::read_to_string(out.join("scores.csv")).expect("scores");
    let mut reader = csv::Reader::from_reader(scores.as_bytes());
    let header = reader.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    for record in reader.records().map(|r| r.expect("row")) {
        let sample: usize = record[col("sample")].parse().expect("sample");
        let label: usize = record[col("label")].parse().expect("label");
        let source_row: usize = rows
            .iter()
            .find(|r| r[0] == "test" && r[1] == sample.to_string())
            .map(|r| r[3].parse().expect("row"))
            .expect("the sample is in split.csv");
        assert_eq!(label, source_row % 10, "sample {sample} is row {source_row}");
    }
}

#[test]
fn a_method_that_answers_nothing_ends_the_run_with_an_error_line_and_report_md_lists_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("w.safetensors");
    let train = ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "16", "--epochs", "1", "--out"];
    Command::cargo_bin("sanity").expect("binary").args(train).arg(&weights).assert().success();
    // All weights zero: every gradient and every Grad-CAM map is one constant.
    let mut bytes = std::fs::read(&weights).expect("read");
    let start = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    bytes[start..].fill(0);
    std::fs::write(&weights, &bytes).expect("write");
    let out = tmp.path().join("run");
    let mut cmd = Command::cargo_bin("sanity").expect("binary");
    cmd.args(["run", TINY, "--threads", "1", "--set"]).arg(format!("model.weights=\"{}\"", weights.display()));
    let ran = cmd.arg("--out").arg(&out).output().expect("runs");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{stderr}");
    for method in ["gradient", "gradcam"] {
        assert!(stderr.contains(&format!("error: every score of `{method}` is empty (constant_map")), "{stderr}");
    }
    // Its own maps are the degenerate ones, counted in summary.csv and warned about.
    assert!(stderr.contains("warning: `gradient`'s own maps are degenerate for 5 of 5 images (100%)"), "{stderr}");
    let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary");
    let mut reader = csv::Reader::from_reader(summary.as_bytes());
    let header = reader.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let cascade: Vec<csv::StringRecord> =
        reader.records().map(|r| r.expect("row")).filter(|r| &r[col("test")] == "cascading").collect();
    assert!(!cascade.is_empty() && cascade.iter().all(|r| &r[col("n_degenerate_original")] == "5"), "{summary}");
    Command::cargo_bin("sanity").expect("binary").arg("report").arg(&out).assert().success();
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("## Empty results") && report.contains("every score of `gradcam` is empty"), "{report}");
    assert!(report.contains("## Degenerate original maps"), "{report}");
}

#[test]
fn training_says_a_line_per_epoch_where_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = ["train", "--arch", "phantom-cnn", "--data", "phantom", "--n-train", "40", "--epochs", "3"];
    let out = Command::cargo_bin("sanity")
        .expect("binary")
        .args(args)
        .args(["--batch-size", "8", "--threads", "1", "--out"])
        .arg(tmp.path().join("w.safetensors"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for epoch in 1..=3 {
        assert!(stderr.lines().any(|l| l.starts_with(&format!("epoch {epoch}: loss "))), "{stderr}");
    }
    // No bar drawn into a pipe: no carriage returns, no per-batch lines.
    assert!(!stderr.contains('\r') && !stderr.contains("eta"), "{stderr}");
}

#[test]
fn the_random_label_model_trains_with_its_own_settings_and_they_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let with = |own: &str| {
        let config = tmp.path().join("own.toml");
        let text = std::fs::read_to_string(TINY).expect("tiny")
            + &format!("\n[[tests]]\nkind = \"data_randomization\"\nmax_epochs = 2\nn_train = 16\ntraining = {own}\n");
        std::fs::write(&config, text).expect("write");
        config
    };
    let run = |config: &std::path::Path, out: &str| {
        let mut cmd = Command::cargo_bin("sanity").expect("binary");
        cmd.arg("run").arg(config).args(["--threads", "1", "--out"]).arg(tmp.path().join(out)).output().expect("runs")
    };
    let first = run(
        &with("{ learning_rate = 0.01, batch_size = 4, lr_schedule = { kind = \"step\", every = 1, gamma = 0.5 } }"),
        "a",
    );
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = run(&with("{ learning_rate = 0.002 }"), "b");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    // Other settings, another model (not the cached one).
    let models =
        |out: &str| std::fs::read(tmp.path().join(out).join("model-random-labels.safetensors")).expect("model");
    assert!(models("a") != models("b"));
    assert!(!String::from_utf8_lossy(&second.stderr).contains("permuted labels from the model cache"));
    let record = std::fs::read_to_string(tmp.path().join("a").join("model-random-labels.json")).expect("record");
    assert!(record.contains("\"learning_rate\": 0.01") && record.contains("\"batch_size\": 4"), "{record}");
    assert!(record.contains("\"kind\": \"step\"") && record.contains("\"gamma\": 0.5"), "{record}");
    // Checked as [training] is, under its own key.
    let bad = Command::cargo_bin("sanity").expect("binary").arg("plan").arg(with("{ learning_rate = -1.0 }")).output();
    let bad = bad.expect("runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(bad.status.code() == Some(2) && stderr.contains("tests[3].training.learning_rate"), "{stderr}");
    let schedule = with("{ lr_schedule = { kind = \"step\", every = 10, gamma = 2.0 } }");
    let bad = Command::cargo_bin("sanity").expect("binary").arg("plan").arg(schedule).output().expect("runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        bad.status.code() == Some(2)
            && stderr.contains("tests[3].training.lr_schedule")
            && stderr.contains("0 < gamma <= 1"),
        "{stderr}"
    );
}

#[test]
fn each_stage_is_several_seeded_draws_and_the_interval_covers_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |draws: usize, out: &std::path::Path| {
        let mut cmd = Command::cargo_bin("sanity").expect("the binary is built");
        cmd.args(["run", TINY, "--threads", "1", "--no-model-cache", "--set"])
            .arg(format!("tests=[{{ kind = \"cascading\", draws = {draws} }}]"))
            .args(["--set", "attribution.methods=[{ method = \"gradient\" }]", "--set"])
            .arg(format!("controls.draws={draws}"))
            .arg("--out")
            .arg(out)
            .assert()
            .success();
        let scores = std::fs::read_to_string(out.join("scores.csv")).expect("scores");
        let mut reader = csv::Reader::from_reader(scores.as_bytes());
        let header = reader.headers().expect("header").clone();
        let col = |name: &str| header.iter().position(|h| h == name).expect(name);
        let rows: Vec<(String, String, usize, usize, String)> = reader
            .records()
            .map(|r| r.expect("row"))
            .map(|r| {
                let parse = |name: &str| r[col(name)].parse::<usize>().expect(name);
                (
                    r[col("test")].to_string(),
                    r[col("stage")].to_string(),
                    parse("draw"),
                    parse("sample"),
                    r[col("score")].to_string(),
                )
            })
            .collect();
        let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary");
        (rows, summary)
    };
    let (three, summary) = run(3, &tmp.path().join("three"));
    let draws_of = |test: &str| -> std::collections::BTreeSet<usize> {
        three.iter().filter(|r| r.0 == test).map(|r| r.2).collect()
    };
    assert_eq!(draws_of("cascading"), [0, 1, 2].into_iter().collect());
    assert_eq!(draws_of("control").len(), 3, "the floor has 3 pairs of untrained models");
    // Each draw is its own model: its scores differ from the first draw's.
    let score = |rows: &[(String, String, usize, usize, String)], draw: usize| -> Vec<String> {
        rows.iter().filter(|r| r.0 == "cascading" && r.2 == draw).map(|r| r.4.clone()).collect()
    };
    assert_ne!(score(&three, 0), score(&three, 1));
    // Draw 0 is the single draw of a one-draw run (earlier results stay reproducible).
    let (one, one_summary) = run(1, &tmp.path().join("one"));
    assert_eq!(score(&three, 0), score(&one, 0));
    let mut reader = csv::Reader::from_reader(summary.as_bytes());
    let header = reader.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let cascading: Vec<csv::StringRecord> =
        reader.records().map(|r| r.expect("row")).filter(|r| &r[col("test")] == "cascading").collect();
    assert!(!cascading.is_empty());
    for r in &cascading {
        assert_eq!((&r[col("ci_over")], &r[col("draws")]), ("draws_and_images", "3"), "{r:?}");
        assert!(!r[col("draw_std")].is_empty(), "{r:?}");
    }
    assert!(one_summary.lines().skip(1).all(|l| l.contains(",images,1,")), "{one_summary}");
    // Draws are bounded and named in the refusal.
    let (code, stderr) = plan(&["tests=[{ kind = \"independent\", draws = 0 }]"]);
    assert!(code == Some(2) && stderr.contains("tests[0].draws") && stderr.contains("1 to 100"), "{stderr}");
    let (code, stderr) = plan(&["controls.draws=1000"]);
    assert!(code == Some(2) && stderr.contains("controls.draws"), "{stderr}");
}
