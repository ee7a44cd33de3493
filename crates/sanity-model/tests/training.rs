//! Training that stops after an epoch and goes on from its checkpoint ends with the same bits
//! as training that never stopped.

use sanity_data::{Dataset, PhantomSpec, generate_phantoms};
use sanity_model::{
    Architecture, ArchitectureSpec, BatchProgress, Checkpoint, EpochStats, LrSchedule, Model, NetModel, OptimizerKind,
    TrainSpec, Training, Weights, init_weights, train, train_from, train_observed,
};
use std::ops::ControlFlow;
use std::path::Path;

/// conv → batch norm → ReLU → pool → dropout → linear: every kind of training state (Adam's
/// moments or SGD's velocity, batch-norm buffers, dropout draws).
fn model() -> Model {
    model_with_dropout(0.3)
}

fn model_with_dropout(p: f64) -> Model {
    let text = format!(
        r#"
        input = [1, 16, 16]
        [[layers]]
        type = "conv2d"
        name = "conv1"
        in_channels = 1
        out_channels = 4
        kernel_size = 3
        padding = 1
        [[layers]]
        type = "batch_norm2d"
        name = "bn1"
        num_features = 4
        [[layers]]
        type = "relu"
        [[layers]]
        type = "max_pool2d"
        kernel_size = 4
        stride = 4
        [[layers]]
        type = "flatten"
        [[layers]]
        type = "dropout"
        p = {p}
        [[layers]]
        type = "linear"
        name = "logit"
        in_features = 64
        out_features = 1
        "#
    );
    let spec: ArchitectureSpec = toml::from_str(&text).expect("architecture");
    let arch = Architecture::new(spec).expect("valid");
    let weights = init_weights(&arch, 3).expect("init");
    Model::new(std::sync::Arc::new(arch), weights)
}

fn data() -> Dataset {
    let spec = PhantomSpec { n: 24, size: 16, noise_std: 0.05, effusion_fraction: 0.5, shortcut_rate: None };
    generate_phantoms(&spec, 5, "train").expect("phantoms")
}

fn spec(optimizer: OptimizerKind, dir: &Path) -> TrainSpec {
    TrainSpec {
        epochs: 5,
        batch_size: 5,
        optimizer,
        learning_rate: 0.01,
        checkpoint_every: 2,
        checkpoint_dir: Some(dir.to_path_buf()),
        ..TrainSpec::default()
    }
}

