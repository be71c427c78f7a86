//! The training run behind `eloss train`: epochs over a KITTI-format folder
//! in batches of `batch_size` frames prepared by background loader threads,
//! with augmentation, the one-cycle AdamW schedule, the Entropy Loss term
//! (weight ramped in over a warm-up), mixed precision on CUDA, checkpoints
//! that resume exactly where a run stopped (mid-epoch too), a validation AP
//! per epoch and CSV logs for the curves and the throughput.
//!
//! A run folder holds `train.yaml` (the configuration used), `last.safetensors`
//! (model + optimizer + position), `steps.csv` and `epochs.csv`.

use super::adamw::{AdamW, AdamWConfig, AdamWError};
use super::augment::AugmentConfig;
use super::batch::{FramePreparer, TargetSpec};
use super::csv_log::{CsvLog, RateWindow};
use super::data::{DataError, FrameSource};
use super::gt_database::{self, GtDatabase, GtDatabaseError};
use super::gt_sampling::{GtSampler, GtSamplingError};
use super::loader::{BatchLoader, LoaderError, SampleRef};
use super::losses::LossWeights;
use super::mixed_precision::LossScaler;
use super::schedule::OneCycle;
use super::step::{train_step, StepConfig, StepError};
use super::validate::{predict, ValidateError};
use crate::dataset::kitti::{Difficulty, ImageSet, KittiDataset, KittiError, ObjectClass, Split};
use crate::dataset::sim::Rng;
use crate::detect::checkpoint::{self, CheckpointError};
use crate::detect::detector::{BatchNormMode, Detector, DetectorConfig, DetectorError};
use crate::eloss::entropy::Estimator;
use crate::eloss::grouping::Grouping;
use crate::eval::{EvalConfig, Metric};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

/// Columns of `steps.csv`: per step, its batch's frames, the wall time and the
/// part spent waiting for data, the rates they give and the loss scale.
pub const STEPS_HEADER: &str =
    "step,epoch,lr,detection,eloss,eloss_weight,positives,seconds,frames,data_wait_s,steps_per_s,frames_per_s,data_wait_fraction,loss_scale";

