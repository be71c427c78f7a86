//! The training run behind `eloss train`: epochs over a KITTI-format folder
//! with augmentation, the one-cycle AdamW schedule, the Entropy Loss term
//! (weight ramped in over a warm-up), checkpoints that resume exactly where
//! a run stopped, a validation AP per epoch and CSV logs for the curves.
//!
//! A run folder holds `train.yaml` (the configuration used), `last.safetensors`
//! (model + optimizer + position), `steps.csv` and `epochs.csv`.

use super::adamw::{AdamW, AdamWConfig, AdamWError};
use super::augment::{AugmentConfig, GlobalTransform};
use super::data::{gts_in_range, DataError, FrameSource};
use super::losses::LossWeights;
use super::schedule::OneCycle;
use super::step::{train_step, StepConfig, StepError};
use super::validate::{predict, ValidateError};
use crate::dataset::kitti::{Difficulty, ImageSet, KittiDataset, KittiError, ObjectClass, Split};
use crate::dataset::sim::Rng;
use crate::detect::checkpoint::{self, CheckpointError};
use crate::detect::detector::{BatchNormMode, Detector, DetectorConfig, DetectorError};
use crate::detect::targets::MatchThresholds;
use crate::eloss::entropy::Estimator;
use crate::eval::{EvalConfig, Metric};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;
use tch::Device;

/// Score threshold of the validation runs.
pub const EVAL_SCORE_THRESHOLD: f32 = 0.1;

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
    pub augment: AugmentConfig,
    pub seed: u64,
    /// Steps between checkpoints (one is also written after every epoch).
    pub checkpoint_every: usize,
    /// Validation frames scored after each epoch (0 = none).
    pub val_frames: usize,
    /// Use at most this many training frames (0 = all).
    pub max_train_frames: usize,
    /// Batch-norm during training: `train` (batch statistics, the paper's
    /// code) or `frozen` (running statistics fixed, as at inference: the
    /// trained Entropy Loss is then the Eloss the monitor reads).
    pub batchnorm: BatchNormMode,
    /// Start a new run from this model's weights (fine-tuning; empty = random
    /// initialisation). Its config must be the preset's. Ignored on resume.
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
            augment: AugmentConfig::default(),
            seed: 0,
            checkpoint_every: 250,
            val_frames: 200,
            max_train_frames: 0,
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
}

