//! Detector checkpoints: one safetensors file holding the network's variables
//! (OpenPCDet key names), optionally the optimizer state (keys under
//! `optimizer/`, for resuming), and JSON metadata — the [`DetectorConfig`],
//! the class names, a content id of the weights and the training state — so a
//! checkpoint alone rebuilds the model that wrote it.
//!
//! Files are written to a temporary name and renamed, so a run killed while
//! saving never leaves a truncated checkpoint behind.

use super::detector::{Detector, DetectorConfig, DetectorError};
use crate::weights::{load_tensors, Leniency, WeightsError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const FORMAT: &str = "eloss_perception.detector.v1";
const OPTIMIZER_PREFIX: &str = "optimizer/";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a detector checkpoint: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
}

/// What the metadata says about a checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    pub config: DetectorConfig,
    /// First 12 hex digits of the SHA-256 of the network's variables (names,
    /// shapes and values): equal weights give equal ids, whatever the file.
    pub model_id: String,
    /// Free-form training state written by the trainer (epoch, step, losses…).
    pub training: serde_json::Value,
}

/// Saves `det`'s variables, `optimizer` tensors (stored under `optimizer/`)
/// and metadata. Returns the model id.
pub fn save(path: &Path, det: &Detector, training: &serde_json::Value, optimizer: &[(String, Tensor)]) -> Result<String, CheckpointError> {
    let model = sorted_vars(det);
    let mut flat: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &model {
        flat.push((name.clone(), shape(t), f32_bytes(t)));
    }
    let model_id = digest(&flat);
    for (name, t) in optimizer {
        flat.push((format!("{OPTIMIZER_PREFIX}{name}"), shape(t), f32_bytes(t)));
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("config".to_string(), serde_json::to_string(&det.config).expect("config serialises"));
    meta.insert("classes".to_string(), serde_json::to_string(&det.config.class_names()).expect("names serialise"));
    meta.insert("model_id".to_string(), model_id.clone());
    meta.insert("training".to_string(), training.to_string());
    let format_err = |reason: String| CheckpointError::Format { path: path.to_path_buf(), reason };
    let views = flat
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(e.to_string()))?;
    let tmp = path.with_extension("safetensors.partial");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io { path: dir.to_path_buf(), source })?;
    }
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| format_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    Ok(model_id)
}

/// Rebuilds the detector a checkpoint was written from, on `device`, and
/// loads its weights strictly (every variable present, nothing unknown).
pub fn load(path: &Path, device: Device) -> Result<(Detector, CheckpointInfo), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    load_bytes(&bytes, path, device)
}

/// As [`load`], from the file's bytes (e.g. a model compiled into the
/// binary); `source` names it in errors.
pub fn load_bytes(bytes: &[u8], source: &Path, device: Device) -> Result<(Detector, CheckpointInfo), CheckpointError> {
    let (info, tensors) = parse(bytes, source)?;
    let mut det = Detector::new(info.config.clone(), device)?;
    let model: Vec<(String, Tensor)> = tensors.into_iter().filter(|(k, _)| !k.starts_with(OPTIMIZER_PREFIX)).collect();
    load_tensors(&mut det.vs, &source.display().to_string(), model, &Leniency::default())?;
    Ok((det, info))
}

/// The optimizer tensors of a checkpoint (names without the prefix).
pub fn optimizer_state(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let (_, tensors) = read(path)?;
    Ok(tensors.into_iter().filter_map(|(k, t)| k.strip_prefix(OPTIMIZER_PREFIX).map(|k| (k.to_string(), t))).collect())
}

/// Metadata and every tensor of a checkpoint (on the CPU).
pub fn read(path: &Path) -> Result<(CheckpointInfo, Vec<(String, Tensor)>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    parse(&bytes, path)
}