fn bits(weights: &Weights) -> Vec<(String, Vec<u32>)> {
    weights
        .iter()
        .map(|(k, t)| {
            let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
            (k.clone(), values.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn finished(training: Training) -> (Weights, Vec<EpochStats>) {
    match training {
        Training::Finished { weights, history } => (weights, history),
        Training::Stopped { epoch } => panic!("stopped after epoch {epoch}"),
    }
}

#[test]
fn training_stopped_and_resumed_from_its_checkpoint_ends_bit_for_bit_as_uninterrupted_training() {
    let (model, data) = (NetModel::of(&model()), data());
    for optimizer in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (whole_dir, cut_dir) = (tmp.path().join("whole"), tmp.path().join("cut"));
        let (weights, history) = train(&model, &data, &spec(optimizer, &whole_dir), 9, &mut |_| {}).expect("trains");
        // Every second epoch is checkpointed; the last epoch is 5.
        assert!(Checkpoint::files(&whole_dir, 4).iter().all(|f| f.exists()));
        assert!(!Checkpoint::files(&whole_dir, 3)[2].exists());

        // Asked to stop after epoch 3 (not a checkpoint epoch): its state is saved anyway.
        let mut stop_after_3 =
            |s: &EpochStats| if s.epoch == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
        let stopped =
            train_from(&model, &data, &spec(optimizer, &cut_dir), 9, None, &mut stop_after_3).expect("trains");
        assert!(matches!(stopped, Training::Stopped { epoch: 3 }), "{stopped:?}");
        let checkpoint = Checkpoint::latest(&cut_dir, &model.net, 5).expect("readable").expect("a checkpoint");
        assert_eq!(checkpoint.meta.epoch, 3);
        assert_eq!(checkpoint.meta.history, history[..3]);
        let moment = match optimizer {
            OptimizerKind::Adamw => "conv1.weight.exp_avg_sq",
            OptimizerKind::Sgd => "conv1.weight.momentum_buffer",
        };
        assert!(checkpoint.optimizer.get(moment).is_ok(), "{optimizer:?}: PyTorch's state names");

        let mut epochs_seen = Vec::new();
        let resumed = train_from(&model, &data, &spec(optimizer, &cut_dir), 9, Some(checkpoint), &mut |s| {
            epochs_seen.push(s.epoch);
            ControlFlow::Continue(())
        });
        let (resumed_weights, resumed_history) = finished(resumed.expect("trains"));
        assert_eq!(epochs_seen, [4, 5], "{optimizer:?}: only the epochs after the checkpoint are trained");
        assert_eq!(resumed_history, history, "{optimizer:?}");
        assert!(
            bits(&resumed_weights) == bits(&weights),
            "{optimizer:?}: the weights differ from uninterrupted training"
        );
        // The checkpoint of epoch 4, written after the resumption, is the uninterrupted one's.
        for (a, b) in Checkpoint::files(&whole_dir, 4).iter().zip(Checkpoint::files(&cut_dir, 4).iter()) {
            assert!(std::fs::read(a).expect("whole") == std::fs::read(b).expect("cut"), "{}", b.display());
        }
    }
}

#[test]
fn a_step_schedule_decays_the_rate_per_epoch_and_survives_a_resumption() {
    let (model, data) = (NetModel::of(&model()), data());
    let tmp = tempfile::tempdir().expect("tempdir");
    let schedule = LrSchedule::Step { every: 2, gamma: 0.1 };
    assert_eq!([1, 2, 3, 5].map(|e| schedule.rate(1.0, e)), [1.0, 1.0, 0.1, 0.010000000000000002]);
    let with =
        |dir: &str, schedule, epochs| TrainSpec { schedule, epochs, ..spec(OptimizerKind::Sgd, &tmp.path().join(dir)) };
    // Epochs 1 and 2 train at the base rate: the same weights as without a schedule.
    let constant = train(&model, &data, &with("a", LrSchedule::Constant, 2), 9, &mut |_| {}).expect("trains");
    let stepped = train(&model, &data, &with("b", schedule, 2), 9, &mut |_| {}).expect("trains");
    assert!(bits(&constant.0) == bits(&stepped.0));
    // Epoch 3 trains at a tenth of it: other weights.
    let constant = train(&model, &data, &with("c", LrSchedule::Constant, 3), 9, &mut |_| {}).expect("trains");
    let stepped = train(&model, &data, &with("d", schedule, 3), 9, &mut |_| {}).expect("trains");
    assert!(bits(&constant.0) != bits(&stepped.0));
    // Going on from epoch 2's checkpoint reaches the same bits: the rate depends on the epoch.
    let checkpoint = Checkpoint::latest(&tmp.path().join("b"), &model.net, 3).expect("readable").expect("epoch 2");
    let resumed =
        train_from(&model, &data, &with("b", schedule, 3), 9, Some(checkpoint), &mut |_| ControlFlow::Continue(()));
    assert!(bits(&finished(resumed.expect("trains")).0) == bits(&stepped.0));
    // A schedule that cannot be used is refused, as is another schedule than a checkpoint's.
    let bad = TrainSpec { schedule: LrSchedule::Step { every: 0, gamma: 0.5 }, ..with("e", schedule, 1) };
    let error = train(&model, &data, &bad, 9, &mut |_| {}).expect_err("every = 0").to_string();
    assert!(error.contains("every = 0"), "{error}");
    let checkpoint = Checkpoint::latest(&tmp.path().join("b"), &model.net, 3).expect("readable").expect("epoch 2");
    let other = train_from(&model, &data, &with("b", LrSchedule::Constant, 3), 9, Some(checkpoint), &mut |_| {
        ControlFlow::Continue(())
    });
    assert!(other.is_err_and(|e| e.to_string().contains("schedule")));
}

#[test]
fn a_checkpoint_of_another_seed_spec_or_data_set_is_refused() {
    let (model, data) = (NetModel::of(&model()), data());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let base = spec(OptimizerKind::Adamw, &dir);
    train(&model, &data, &TrainSpec { epochs: 2, ..base.clone() }, 9, &mut |_| {}).expect("trains");
    let latest = || Checkpoint::latest(&dir, &model.net, 99).expect("readable");
    // More epochs than the checkpoint's run had are fine: those trained do not depend on it.
    let more = TrainSpec { epochs: 3, ..base.clone() };
    assert!(train_from(&model, &data, &more, 9, latest(), &mut |_| ControlFlow::Continue(())).is_ok());
    let other_data = generate_phantoms(
        &PhantomSpec { n: 24, size: 16, noise_std: 0.05, effusion_fraction: 0.5, shortcut_rate: None },
        6,
        "train",
    )
    .expect("phantoms");
    let other_dropout = model_with_dropout(0.5);
    let refused =
        train_from(&NetModel::of(&other_dropout), &data, &base, 9, latest(), &mut |_| ControlFlow::Continue(()));
    assert!(refused.expect_err("refused").to_string().contains("another architecture"));
    let cases: [(&str, TrainSpec, u64, &Dataset); 3] = [
        ("seed 9, not 10", base.clone(), 10, &data),
        ("learning_rate = 0.01 there, 0.02 here", TrainSpec { learning_rate: 0.02, ..base.clone() }, 9, &data),
        ("other data", base.clone(), 9, &other_data),
    ];
    for (says, spec, seed, data) in cases {
        let refused = train_from(&model, data, &spec, seed, latest(), &mut |_| ControlFlow::Continue(()));
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("cannot go on from the checkpoint of epoch") && message.contains(says), "{message}");
    }
}

#[test]
fn an_incomplete_checkpoint_is_ignored_and_a_damaged_one_is_named() {
    let (model, data) = (NetModel::of(&model()), data());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    assert!(Checkpoint::latest(&dir.join("none"), &model.net, 99).expect("no folder").is_none());
    let spec = TrainSpec { epochs: 4, checkpoint_every: 1, ..spec(OptimizerKind::Adamw, &dir) };
    train(&model, &data, &spec, 9, &mut |_| {}).expect("trains");
    // A crash between the weights and the metadata of epoch 4 leaves epoch 3 the newest.
    std::fs::remove_file(&Checkpoint::files(&dir, 4)[2]).expect("remove");
    assert_eq!(Checkpoint::latest(&dir, &model.net, 99).expect("readable").expect("one").meta.epoch, 3);
    // Up to an epoch: a run of fewer epochs never goes on from a later one.
    assert_eq!(Checkpoint::latest(&dir, &model.net, 2).expect("readable").expect("one").meta.epoch, 2);
    std::fs::write(&Checkpoint::files(&dir, 3)[1], b"not safetensors").expect("write");
    let message = Checkpoint::latest(&dir, &model.net, 99).expect_err("damaged").to_string();
    assert!(message.contains("epoch-0003.optimizer.safetensors"), "{message}");
}

#[test]
fn training_to_an_accuracy_target_goes_on_from_before_the_target_and_stops_at_a_checkpoint_that_reached_it() {
    let (model, data) = (NetModel::of(&model()), data());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let every = |target| TrainSpec {
        epochs: 8,
        checkpoint_every: 1,
        stop_at_accuracy: Some(target),
        ..spec(OptimizerKind::Adamw, &dir)
    };
    // An unreachable target measures every epoch; the best accuracy then becomes the target.
    let (_, probe) = train(&model, &data, &every(1.5), 9, &mut |_| {}).expect("trains");
    let accuracies: Vec<f64> = probe.iter().map(|s| s.train_accuracy.expect("measured")).collect();
    let target = accuracies.iter().copied().fold(0.0, f64::max);
    let reached = accuracies.iter().position(|&a| a >= target).expect("reached") + 1;
    assert!(reached >= 3, "the target is reached at epoch {reached} of {accuracies:?}: too early to test");
    std::fs::remove_dir_all(&dir).expect("clear");
    let (weights, history) = train(&model, &data, &every(target), 9, &mut |_| {}).expect("trains");
    assert_eq!(history.len(), reached, "training stops at the target");
    for from in [reached - 1, reached] {
        let checkpoint = Checkpoint::latest(&dir, &model.net, from).expect("readable");
        let mut trained = Vec::new();
        let resumed = train_from(&model, &data, &every(target), 9, checkpoint, &mut |s| {
            trained.push(s.epoch);
            ControlFlow::Continue(())
        });
        let (resumed_weights, resumed_history) = finished(resumed.expect("trains"));
        let expected: Vec<usize> = (from + 1..=reached).collect();
        assert_eq!(trained, expected, "from epoch {from}");
        assert_eq!(resumed_history, history, "from epoch {from}");
        assert!(bits(&resumed_weights) == bits(&weights), "from epoch {from}");
    }
}

#[test]
fn every_minibatch_is_reported_and_observing_changes_nothing() {
    let (model, data) = (NetModel::of(&model()), data());
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = TrainSpec { checkpoint_dir: None, ..spec(OptimizerKind::Adamw, tmp.path()) };
    let mut seen: Vec<BatchProgress> = Vec::new();
    let observed =
        train_observed(&model, &data, &spec, 9, None, &mut |_| ControlFlow::Continue(()), &mut |b| seen.push(*b))
            .expect("trains");
    let (weights, history) = finished(observed);
    let batches = data.len().div_ceil(spec.batch_size);
    assert_eq!(seen.len(), batches * spec.epochs);
    for (epoch, stats) in history.iter().enumerate() {
        let last = seen[(epoch + 1) * batches - 1];
        assert_eq!((last.epoch, last.batch, last.batches, last.images), (epoch + 1, batches, batches, data.len()));
        assert!((last.loss - stats.loss).abs() < 1e-12, "{last:?} vs {stats:?}");
    }
    let (plain, _) = train(&model, &data, &spec, 9, &mut |_| {}).expect("trains");
    assert_eq!(bits(&weights), bits(&plain), "observing the batches changed the training");
}
