//! Trainer tests on a few simulated frames: the loader's batches are the
//! same for any number of threads and follow the seed, a run stopped in
//! the middle of an epoch with B > 1 resumes to exactly the weights of an
//! uninterrupted run, and ground-truth sampling trains.

use super::trainer::{Position, TrainConfig, TrainError, Trainer};
use crate::dataset::sim::dataset_writer::{simulate, SimulateOptions};
use crate::detect::checkpoint;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::Device;

const FRAMES: usize = 5;

/// Five simulated training frames, made once for the tests of this module.
fn data() -> &'static Path {
    static DATA: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DATA
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut opts = SimulateOptions::new(FRAMES, dir.path());
            opts.seed = 70;
            simulate(&opts, |_, _, _| {}).expect("simulates");
            let path = dir.path().to_path_buf();
            (dir, path)
        })
        .1
}

fn config(batch_size: usize, loader_threads: usize, seed: u64) -> TrainConfig {
    TrainConfig { epochs: 2, batch_size, loader_threads, seed, val_frames: 0, checkpoint_every: 1000, ..TrainConfig::default() }
}

/// Every batch of epochs 0 and 1 (ids, pillars, targets).
fn all_batches(cfg: TrainConfig) -> Vec<crate::train::batch::TrainBatch> {
    let run = tempfile::tempdir().unwrap();
    let trainer = Trainer::open(cfg, data(), run.path(), Device::Cpu).unwrap();
    let mut out = Vec::new();
    for epoch in 0..2 {
        let mut loader = trainer.epoch_loader(epoch, 0).unwrap();
        while let Some(b) = loader.next_batch().unwrap() {
            out.push(b);
        }
    }
    out
}

#[test]
fn loader_batches_follow_the_seed_whatever_the_thread_count() {
    let inline = all_batches(config(2, 0, 4));
    // 5 frames in batches of 2: 2, 2 and a last batch of 1, per epoch
    assert_eq!(inline.iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 2, 1, 2, 2, 1]);
    let epoch_ids = |bs: &[crate::train::batch::TrainBatch]| -> Vec<String> { bs.iter().flat_map(|b| b.ids.clone()).collect() };
    let ids = epoch_ids(&inline);
    let mut first: Vec<String> = ids[..FRAMES].to_vec();
    first.sort();
    assert_eq!(first, (0..FRAMES).map(|i| format!("{i:06}")).collect::<Vec<_>>(), "each frame once per epoch");
    assert_ne!(ids[..FRAMES], ids[FRAMES..], "a new shuffle each epoch");
    for threads in [1, 3] {
        assert!(all_batches(config(2, threads, 4)) == inline, "{threads} loader threads give other batches than none");
    }
    let other_seed = all_batches(config(2, 2, 5));
    assert_ne!(epoch_ids(&other_seed), ids, "another seed, another order");
}

/// Runs `trainer` (stopping after `stop_after` steps of this call) and returns where it stands.
fn train(mut trainer: Trainer, stop_after: Option<usize>) -> Position {
    let steps = Cell::new(0usize);
    trainer.run(|_| steps.set(steps.get() + 1), |_| {}, || stop_after.is_some_and(|n| steps.get() >= n)).unwrap();
    trainer.position
}