fn parse(bytes: &[u8], path: &Path) -> Result<(CheckpointInfo, Vec<(String, Tensor)>), CheckpointError> {
    let format_err = |reason: String| CheckpointError::Format { path: path.to_path_buf(), reason };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format_err(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    match meta.get("format") {
        Some(f) if f == FORMAT => {}
        other => return Err(format_err(format!("format {other:?}, expected {FORMAT:?}"))),
    }
    let field = |k: &str| meta.get(k).ok_or_else(|| format_err(format!("metadata has no {k:?}")));
    let config: DetectorConfig = serde_json::from_str(field("config")?).map_err(|e| format_err(format!("config: {e}")))?;
    // the names stored beside the config (read by tools without building the
    // model) must be the config's classes, or they would label the wrong head outputs
    if let Some(names) = meta.get("classes") {
        let names: Vec<String> = serde_json::from_str(names).map_err(|e| format_err(format!("classes: {e}")))?;
        if names != config.class_names() {
            return Err(format_err(format!("metadata classes {names:?} differ from config.classes {:?}", config.class_names())));
        }
    }
    let training = serde_json::from_str(field("training")?).map_err(|e| format_err(format!("training: {e}")))?;
    let model_id = field("model_id")?.clone();
    let st = SafeTensors::deserialize(bytes).map_err(|e| format_err(e.to_string()))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format_err(format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.push((name, Tensor::from_data_size(view.data(), &size, Kind::Float)));
    }
    Ok((CheckpointInfo { config, model_id, training }, tensors))
}

/// The model id of a detector's current weights (as [`save`] would record it).
pub fn model_id(det: &Detector) -> String {
    let flat: Vec<_> = sorted_vars(det).iter().map(|(n, t)| (n.clone(), shape(t), f32_bytes(t))).collect();
    digest(&flat)
}

fn sorted_vars(det: &Detector) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = det.vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn shape(t: &Tensor) -> Vec<usize> {
    t.size().iter().map(|&d| d as usize).collect()
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    let flat = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view(-1);
    let values = Vec::<f32>::try_from(&flat).expect("a contiguous f32 CPU tensor converts");
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn digest(flat: &[(String, Vec<usize>, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (name, shape, bytes) in flat {
        h.update(name.as_bytes());
        h.update(format!("{shape:?}").as_bytes());
        h.update(bytes);
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::model::backbone::BackboneConfig;
    use crate::detect::model::neck::NeckConfig;
    use crate::detect::pillars::PillarConfig;

    pub(crate) fn tiny_config() -> DetectorConfig {
        DetectorConfig {
            pillars: PillarConfig { range: [0.0, -10.24, -3.0, 20.48, 10.24, 1.0], pillar_size: [0.32, 0.32], max_points_per_pillar: 8, max_pillars: 2000 },
            encoder_channels: 8,
            backbone: BackboneConfig { in_channels: 8, layer_nums: vec![2, 2], layer_strides: vec![2, 2], num_filters: vec![8, 16] },
            neck: NeckConfig { in_channels: vec![8, 16], upsample_strides: vec![1, 2], upsample_filters: vec![8, 8] },
            ..DetectorConfig::compact()
        }
    }

    fn grid_cloud() -> crate::cloud::Points {
        let mut pts = crate::cloud::Points::with_capacity(500, false, false);
        for i in 0..500 {
            let (x, y) = ((i % 50) as f32 * 0.4, (i / 50) as f32 * 0.8 - 4.0);
            pts.push(crate::cloud::Point { x, y, z: -1.0 + 0.01 * (i % 7) as f32, intensity: 0.5, ring: 0, time: 0.0 });
        }
        pts
    }

    #[test]
    fn save_load_round_trip_is_exact() {
        tch::manual_seed(3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let det = Detector::new(tiny_config(), Device::Cpu).unwrap();
        // make the BN running statistics non-default so they are checked too
        let pts = grid_cloud();
        let _ = det.forward_train(&pts, crate::detect::detector::BatchNormMode::Train).unwrap();
        let opt = vec![("exp_avg/x".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))];
        let training = serde_json::json!({"epoch": 2, "step": 17});
        let id = save(&path, &det, &training, &opt).unwrap();
        assert_eq!(id, model_id(&det));
        let (back, info) = load(&path, Device::Cpu).unwrap();
        assert_eq!(info.config, det.config);
        assert_eq!(info.model_id, id);
        assert_eq!(info.training["step"], 17);
        assert_eq!(model_id(&back), id, "the reloaded weights hash the same");
        let (a, b) = (det.vs.variables(), back.vs.variables());
        assert_eq!(a.len(), b.len());
        for (k, t) in &a {
            assert!(t.equal(&b[k]), "{k} differs");
        }
        let st = optimizer_state(&path).unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].0, "exp_avg/x");
        assert!(st[0].1.equal(&opt[0].1));
        // same input, same output
        let (x, y) = (det.detect(&pts).unwrap(), back.detect(&pts).unwrap());
        assert!(x.head.cls.equal(&y.head.cls));
    }

    /// A copy of checkpoint `src` whose metadata `edit` changed.
    fn with_metadata(src: &Path, dst: &Path, edit: impl FnOnce(&mut HashMap<String, String>)) {
        let bytes = std::fs::read(src).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        edit(&mut meta);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        safetensors::serialize_to_file(st.tensors(), Some(meta), dst).unwrap();
    }

    #[test]
    fn broken_metadata_config_fails_to_load_without_building() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.safetensors");
        save(&good, &Detector::new(tiny_config(), Device::Cpu).unwrap(), &serde_json::json!({}), &[]).unwrap();
        let bad = dir.path().join("bad.safetensors");
        let edit_config = |meta: &mut HashMap<String, String>, key: &str, value: serde_json::Value| {
            let mut config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
            config[key] = value;
            meta.insert("config".into(), config.to_string());
        };
        // neck in_channels no longer match the backbone's filters
        let neck = serde_json::json!({"in_channels": [8, 32], "upsample_strides": [1, 2], "upsample_filters": [8, 8]});
        with_metadata(&good, &bad, |m| edit_config(m, "neck", neck));
        let err = load(&bad, Device::Cpu).err().expect("a broken config is an error");
        assert!(matches!(&err, CheckpointError::Detector(DetectorError::Config { field, .. }) if field == "neck.in_channels[1]"), "{err:?}");
        assert!(err.to_string().contains("neck.in_channels[1]"), "{err}");
        // the same from bytes (the embedded-model path)
        let bytes = std::fs::read(&bad).unwrap();
        assert!(matches!(load_bytes(&bytes, &bad, Device::Cpu), Err(CheckpointError::Detector(DetectorError::Config { .. }))));
        // an empty class list (the names beside the config agree)
        with_metadata(&good, &bad, |m| {
            edit_config(m, "classes", serde_json::json!([]));
            m.insert("classes".into(), "[]".into());
        });
        let err = load(&bad, Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("detector config: classes:"), "{err}");
        // class names beside the config that are not the config's
        with_metadata(&good, &bad, |m| drop(m.insert("classes".into(), r#"["Car"]"#.into())));
        let err = load(&bad, Device::Cpu).err().unwrap();
        assert!(matches!(&err, CheckpointError::Format { reason, .. } if reason.contains("config.classes")), "{err:?}");
    }

    /// Checkpoints written before the anchor and NMS settings were part of
    /// the config (the shipped model among them) load with the settings they
    /// were built with: yaws 0 and π/2 on cell centres, class-wise NMS over
    /// the best 4096 candidates.
    #[test]
    fn configs_without_the_anchor_and_nms_fields_keep_the_old_behaviour() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.safetensors");
        save(&good, &Detector::new(tiny_config(), Device::Cpu).unwrap(), &serde_json::json!({}), &[]).unwrap();
        let old = dir.path().join("old.safetensors");
        with_metadata(&good, &old, |m| {
            let mut config: serde_json::Value = serde_json::from_str(&m["config"]).unwrap();
            for k in ["anchor_rotations", "anchor_align_center", "nms_class_agnostic", "nms_pre_max_size", "match_thresholds"] {
                assert!(config.as_object_mut().unwrap().remove(k).is_some(), "{k}");
            }
            m.insert("config".into(), config.to_string());
        });
        let (det, info) = load(&old, Device::Cpu).unwrap();
        assert_eq!(info.config, tiny_config());
        assert_eq!(info.config.anchor_rotations, [0.0, std::f64::consts::FRAC_PI_2]);
        assert!(info.config.anchor_align_center && !info.config.nms_class_agnostic);
        assert_eq!(det.nms_config().pre_max_size(), Some(4096));
        let first = det.anchors().anchors()[0];
        assert!((first.center[0] - 0.32).abs() < 1e-12, "cell-centred anchors (0.64 m cells): {first:?}");
    }

    #[test]
    fn corrupt_or_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a safetensors file").unwrap();
        assert!(matches!(load(&junk, Device::Cpu), Err(CheckpointError::Format { .. })));
        assert!(matches!(load(&dir.path().join("missing.safetensors"), Device::Cpu), Err(CheckpointError::Io { .. })));
        let plain = dir.path().join("plain.safetensors");
        Tensor::write_safetensors(&[("a", Tensor::from_slice(&[1.0f32]))], &plain).unwrap();
        let err = load(&plain, Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("format"), "{err}");
        // truncated checkpoint
        let det = Detector::new(tiny_config(), Device::Cpu).unwrap();
        let good = dir.path().join("good.safetensors");
        save(&good, &det, &serde_json::json!({}), &[]).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(load(&cut, Device::Cpu), Err(CheckpointError::Format { .. })));
    }
}