/// Score threshold of the validation runs.
pub const EVAL_SCORE_THRESHOLD: f32 = 0.1;
/// Bounds of the batch size and of the loader's threads in a config.
pub const MAX_BATCH_SIZE: usize = 256;
pub const MAX_LOADER_THREADS: usize = 64;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model preset: `compact` (CPU) or `full` (GPU).
    pub model: String,
    pub epochs: usize,
    pub schedule: OneCycle,
    pub weight_decay: f64,
    pub clip_norm: f64,
    /// λ of the Entropy Loss (0 trains the plain detector).
    pub eloss_weight: f64,
    /// λ rises linearly from 0 over this many epochs.
    pub eloss_warmup_epochs: f64,
    /// `knn` (the paper's estimator) or `gaussian[:ridge]`.
    pub estimator: String,
    /// Which ΔH transitions form one variance term: `per_block` (ours) or
    /// `reference` (the reference repository's two index halves,
    /// docs/entropy_loss.md). Recorded in the checkpoint, so the
    /// calibration and the monitor use the grouping the model was trained with.
    pub grouping: Grouping,
    pub augment: AugmentConfig,
    pub seed: u64,
    /// Steps between checkpoints (one is also written after every epoch).
    pub checkpoint_every: usize,
    /// Validation frames scored after each epoch (0 = none).
    pub val_frames: usize,
    /// Use at most this many training frames (0 = all).
    pub max_train_frames: usize,
    /// Frames per optimisation step (OpenPCDet KITTI PointPillars: 4 per GPU).
    pub batch_size: usize,
    /// Background threads preparing frames (0: on the training thread).
    pub loader_threads: usize,
    /// fp16 autocast with a dynamic loss scale on CUDA; ignored on the CPU (fp32).
    pub mixed_precision: bool,
    /// Batch-norm during training: `train` (batch statistics, the paper's
    /// code) or `frozen` (running statistics fixed, as at inference: the
    /// trained Entropy Loss is then the Eloss the monitor reads).
    pub batchnorm: BatchNormMode,
    /// Start a new run from this model's weights (fine-tuning; empty = random
    /// initialisation). The run keeps this model's config (e.g. an imported
    /// OpenPCDet model's), whatever `model` says. Ignored on resume.
    pub init: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: "compact".into(),
            epochs: 6,
            schedule: OneCycle::default(),
            weight_decay: 0.01,
            clip_norm: 10.0,
            eloss_weight: 1.0,
            eloss_warmup_epochs: 1.0,
            estimator: "knn".into(),
            grouping: Grouping::PerBlock,
            augment: AugmentConfig::default(),
            seed: 0,
            checkpoint_every: 250,
            val_frames: 200,
            max_train_frames: 0,
            batch_size: 1,
            loader_threads: 1,
            mixed_precision: true,
            batchnorm: BatchNormMode::Train,
            init: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("resuming: {0}")]
    Optimizer(#[from] AdamWError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error("the training split of {0} has no frames")]
    Empty(PathBuf),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error("ground-truth database: {0}")]
    GtDatabase(#[from] GtDatabaseError),
    #[error(transparent)]
    GtSampling(#[from] GtSamplingError),
}

impl TrainConfig {
    pub fn from_yaml(text: &str) -> Result<Self, TrainError> {
        let cfg: Self = serde_yaml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        cfg.detector()?;
        cfg.estimator()?;
        if cfg.epochs == 0 || cfg.schedule.lr_max <= 0.0 || cfg.checkpoint_every == 0 {
            return Err(TrainError::Config("epochs, schedule.lr_max and checkpoint_every must be > 0".into()));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&cfg.batch_size) {
            return Err(TrainError::Config(format!("batch_size {} not in 1..={MAX_BATCH_SIZE}", cfg.batch_size)));
        }
        if cfg.loader_threads > MAX_LOADER_THREADS {
            return Err(TrainError::Config(format!("loader_threads {} not in 0..={MAX_LOADER_THREADS}", cfg.loader_threads)));
        }
        Ok(cfg)
    }

    pub fn detector(&self) -> Result<DetectorConfig, TrainError> {
        DetectorConfig::preset(&self.model).ok_or_else(|| TrainError::Config(format!("unknown model preset `{}` (compact, full)", self.model)))
    }

    pub fn estimator(&self) -> Result<Estimator, TrainError> {
        Estimator::from_str(&self.estimator).map_err(|e| TrainError::Config(e.to_string()))
    }
}

/// Where a run stands; stored in the checkpoint's `training` metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub epoch: usize,
    /// Frames of `epoch` already trained on (a multiple of the batch size
    /// until the epoch's last, shorter batch).
    pub frame: usize,
    /// Optimisation steps (batches) since the start of the run.
    pub global_step: usize,
}

/// Per-step numbers handed to the caller (progress bars, tests).
#[derive(Debug, Clone, Copy)]
pub struct StepEvent {
    pub position: Position,
    pub total_steps: usize,
    pub lr: f64,
    pub detection: f64,
    pub eloss: f64,
    pub positives: usize,
    /// Frames in this step's batch.
    pub frames: usize,
    /// Wall time of the step, and the part of it spent waiting for the batch.
    pub seconds: f64,
    pub data_wait_seconds: f64,
}

/// Validation AP (moderate, R40, percent) after an epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochScore {
    pub epoch: usize,
    pub bev: Vec<(String, f64)>,
    pub ap3d: Vec<(String, f64)>,
}

pub struct Trainer {
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub detector: Detector,
    optimizer: AdamW,
    scaler: LossScaler,
    preparer: Arc<FramePreparer>,
    val: Option<KittiDataset>,
    pub position: Position,
}

/// The detector config of a run: the `init` model's when fine-tuning, else the `model` preset's.
fn run_detector_config(config: &TrainConfig) -> Result<DetectorConfig, TrainError> {
    if config.init.is_empty() {
        config.detector()
    } else {
        Ok(checkpoint::read(Path::new(&config.init))?.0.config)
    }
}

