//! OpenPCDet PointPillars checkpoints → our detector checkpoints
//! (`eloss import-openpcdet`).
//!
//! - [`pickle`]: a bounded, non-executing reader of the pickle subset torch writes;
//! - [`pth`]: `torch.save` containers (zip, and the legacy format OpenPCDet saves in);
//! - [`config`]: an OpenPCDet model YAML translated into our `DetectorConfig`.
//!
//! The key mapping is strict: our network's variables already carry
//! OpenPCDet's names (`vfe.pfn_layers.0.*`, `backbone_2d.blocks.I.K.*`,
//! `backbone_2d.deblocks.I.{0,1}.*`, `dense_head.conv_{cls,box,dir_cls}.*`),
//! so every checkpoint tensor must be one of ours with the same shape and
//! every one of ours must be in the checkpoint. Two kinds of entries are
//! skipped, being counters rather than weights: `global_step` (the
//! detector's step buffer) and `*.num_batches_tracked` (batch-norm's
//! update counter, unused with a fixed momentum).

pub mod config;
pub mod pickle;
pub mod pth;

use crate::detect::checkpoint::{self, CheckpointError};
use crate::detect::detector::{Detector, DetectorConfig, DetectorError};
use pickle::Value;
use pth::{PthError, PthFile, TensorRef};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Tensors accepted in one state dict (OpenPCDet's PointPillars: 70).
pub const MAX_TENSORS: usize = 10_000;
/// Values accepted in one tensor (the full model's largest: 590,000).
pub const MAX_TENSOR_VALUES: usize = 1 << 28;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {problem}")]
    Read { path: String, problem: PthError },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{path}: {problem}")]
    Checkpoint { path: String, problem: String },
    #[error("{path}: the checkpoint's weights do not fit the model of the config:\n{}", .problems.join("\n"))]
    Mapping { path: String, problems: Vec<String> },
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Save(#[from] CheckpointError),
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub model_id: String,
    pub tensors: usize,
    /// Entries skipped by rule (see the module header).
    pub skipped: Vec<String>,
    /// OpenPCDet's `epoch`, `it` and `version`, when the checkpoint has them.
    pub source: serde_json::Value,
}

type DictItem = (Value, Value);

/// Keys that are counters, not weights.
fn skipped_by_rule(key: &str) -> bool {
    key == "global_step" || key.ends_with(".num_batches_tracked")
}

/// The model state of a `torch.save` object: OpenPCDet's
/// `{'model_state': ..., 'epoch', 'it', 'optimizer_state', 'version'}`, or
/// a bare state dict (`torch.save(model.state_dict())`).
fn model_state(object: &Value) -> Result<(&[DictItem], serde_json::Value), String> {
    let Value::Dict(top) = object else { return Err("the saved object is not a dict".into()) };
    if let Some(state) = object.get("model_state") {
        let Value::Dict(items) = state else { return Err("model_state is not a dict".into()) };
        let scalar = |k: &str| match object.get(k) {
            Some(Value::Int(i)) => serde_json::json!(*i as i64),
            Some(Value::Str(s)) => serde_json::json!(s),
            _ => serde_json::Value::Null,
        };
        return Ok((items, serde_json::json!({"epoch": scalar("epoch"), "it": scalar("it"), "version": scalar("version")})));
    }
    if top.iter().all(|(_, v)| TensorRef::from_value(v).is_some()) && !top.is_empty() {
        return Ok((top, serde_json::Value::Null));
    }
    Err("no model_state in the saved dict (keys: ".to_string() + &top.iter().filter_map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ") + ")")
}

/// Reads an OpenPCDet checkpoint into a detector of `config` (strict key
/// mapping, see the module header).
pub fn load(ckpt: &Path, config: DetectorConfig, device: Device) -> Result<(Detector, ImportReport), ImportError> {
    let path = ckpt.display().to_string();
    let file = PthFile::read(ckpt).map_err(|problem| ImportError::Read { path: path.clone(), problem })?;
    let (items, source) = model_state(&file.object).map_err(|problem| ImportError::Checkpoint { path: path.clone(), problem })?;
    if items.len() > MAX_TENSORS {
        return Err(ImportError::Checkpoint { path, problem: format!("{} entries in the model state, more than {MAX_TENSORS}", items.len()) });
    }
    let det = Detector::new(config, device)?;
    let mut ours: BTreeMap<String, Tensor> = det.vs.variables().into_iter().collect();
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    let mut loaded = Vec::new();
    for (key, value) in items {
        let Some(key) = key.as_str() else {
            problems.push(format!("  a key that is not a string: {key:?}"));
            continue;
        };
        if skipped_by_rule(key) {
            skipped.push(key.to_string());
            continue;
        }
        let t = match TensorRef::from_value(value) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                problems.push(format!("  {key}: {e}"));
                continue;
            }
            None => {
                problems.push(format!("  {key}: not a tensor"));
                continue;
            }
        };
        let Some(var) = ours.remove(key) else {
            problems.push(format!("  {key} {:?}: no such weight in our model (unexpected key)", t.size));
            continue;
        };
        let want: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
        if t.size != want {
            problems.push(format!("  {key}: shape {:?} in the checkpoint, {want:?} in the model of the config", t.size));
            continue;
        }
        if t.numel() > MAX_TENSOR_VALUES {
            problems.push(format!("  {key}: {} values, more than {MAX_TENSOR_VALUES}", t.numel()));
            continue;
        }
        match file.tensor_f32(key, &t) {
            Ok(values) => loaded.push((var, values, t.size)),
            Err(e) => problems.push(format!("  {e}")),
        }
    }
    for key in ours.keys() {
        problems.push(format!("  {key}: missing from the checkpoint"));
    }
    if !problems.is_empty() {
        return Err(ImportError::Mapping { path, problems });
    }
    let tensors = loaded.len();
    tch::no_grad(|| {
        for (mut var, values, size) in loaded {
            let size: Vec<i64> = size.iter().map(|&d| d as i64).collect();
            let t = Tensor::from_slice(&values).view(size.as_slice()).to_kind(Kind::Float).to_device(device);
            var.copy_(&t);
        }
    });
    let model_id = checkpoint::model_id(&det);
    Ok((det, ImportReport { model_id, tensors, skipped, source }))
}

/// `eloss import-openpcdet`: `ckpt` with the model of `cfg_yaml` (OpenPCDet
/// YAML text; `None`: [`config::kitti_pointpillars`]) saved as our checkpoint at `out`.
pub fn import(ckpt: &Path, cfg_yaml: Option<&str>, out: &Path) -> Result<ImportReport, ImportError> {
    let config = match cfg_yaml {
        Some(text) => config::from_yaml(text)?,
        None => config::kitti_pointpillars(),
    };
    let (det, report) = load(ckpt, config, Device::Cpu)?;
    let training = serde_json::json!({
        "imported_from": {"format": "openpcdet", "file": ckpt.display().to_string(), "checkpoint": report.source, "skipped": report.skipped},
    });
    checkpoint::save(out, &det, &training, &[])?;
    Ok(report)
}