impl TrainConfig {
    pub fn from_yaml(text: &str) -> Result<Self, TrainError> {
        let cfg: Self = serde_yaml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        cfg.detector()?;
        cfg.estimator()?;
        if cfg.epochs == 0 || cfg.schedule.lr_max <= 0.0 || cfg.checkpoint_every == 0 {
            return Err(TrainError::Config("epochs, schedule.lr_max and checkpoint_every must be > 0".into()));
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
    /// Frames of `epoch` already trained on.
    pub frame: usize,
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
    train: FrameSource,
    train_ids: Vec<String>,
    val: Option<KittiDataset>,
    pub position: Position,
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
        let (detector, position) = if last.is_file() {
            let (det, info) = checkpoint::load(&last, device)?;
            if det.config != config.detector()? {
                return Err(TrainError::Config(format!("{} was trained with another model config", last.display())));
            }
            let pos = serde_json::from_value(info.training["position"].clone()).map_err(|e| TrainError::Config(format!("{}: position: {e}", last.display())))?;
            (det, pos)
        } else if !config.init.is_empty() {
            let (det, _) = checkpoint::load(Path::new(&config.init), device)?;
            if det.config != config.detector()? {
                return Err(TrainError::Config(format!("init {}: its model config is not the `{}` preset", config.init, config.model)));
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
        let train = FrameSource::new(train_ds, &detector.config.class_names())?;
        let val = if config.val_frames > 0 && has_set(ImageSet::Val) { Some(KittiDataset::open_image_set(data, ImageSet::Val)?) } else { None };
        Ok(Self { config, run_dir: run_dir.to_path_buf(), detector, optimizer, train, train_ids, val, position })
    }

    pub fn total_steps(&self) -> usize {
        self.config.epochs * self.train_ids.len()
    }

    /// Frame order of `epoch`: a seeded shuffle, so a resumed run sees the
    /// same sequence it would have seen.
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.train_ids.len()).collect();
        let mut rng = Rng::stream(self.config.seed, epoch as u64);
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.below(i + 1));
        }
        idx
    }

    /// Trains until the configured epochs are done (or `stop` says so after a
    /// step), checkpointing as configured.
    pub fn run(&mut self, mut on_step: impl FnMut(&StepEvent), mut on_epoch: impl FnMut(&EpochScore), stop: impl Fn() -> bool) -> Result<(), TrainError> {
        let estimator = self.config.estimator()?;
        let total = self.total_steps();
        let range = self.detector.config.pillars.range;
        let mut steps_log = CsvLog::open(&self.run_dir.join("steps.csv"), "step,epoch,lr,detection,eloss,eloss_weight,positives,seconds")?;
        while self.position.epoch < self.config.epochs {
            let epoch = self.position.epoch;
            let order = self.order(epoch);
            while self.position.frame < order.len() {
                let t0 = Instant::now();
                let idx = order[self.position.frame];
                let step = self.position.global_step;
                let mut frame = self.train.load(&self.train_ids[idx])?;
                let mut rng = Rng::stream(self.config.seed ^ 0x5eed, step as u64);
                let t = GlobalTransform::draw(&self.config.augment, &mut rng);
                t.apply_points(&mut frame.points);
                let boxes: Vec<_> = frame.gts.iter().map(|(b, c)| (t.apply_box(b), *c)).collect();
                let gts = gts_in_range(&boxes, &range);
                let progress = epoch as f64 + self.position.frame as f64 / order.len() as f64;
                let warm = if self.config.eloss_warmup_epochs > 0.0 { (progress / self.config.eloss_warmup_epochs).min(1.0) } else { 1.0 };
                let cfg = StepConfig {
                    weights: LossWeights::default(),
                    thresholds: MatchThresholds::kitti().to_vec(),
                    eloss_weight: self.config.eloss_weight * warm,
                    estimator,
                    clip_norm: self.config.clip_norm,
                    decrease_weight: 0.0,
                    batchnorm: self.config.batchnorm,
                };
                let (lr, beta1) = self.config.schedule.at(step, total);
                let report = train_step(&self.detector, &mut self.optimizer, (lr, beta1), &frame.points, &gts, &cfg)?;
                self.position.frame += 1;
                self.position.global_step += 1;
                steps_log.row(&format!(
                    "{},{},{:.3e},{:.5},{:.5},{:.4},{},{:.3}",
                    step,
                    epoch,
                    lr,
                    report.detection,
                    report.eloss,
                    cfg.eloss_weight,
                    report.positives,
                    t0.elapsed().as_secs_f64()
                ))?;
                on_step(&StepEvent { position: self.position, total_steps: total, lr, detection: report.detection, eloss: report.eloss, positives: report.positives });
                if self.position.global_step % self.config.checkpoint_every == 0 {
                    self.save(&self.run_dir.join("last.safetensors"))?;
                }
                if stop() {
                    self.save(&self.run_dir.join("last.safetensors"))?;
                    return Ok(());
                }
            }
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
        serde_json::json!({ "position": self.position, "config": self.config })
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

/// Appends rows to a CSV file, writing the header when the file is new.
struct CsvLog {
    path: PathBuf,
    file: std::fs::File,
}

impl CsvLog {
    fn open(path: &Path, header: &str) -> Result<Self, TrainError> {
        let io = |source| TrainError::Io { path: path.to_path_buf(), source };
        let new = !path.exists();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        if new {
            writeln!(file, "{header}").map_err(io)?;
        }
        Ok(Self { path: path.to_path_buf(), file })
    }

    fn row(&mut self, line: &str) -> Result<(), TrainError> {
        writeln!(self.file, "{line}").map_err(|source| TrainError::Io { path: self.path.clone(), source })
    }
}