/// The ground-truth sampler of a run: its database of the training frames
/// from the cache ([`gt_database::cache_dir`]), built there on first use.
fn open_gt_sampler(config: &TrainConfig, run_dir: &Path, dataset: &KittiDataset, ids: &[String], class_names: &[String]) -> Result<GtSampler, TrainError> {
    let dir = gt_database::cache_dir(&config.augment.gt_sampling.database_dir, run_dir);
    let t0 = Instant::now();
    let (db, path, built) = GtDatabase::open_or_build(&dir, dataset, ids, class_names)?;
    let sampler = GtSampler::new(Arc::new(db), &config.augment.gt_sampling)?;
    tracing::info!(
        database = %path.display(),
        built,
        seconds = format_args!("{:.1}", t0.elapsed().as_secs_f64()),
        objects = ?class_names.iter().zip(sampler.database().counts()).collect::<Vec<_>>(),
        after_filters = ?class_names.iter().zip(sampler.pool_sizes()).collect::<Vec<_>>(),
        "ground-truth sampling"
    );
    Ok(sampler)
}

impl Trainer {
    /// A new run, or the continuation of `run_dir/last.safetensors` when it exists.
    pub fn open(config: TrainConfig, data: &Path, run_dir: &Path, device: Device) -> Result<Self, TrainError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        let last = run_dir.join("last.safetensors");
        let mut scaler = LossScaler::new(config.mixed_precision, device);
        let (detector, position) = if last.is_file() {
            let (det, info) = checkpoint::load(&last, device)?;
            if det.config != run_detector_config(&config)? {
                return Err(TrainError::Config(format!("{} was trained with another model config", last.display())));
            }
            // steps, the schedule and the resume point count batches: the size cannot change mid-run
            let run_batch = info.training["config"]["batch_size"].as_u64().unwrap_or(1) as usize;
            if run_batch != config.batch_size {
                return Err(TrainError::Config(format!("{} was trained with batch_size {run_batch}, the config says {}", last.display(), config.batch_size)));
            }
            let pos = serde_json::from_value(info.training["position"].clone()).map_err(|e| TrainError::Config(format!("{}: position: {e}", last.display())))?;
            if let Ok(saved) = serde_json::from_value(info.training["loss_scale"].clone()) {
                scaler.restore(saved);
            }
            (det, pos)
        } else if !config.init.is_empty() {
            // the run keeps the init model's config (an imported OpenPCDet
            // model keeps its grid, anchors and NMS settings): `model` only
            // names the preset of runs that start from scratch
            let (det, _) = checkpoint::load(Path::new(&config.init), device)?;
            if det.config != config.detector()? {
                tracing::info!(init = %config.init, preset = %config.model, "the init model's config differs from the preset's: the run keeps the init model's");
            }
            (det, Position::default())
        } else {
            (Detector::new(config.detector()?, device)?, Position::default())
        };
        let mut optimizer = AdamW::new(&detector.vs, AdamWConfig { weight_decay: config.weight_decay, ..Default::default() });
        if last.is_file() {
            optimizer.load_state(&checkpoint::optimizer_state(&last)?)?;
        }
        let yaml = serde_yaml::to_string(&config).map_err(|e| TrainError::Config(e.to_string()))?;
        std::fs::write(run_dir.join("train.yaml"), yaml).map_err(io(run_dir))?;
        let has_set = |set: ImageSet| data.join("ImageSets").join(set.file_name()).is_file();
        let train_ds = if has_set(ImageSet::Train) { KittiDataset::open_image_set(data, ImageSet::Train)? } else { KittiDataset::open(data, Split::Training)? };
        let mut train_ids = train_ds.ids().to_vec();
        if config.max_train_frames > 0 {
            train_ids.truncate(config.max_train_frames);
        }
        if train_ids.is_empty() {
            return Err(TrainError::Empty(data.to_path_buf()));
        }
        let class_names = detector.config.class_names();
        let gt_sampler = if config.augment.gt_sampling.enabled { Some(Arc::new(open_gt_sampler(&config, run_dir, &train_ds, &train_ids, &class_names)?)) } else { None };
        let source = FrameSource::new(train_ds, &class_names)?;
        let preparer = Arc::new(FramePreparer { source, ids: train_ids, augment: config.augment.clone(), gt_sampler, seed: config.seed, spec: TargetSpec::kitti(&detector) });
        let val = if config.val_frames > 0 && has_set(ImageSet::Val) { Some(KittiDataset::open_image_set(data, ImageSet::Val)?) } else { None };
        Ok(Self { config, run_dir: run_dir.to_path_buf(), detector, optimizer, scaler, preparer, val, position })
    }

    fn frames_per_epoch(&self) -> usize {
        self.preparer.ids.len()
    }

    /// Optimisation steps of one epoch (the last batch may be short, as OpenPCDet's training loader keeps it).
    pub fn steps_per_epoch(&self) -> usize {
        self.frames_per_epoch().div_ceil(self.config.batch_size)
    }

    pub fn total_steps(&self) -> usize {
        self.config.epochs * self.steps_per_epoch()
    }

    /// Whether the forward pass runs in mixed precision (CUDA and `mixed_precision`).
    pub fn mixed_precision(&self) -> bool {
        self.scaler.enabled()
    }

    /// Frame order of `epoch`: a seeded shuffle, so a resumed run sees the
    /// same sequence it would have seen.
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.frames_per_epoch()).collect();
        let mut rng = Rng::stream(self.config.seed, epoch as u64);
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.below(i + 1));
        }
        idx
    }

    /// The samples of `epoch` from frame `from` on: frame indices in the
    /// epoch's order, numbered across the run (epoch · frames + place), which
    /// seeds each one's augmentation.
    pub fn epoch_samples(&self, epoch: usize, from: usize) -> Vec<SampleRef> {
        let n = self.frames_per_epoch();
        self.order(epoch).into_iter().enumerate().skip(from).map(|(k, frame)| SampleRef { frame, sample: (epoch * n + k) as u64 }).collect()
    }

    /// The batches of `epoch` from frame `from` on, prepared by the
    /// configured loader threads.
    pub fn epoch_loader(&self, epoch: usize, from: usize) -> Result<BatchLoader, TrainError> {
        let samples = self.epoch_samples(epoch, from);
        Ok(BatchLoader::new(Arc::clone(&self.preparer), samples, self.config.batch_size, self.config.loader_threads)?)
    }

    /// Trains until the configured epochs are done (or `stop` says so after a
    /// step), checkpointing as configured.
    pub fn run(&mut self, mut on_step: impl FnMut(&StepEvent), mut on_epoch: impl FnMut(&EpochScore), stop: impl Fn() -> bool) -> Result<(), TrainError> {
        let estimator = self.config.estimator()?;
        let total = self.total_steps();
        let n = self.frames_per_epoch();
        let mut steps_log = CsvLog::open(&self.run_dir.join("steps.csv"), STEPS_HEADER)?;
        let mut rate = RateWindow::default();
        while self.position.epoch < self.config.epochs {
            let epoch = self.position.epoch;
            let mut loader = self.epoch_loader(epoch, self.position.frame)?;
            while self.position.frame < n {
                let t0 = Instant::now();
                let batch = loader.next_batch()?.ok_or(TrainError::Loader(LoaderError::Gone(self.position.frame as u64)))?;
                let data_wait = t0.elapsed().as_secs_f64();
                let step = self.position.global_step;
                let progress = epoch as f64 + self.position.frame as f64 / n as f64;
                let warm = if self.config.eloss_warmup_epochs > 0.0 { (progress / self.config.eloss_warmup_epochs).min(1.0) } else { 1.0 };
                let cfg = StepConfig {
                    weights: LossWeights::default(),
                    eloss_weight: self.config.eloss_weight * warm,
                    estimator,
                    grouping: self.config.grouping,
                    clip_norm: self.config.clip_norm,
                    decrease_weight: 0.0,
                    batchnorm: self.config.batchnorm,
                };
                let (lr, beta1) = self.config.schedule.at(step, total);
                let report = train_step(&self.detector, &mut self.optimizer, (lr, beta1), &batch, &cfg, &mut self.scaler)?;
                if !report.stepped {
                    tracing::warn!(step, loss_scale = self.scaler.scale(), "non-finite gradient in mixed precision: update skipped, loss scale halved");
                }
                self.position.frame += batch.len();
                self.position.global_step += 1;
                let seconds = t0.elapsed().as_secs_f64();
                steps_log.row(&format!(
                    "{},{},{:.3e},{:.5},{:.5},{:.4},{},{:.3},{},{:.4},{:.3},{:.2},{:.3},{}",
                    step,
                    epoch,
                    lr,
                    report.detection,
                    report.eloss,
                    cfg.eloss_weight,
                    report.positives,
                    seconds,
                    batch.len(),
                    data_wait,
                    1.0 / seconds.max(1e-9),
                    batch.len() as f64 / seconds.max(1e-9),
                    data_wait / seconds.max(1e-9),
                    self.scaler.scale(),
                ))?;
                if let Some(r) = rate.add(batch.len(), seconds, data_wait) {
                    tracing::info!(
                        step = self.position.global_step,
                        steps_per_s = format_args!("{:.3}", r.steps_per_s),
                        frames_per_s = format_args!("{:.2}", r.frames_per_s),
                        data_wait_fraction = format_args!("{:.3}", r.data_wait_fraction),
                        "training throughput"
                    );
                }
                on_step(&StepEvent {
                    position: self.position,
                    total_steps: total,
                    lr,
                    detection: report.detection,
                    eloss: report.eloss,
                    positives: report.positives,
                    frames: batch.len(),
                    seconds,
                    data_wait_seconds: data_wait,
                });
                if self.position.global_step % self.config.checkpoint_every == 0 {
                    self.save(&self.run_dir.join("last.safetensors"))?;
                }
                if stop() {
                    self.save(&self.run_dir.join("last.safetensors"))?;
                    return Ok(());
                }
            }
            drop(loader);
            self.position = Position { epoch: epoch + 1, frame: 0, global_step: self.position.global_step };
            if let Some(score) = self.validate(epoch)? {
                on_epoch(&score);
            }
            self.save(&self.run_dir.join("last.safetensors"))?;
        }
        // the deliverable: weights and metadata only, without the optimizer state
        checkpoint::save(&self.run_dir.join("final.safetensors"), &self.detector, &self.training_state(), &[])?;
        Ok(())
    }

    /// Saves model, optimizer and position; returns the model id.
    pub fn save(&self, path: &Path) -> Result<String, TrainError> {
        Ok(checkpoint::save(path, &self.detector, &self.training_state(), &self.optimizer.state())?)
    }

    /// The checkpoint's `training` metadata: where the run stands and its config.
    fn training_state(&self) -> serde_json::Value {
        serde_json::json!({ "position": self.position, "config": self.config, "loss_scale": self.scaler.state() })
    }

    fn validate(&mut self, epoch: usize) -> Result<Option<EpochScore>, TrainError> {
        let Some(val) = &self.val else { return Ok(None) };
        let ids: Vec<String> = val.ids().iter().take(self.config.val_frames).cloned().collect();
        // the whole precision-recall curve (OpenPCDet evaluates from score 0.1)
        let keep = self.detector.config.score_threshold;
        self.detector.set_score_threshold(EVAL_SCORE_THRESHOLD)?;
        let preds = predict(&self.detector, val, &ids, |_| {});
        self.detector.set_score_threshold(keep)?;
        let preds = preds?;
        let report = preds.evaluate(&EvalConfig::default())?;
        let pick = |metric| {
            [ObjectClass::Car, ObjectClass::Pedestrian, ObjectClass::Cyclist]
                .iter()
                .map(|c| (c.as_str().to_string(), report.ap(*c, metric, Difficulty::Moderate, true).unwrap_or(0.0)))
                .collect::<Vec<_>>()
        };
        let score = EpochScore { epoch, bev: pick(Metric::Bev), ap3d: pick(Metric::ThreeD) };
        let mut log = CsvLog::open(&self.run_dir.join("epochs.csv"), "epoch,step,class,bev_mod_r40,3d_mod_r40")?;
        for ((name, bev), (_, a3)) in score.bev.iter().zip(&score.ap3d) {
            log.row(&format!("{},{},{},{:.2},{:.2}", epoch, self.position.global_step, name, bev, a3))?;
        }
        Ok(Some(score))
    }
}