#[test]
fn a_run_stopped_mid_epoch_with_batches_resumes_exactly() {
    let cfg = config(2, 2, 3);
    let (whole, parts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |run: &Path| Trainer::open(cfg.clone(), data(), run, Device::Cpu).unwrap();
    // both runs start from the same weights (the other run resumes from step 0),
    // whatever other tests draw from libtorch's global generator meanwhile
    let first = open(whole.path());
    first.save(&parts.path().join("last.safetensors")).unwrap();
    let end = train(first, None);
    assert_eq!(end, Position { epoch: 2, frame: 0, global_step: 6 });
    // stopped after 4 of the 5 frames of epoch 0, then resumed by a new Trainer
    assert_eq!(train(open(parts.path()), Some(2)), Position { epoch: 0, frame: 4, global_step: 2 });
    assert_eq!(train(open(parts.path()), None), end);
    let weights = |dir: &Path| -> std::collections::BTreeMap<String, tch::Tensor> { checkpoint::read(&dir.join("final.safetensors")).unwrap().1.into_iter().collect() };
    let (a, b) = (weights(whole.path()), weights(parts.path()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, t) in &a {
        assert!(t.equal(&b[k]), "{k} differs between the whole and the resumed run");
    }
    let losses = |dir: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("steps.csv")).unwrap();
        text.lines().skip(1).map(|l| l.split(',').take(7).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(losses(whole.path()), losses(parts.path()), "the same steps with the same losses");
    // the batch size cannot change under a run
    let other = Trainer::open(TrainConfig { batch_size: 3, ..cfg }, data(), parts.path(), Device::Cpu);
    assert!(matches!(other, Err(TrainError::Config(m)) if m.contains("batch_size 2")));
}

#[test]
fn configs_bound_the_batch_and_the_loader() {
    let yaml = |extra: &str| format!("model: compact\nepochs: 1\n{extra}");
    assert!(TrainConfig::from_yaml(&yaml("batch_size: 0")).is_err());
    assert!(TrainConfig::from_yaml(&yaml("batch_size: 100000")).is_err());
    assert!(TrainConfig::from_yaml(&yaml("loader_threads: 1000")).is_err());
    let c = TrainConfig::from_yaml(&yaml("batch_size: 4\nloader_threads: 0\nmixed_precision: false")).unwrap();
    assert_eq!((c.batch_size, c.loader_threads, c.mixed_precision), (4, 0, false));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let full = TrainConfig::from_yaml(&std::fs::read_to_string(root.join("config/train_full.yaml")).unwrap()).unwrap();
    assert_eq!((full.model.as_str(), full.batch_size, full.epochs, full.schedule.lr_max), ("full", 4, 80, 3e-3));
    // OpenPCDet's KITTI PointPillars gt_sampling
    let gs = &full.augment.gt_sampling;
    assert!(gs.enabled && gs.drop_unknown_difficulty);
    assert_eq!(gs.sample_groups.values().copied().collect::<Vec<_>>(), [15, 15, 15]);
    assert_eq!(gs.min_points.values().copied().collect::<Vec<_>>(), [5, 5, 5]);
    assert!(TrainConfig::from_yaml(&yaml("augment:\n  gt_sampling:\n    enabled: true\n    typo: 1")).is_err(), "unknown gt_sampling keys are refused");
    let compact = TrainConfig::from_yaml(&std::fs::read_to_string(root.join("config/train_compact.yaml")).unwrap()).unwrap();
    assert_eq!(compact.batch_size, 1);
}

/// A broken frame file stops the loader with an error naming it (no hang,
/// threads joined when the loader goes), after the batches before it.
#[test]
fn a_broken_frame_is_an_error_naming_the_file() {
    use crate::dataset::kitti::{KittiDataset, Split};
    use crate::detect::detector::{Detector, DetectorConfig};
    use crate::train::batch::{FramePreparer, TargetSpec};
    use crate::train::data::FrameSource;
    use crate::train::loader::{BatchLoader, SampleRef};
    let copy = tempfile::tempdir().unwrap();
    for sub in ["velodyne", "calib", "label_2", "image_2"] {
        let (from, to) = (data().join("training").join(sub), copy.path().join("training").join(sub));
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    std::fs::write(copy.path().join("training/velodyne/000002.bin"), [0u8; 7]).unwrap();
    let det = Detector::new(DetectorConfig::compact(), Device::Cpu).unwrap();
    let ds = KittiDataset::open(copy.path(), Split::Training).unwrap();
    let ids = ds.ids().to_vec();
    let source = FrameSource::new(ds, &det.config.class_names()).unwrap();
    let preparer = std::sync::Arc::new(FramePreparer { source, ids, augment: Default::default(), gt_sampler: None, seed: 0, spec: TargetSpec::kitti(&det) });
    let samples: Vec<SampleRef> = (0..FRAMES).map(|i| SampleRef { frame: i, sample: i as u64 }).collect();
    for threads in [0, 2] {
        let mut loader = BatchLoader::new(preparer.clone(), samples.clone(), 2, threads).unwrap();
        assert_eq!(loader.next_batch().unwrap().unwrap().ids, ["000000", "000001"]);
        let err = loader.next_batch().unwrap_err().to_string();
        assert!(err.contains("000002.bin"), "{threads} threads: {err}");
    }
}

/// With ground-truth sampling on, the run builds the database of its
/// training frames once (the next run finds it), its batches carry more
/// ground truth than without, and training runs its steps.
#[test]
fn training_with_gt_sampling_runs_and_adds_objects() {
    let db_dir = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig { epochs: 1, ..config(2, 1, 3) };
    cfg.augment.gt_sampling.enabled = true;
    cfg.augment.gt_sampling.database_dir = db_dir.path().to_string_lossy().into_owned();
    let gts = |cfg: TrainConfig| -> usize {
        let run = tempfile::tempdir().unwrap();
        let trainer = Trainer::open(cfg, data(), run.path(), Device::Cpu).unwrap();
        let mut loader = trainer.epoch_loader(0, 0).unwrap();
        std::iter::from_fn(|| loader.next_batch().unwrap()).map(|b| b.ground_truths).sum()
    };
    let without = gts(TrainConfig { augment: Default::default(), ..cfg.clone() });
    let with = gts(cfg.clone());
    assert!(with > without, "ground truths per epoch: {with} with gt sampling, {without} without");
    // pasted objects follow the seed and the sample, not the loader's threads
    assert!(all_batches(TrainConfig { loader_threads: 0, ..cfg.clone() }) == all_batches(TrainConfig { loader_threads: 2, ..cfg.clone() }));
    let files: Vec<_> = std::fs::read_dir(db_dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.iter().filter(|p| p.extension().is_some_and(|e| e == "json")).count(), 1, "one database: {files:?}");
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let stamps: Vec<_> = files.iter().map(|p| modified(p)).collect();
    let run = tempfile::tempdir().unwrap();
    let steps = Cell::new(0usize);
    let mut trainer = Trainer::open(cfg, data(), run.path(), Device::Cpu).unwrap();
    trainer.run(|e| {
        assert!(e.detection.is_finite());
        steps.set(steps.get() + 1)
    }, |_| {}, || false).unwrap();
    assert_eq!(steps.get(), 3, "5 frames in batches of 2");
    assert_eq!(files.iter().map(|p| modified(p)).collect::<Vec<_>>(), stamps, "the cached database is reused, not rebuilt");
}
