//! Strict loading of safetensors checkpoints into a tch `VarStore`.
//!
//! tch's own `VarStore::load` reports missing tensors but ignores extra ones,
//! and a shape mismatch surfaces as a libtorch error without the key. Here the
//! file's keys and the model's variables are compared both ways and shapes
//! are checked before copying, so a wrong checkpoint fails with the key's name.
//! Tensors are converted to each variable's dtype (checkpoints are often
//! fp16/bf16) and device.

use std::collections::BTreeSet;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: not a readable safetensors file: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: missing tensors the model needs: {keys:?}")]
    Missing { path: String, keys: Vec<String> },
    #[error("{path}: tensors the model does not have (wrong architecture or config?): {keys:?}")]
    Unexpected { path: String, keys: Vec<String> },
    #[error("{path}: tensor {key} has shape {file:?}, the model expects {model:?}")]
    Shape { path: String, key: String, file: Vec<i64>, model: Vec<i64> },
    #[error("{path}: tensor {key} could not be copied: {reason}")]
    Copy { path: String, key: String, reason: String },
}

/// Which file keys may be absent or ignored without error (e.g. DINOv2's
/// `embeddings.mask_token`, used only for masked-image pre-training).
#[derive(Debug, Default, Clone)]
pub struct Leniency<'a> {
    pub ignore_unused: &'a [&'a str],
}

/// Loads every variable of `vs` from the safetensors file at `path`.
pub fn load_strict(vs: &mut VarStore, path: &Path, leniency: &Leniency) -> Result<(), WeightsError> {
    let p = path.display().to_string();
    let tensors = Tensor::read_safetensors(path).map_err(|e| WeightsError::Unreadable { path: p.clone(), reason: e.to_string() })?;
    load_tensors(vs, &p, tensors, leniency)
}

/// As [`load_strict`], from tensors already in memory (`source` names them in errors).
pub fn load_tensors(vs: &mut VarStore, source: &str, tensors: Vec<(String, Tensor)>, leniency: &Leniency) -> Result<(), WeightsError> {
    let mut vars = vs.variables();
    let file_keys: BTreeSet<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<String> = vars.keys().filter(|k| !file_keys.contains(k.as_str())).cloned().collect();
    if !missing.is_empty() {
        return Err(WeightsError::Missing { path: source.into(), keys: sorted(missing) });
    }
    let unexpected: Vec<String> = file_keys
        .iter()
        .filter(|k| !vars.contains_key(**k) && !leniency.ignore_unused.contains(k))
        .map(|k| k.to_string())
        .collect();
    if !unexpected.is_empty() {
        return Err(WeightsError::Unexpected { path: source.into(), keys: unexpected });
    }
    tch::no_grad(|| {
        for (key, t) in tensors {
            let Some(var) = vars.get_mut(&key) else { continue };
            if t.size() != var.size() {
                return Err(WeightsError::Shape { path: source.into(), key, file: t.size(), model: var.size() });
            }
            let t = t.to_kind(var.kind()).to_device(var.device());
            var.f_copy_(&t).map_err(|e| WeightsError::Copy { path: source.into(), key, reason: e.to_string() })?;
        }
        Ok(())
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    fn model(vs: &VarStore) {
        let root = vs.root();
        let _ = nn::linear(&root / "fc", 3, 2, Default::default());
    }

    #[test]
    fn strict_both_ways_with_key_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let w = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
        let b = Tensor::from_slice(&[0.5f32, -0.5]);
        let extra = Tensor::zeros([1], (Kind::Float, Device::Cpu));

        let mut vs = VarStore::new(Device::Cpu);
        model(&vs);
        Tensor::write_safetensors(&[("fc.weight", &w), ("fc.bias", &b)], &path).unwrap();
        load_strict(&mut vs, &path, &Leniency::default()).unwrap();
        assert!(vs.variables()["fc.weight"].equal(&w));

        // half precision converts
        Tensor::write_safetensors(&[("fc.weight", &w.to_kind(Kind::Half)), ("fc.bias", &b)], &path).unwrap();
        load_strict(&mut vs, &path, &Leniency::default()).unwrap();

        Tensor::write_safetensors(&[("fc.weight", &w)], &path).unwrap();
        let e = load_strict(&mut vs, &path, &Leniency::default()).unwrap_err();
        assert!(e.to_string().contains("fc.bias"), "{e}");

        Tensor::write_safetensors(&[("fc.weight", &w), ("fc.bias", &b), ("head.x", &extra)], &path).unwrap();
        let e = load_strict(&mut vs, &path, &Leniency::default()).unwrap_err();
        assert!(matches!(e, WeightsError::Unexpected { .. }) && e.to_string().contains("head.x"), "{e}");
        load_strict(&mut vs, &path, &Leniency { ignore_unused: &["head.x"] }).unwrap();

        Tensor::write_safetensors(&[("fc.weight", &w.view([3, 2])), ("fc.bias", &b)], &path).unwrap();
        let e = load_strict(&mut vs, &path, &Leniency::default()).unwrap_err();
        assert!(matches!(e, WeightsError::Shape { ref key, .. } if key == "fc.weight"), "{e}");

        std::fs::write(&path, b"not a safetensors file").unwrap();
        assert!(matches!(load_strict(&mut vs, &path, &Leniency::default()), Err(WeightsError::Unreadable { .. })));
    }
}
