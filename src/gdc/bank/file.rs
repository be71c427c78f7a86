//! The bank file: a safetensors file (little-endian f64 tensors) whose
//! `__metadata__` string map holds one key, [`METADATA_KEY`], whose value is
//! a JSON document describing the bank.
//!
//! Tensors (i = class index, d = dimension):
//! - `classes.{i}.mean`        f64 [d]
//! - `classes.{i}.chol`        f64 [d, d] (Full: lower-triangular L, Σ = L Lᵀ)
//!                             or [d] (Diagonal: the standard deviations); absent for Shared
//! - `classes.{i}.sample_var`  f64 [1]  tr(S_i)/d before the ridge (for one-shot pooling)
//! - `shared.chol`             f64 [d, d] (Shared only)
//! - `shared.scatter`          f64 [d, d] (Shared only: lower triangle of the pooled
//!                             scatter, so `add_class` works after a reload)
//! - `classes.{i}.heldout_sq`  f64 [h_i] (calibrated banks, h_i > 0 only: the class's
//!                             held-out squared Mahalanobis distances, ascending)
//!
//! JSON: `{format, version, backbone, recipe, dim, covariance: {kind, ridge_rel,
//! one_shot_variance}, shared_dof, classes: [{name, count, prompts, heldout}],
//! created, calibration: {temperature, folds}}`.
//!
//! Versions: 1 has no calibration (`heldout` and `calibration` absent); 2 is
//! written for calibrated banks (`open_set.rs`). Both are read; a version-1
//! file loads as a bank without open-set data, and an uncalibrated bank is
//! still written as version 1, byte for byte as before.
//!
//! Reading trusts nothing: every tensor must be present (and no other),
//! F64, of the exact shape and finite; factors must be lower triangular with
//! a positive diagonal (what Cholesky produces), so a corrupt file is an
//! error and never a panic or a silently wrong classifier. One metadata key
//! and safetensors' sorted tensor order make the bytes deterministic: saving
//! a loaded bank reproduces the file bit for bit.

use std::borrow::Cow;
use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use super::gaussian::{Factor, FactorError};
use super::open_set::{Calibration, TEMPERATURE_RANGE};
use super::{
    BankError, ClassGaussian, CovarianceKind, CreationInfo, EmbeddingSpec, FitOptions, GaussianBank, SharedCovariance,
};

/// The `__metadata__` key holding the JSON document.
pub const METADATA_KEY: &str = "eloss_perception.gdc_bank";
/// The `format` field of the JSON document.
const FORMAT_NAME: &str = "eloss_perception.gdc_bank";
/// Bumped on any incompatible change; readers refuse other versions. The
/// newest, written for calibrated banks; [`FORMAT_VERSION_UNCALIBRATED`]
/// for the others.
pub const FORMAT_VERSION: u32 = 2;
/// The version without calibration data (files before issue 16).
pub const FORMAT_VERSION_UNCALIBRATED: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Document {
    format: String,
    version: u32,
    backbone: String,
    recipe: String,
    dim: usize,
    covariance: CovarianceDoc,
    /// Σ_c (n_c − 1) of the pooled scatter; Shared banks only.
    shared_dof: Option<usize>,
    classes: Vec<ClassDoc>,
    created: CreationInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calibration: Option<CalibrationDoc>,
}

#[derive(Serialize, Deserialize)]
struct CalibrationDoc {
    temperature: f64,
    folds: usize,
}

#[derive(Serialize, Deserialize)]
struct CovarianceDoc {
    kind: String,
    ridge_rel: f64,
    one_shot_variance: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct ClassDoc {
    name: String,
    count: usize,
    prompts: Vec<String>,
    /// Number of held-out distances (tensor `classes.{i}.heldout_sq`).
    #[serde(default, skip_serializing_if = "is_zero")]
    heldout: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// An owned f64 tensor ready for safetensors.
pub(super) struct F64Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F64Tensor {
    pub(super) fn new(shape: Vec<usize>, values: &[f64]) -> F64Tensor {
        F64Tensor {
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl View for F64Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F64
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

pub(super) fn to_bytes(bank: &GaussianBank) -> Result<Vec<u8>, BankError> {
    let (tensors, metadata) = encode(bank)?;
    write(tensors, metadata)
}

/// The tensors and the metadata map of a bank (split from `write` so tests
/// can tamper with tensors and check that the reader notices).
pub(super) fn encode(bank: &GaussianBank) -> Result<(Vec<(String, F64Tensor)>, HashMap<String, String>), BankError> {
    let d = bank.dim;
    let mut tensors = Vec::new();
    for (i, class) in bank.classes.iter().enumerate() {
        tensors.push((format!("classes.{i}.mean"), F64Tensor::new(vec![d], &class.mean)));
        tensors.push((
            format!("classes.{i}.sample_var"),
            F64Tensor::new(vec![1], &[class.sample_var]),
        ));
        match &class.factor {
            Some(f @ Factor::Dense { .. }) => {
                tensors.push((format!("classes.{i}.chol"), F64Tensor::new(vec![d, d], f.entries())))
            }
            Some(f @ Factor::Diagonal { .. }) => {
                tensors.push((format!("classes.{i}.chol"), F64Tensor::new(vec![d], f.entries())))
            }
            None => {}
        }
        let heldout = heldout_of(bank, i);
        if !heldout.is_empty() {
            tensors.push((format!("classes.{i}.heldout_sq"), F64Tensor::new(vec![heldout.len()], heldout)));
        }
    }
    if let Some(shared) = &bank.shared {
        tensors.push((
            "shared.chol".into(),
            F64Tensor::new(vec![d, d], shared.factor.entries()),
        ));
        tensors.push(("shared.scatter".into(), F64Tensor::new(vec![d, d], &shared.scatter)));
    }
    let doc = Document {
        format: FORMAT_NAME.into(),
        version: if bank.calibration.is_some() { FORMAT_VERSION } else { FORMAT_VERSION_UNCALIBRATED },
        backbone: bank.spec.backbone.clone(),
        recipe: bank.spec.recipe.clone(),
        dim: d,
        covariance: CovarianceDoc {
            kind: bank.options.kind.name().into(),
            ridge_rel: bank.options.kind.ridge_rel(),
            one_shot_variance: bank.options.one_shot_variance,
        },
        shared_dof: bank.shared.as_ref().map(|s| s.dof),
        classes: bank
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| ClassDoc {
                name: c.name.clone(),
                count: c.count,
                prompts: c.prompts.clone(),
                heldout: heldout_of(bank, i).len(),
            })
            .collect(),
        created: bank.created.clone(),
        calibration: bank.calibration.as_ref().map(|c| CalibrationDoc { temperature: c.temperature, folds: c.folds }),
    };
    let json = serde_json::to_string(&doc).map_err(|e| BankError::Format(format!("cannot encode metadata: {e}")))?;
    Ok((tensors, HashMap::from([(METADATA_KEY.to_string(), json)])))
}

fn heldout_of(bank: &GaussianBank, class: usize) -> &[f64] {
    bank.calibration.as_ref().and_then(|c| c.heldout_sq.get(class)).map_or(&[], Vec::as_slice)
}

pub(super) fn write(
    tensors: Vec<(String, F64Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, BankError> {
    Ok(safetensors::serialize(tensors, Some(metadata))?)
}

pub(super) fn from_bytes(bytes: &[u8]) -> Result<GaussianBank, BankError> {
    // Validates the header, offsets and that the data exactly fills the file.
    let st = SafeTensors::deserialize(bytes)?;
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| BankError::Format(format!("no {METADATA_KEY:?} entry in the safetensors metadata")))?;
    let doc: Document = serde_json::from_str(json).map_err(|e| BankError::Format(format!("metadata JSON: {e}")))?;
    if doc.format != FORMAT_NAME {
        return Err(BankError::Format(format!(
            "format is {:?}, expected {FORMAT_NAME:?}",
            doc.format
        )));
    }
    if doc.version != FORMAT_VERSION && doc.version != FORMAT_VERSION_UNCALIBRATED {
        return Err(BankError::UnsupportedVersion {
            found: doc.version,
            supported: FORMAT_VERSION,
        });
    }
    let d = doc.dim;
    if d == 0 {
        return Err(BankError::Format("dimension 0".into()));
    }
    let kind = CovarianceKind::from_name(&doc.covariance.kind, doc.covariance.ridge_rel)
        .ok_or_else(|| BankError::Format(format!("unknown covariance kind {:?}", doc.covariance.kind)))?;
    let options = FitOptions {
        kind,
        one_shot_variance: doc.covariance.one_shot_variance,
    };
    options.validate().map_err(|e| BankError::Format(e.to_string()))?;
    // the caps of a bank in memory, before any tensor is read
    super::check_size(kind, doc.classes.len(), d)?;

    // Exactly the expected tensors: a missing one is corruption, an extra one
    // a writer we do not understand.
    let mut expected = Vec::new();
    for (i, c) in doc.classes.iter().enumerate() {
        if c.heldout > 0 {
            expected.push(format!("classes.{i}.heldout_sq"));
        }
        expected.push(format!("classes.{i}.mean"));
        expected.push(format!("classes.{i}.sample_var"));
        if !matches!(kind, CovarianceKind::Shared { .. }) {
            expected.push(format!("classes.{i}.chol"));
        }
    }
    if matches!(kind, CovarianceKind::Shared { .. }) {
        expected.push("shared.chol".into());
        expected.push("shared.scatter".into());
    }
    let mut present: Vec<&str> = st.names();
    present.sort_unstable();
    let mut wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    if let Some(extra) = present.iter().find(|n| wanted.binary_search(n).is_err()) {
        return Err(BankError::Format(format!("unexpected tensor {extra:?}")));
    }
    if let Some(missing) = wanted.iter().find(|n| present.binary_search(n).is_err()) {
        return Err(BankError::Format(format!("missing tensor {missing:?}")));
    }

    let calibration = read_calibration(&st, &doc)?;
    let mut classes = Vec::with_capacity(doc.classes.len());
    for (i, c) in doc.classes.into_iter().enumerate() {
        if c.name.is_empty() {
            return Err(BankError::Format(format!("class {i} has an empty name")));
        }
        if classes.iter().any(|o: &ClassGaussian| o.name == c.name) {
            return Err(BankError::Format(format!("duplicate class name {:?}", c.name)));
        }
        if c.count == 0 {
            return Err(BankError::Format(format!("class {:?} has count 0", c.name)));
        }
        let mean = read(&st, &format!("classes.{i}.mean"), &[d])?;
        // `read` checked the shape [1], so the one element is there.
        let sample_var = read(&st, &format!("classes.{i}.sample_var"), &[1])?[0];
        if sample_var < 0.0 {
            return Err(BankError::Format(format!(
                "class {:?} has a negative sample variance",
                c.name
            )));
        }
        let chol = format!("classes.{i}.chol");
        let factor = match kind {
            CovarianceKind::Full { .. } => {
                Some(Factor::from_dense(d, read(&st, &chol, &[d, d])?).map_err(|e| factor_error(&chol, e))?)
            }
            CovarianceKind::Diagonal { .. } => {
                Some(Factor::from_diagonal(read(&st, &chol, &[d])?).map_err(|e| factor_error(&chol, e))?)
            }
            CovarianceKind::Shared { .. } => None,
        };
        classes.push(ClassGaussian {
            name: c.name,
            count: c.count,
            prompts: c.prompts,
            mean,
            sample_var,
            factor,
        });
    }
    let shared = match kind {
        CovarianceKind::Shared { .. } => {
            let dof = doc
                .shared_dof
                .ok_or_else(|| BankError::Format("shared bank without shared_dof".into()))?;
            let factor = Factor::from_dense(d, read(&st, "shared.chol", &[d, d])?)
                .map_err(|e| factor_error("shared.chol", e))?;
            let scatter = read(&st, "shared.scatter", &[d, d])?;
            Some(SharedCovariance { scatter, dof, factor })
        }
        _ => None,
    };
    Ok(GaussianBank {
        spec: EmbeddingSpec {
            backbone: doc.backbone,
            recipe: doc.recipe,
        },
        options,
        dim: d,
        classes,
        shared,
        created: doc.created,
        calibration,
    })
}

/// The calibration of a version-2 file: temperature in range, each class's
/// held-out distances finite, ≥ 0 and ascending. Held-out counts without a
/// calibration (or the reverse in version 1) are refused.
fn read_calibration(st: &SafeTensors<'_>, doc: &Document) -> Result<Option<Calibration>, BankError> {
    let any_heldout = doc.classes.iter().any(|c| c.heldout > 0);
    let Some(cal) = &doc.calibration else {
        if any_heldout {
            return Err(BankError::Format("held-out distances without a calibration entry".into()));
        }
        return Ok(None);
    };
    if doc.version == FORMAT_VERSION_UNCALIBRATED {
        return Err(BankError::Format("a version-1 file with a calibration entry".into()));
    }
    let (lo, hi) = TEMPERATURE_RANGE;
    if !(cal.temperature >= lo && cal.temperature <= hi) {
        return Err(BankError::Format(format!("calibration temperature {} outside [{lo}, {hi}]", cal.temperature)));
    }
    if cal.folds < 2 {
        return Err(BankError::Format(format!("calibration folds {} < 2", cal.folds)));
    }
    let mut heldout_sq = Vec::with_capacity(doc.classes.len());
    for (i, c) in doc.classes.iter().enumerate() {
        if c.heldout > c.count {
            return Err(BankError::Format(format!("class {:?}: {} held-out distances for {} images", c.name, c.heldout, c.count)));
        }
        let v = if c.heldout > 0 { read(st, &format!("classes.{i}.heldout_sq"), &[c.heldout])? } else { Vec::new() };
        if v.iter().any(|&x| x < 0.0) || v.windows(2).any(|w| w[0] > w[1]) {
            return Err(BankError::Format(format!("class {:?}: held-out distances must be >= 0 and ascending", c.name)));
        }
        heldout_sq.push(v);
    }
    Ok(Some(Calibration { temperature: cal.temperature, folds: cal.folds, heldout_sq }))
}

/// One F64 tensor of exactly `shape`, all values finite.
fn read(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f64>, BankError> {
    let t: TensorView<'_> = st.tensor(name)?;
    if t.dtype() != Dtype::F64 {
        return Err(BankError::Format(format!(
            "tensor {name:?} is {:?}, expected F64",
            t.dtype()
        )));
    }
    if t.shape() != shape {
        return Err(BankError::Format(format!(
            "tensor {name:?} has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    // safetensors has checked that the byte length matches the shape.
    let values: Vec<f64> = t
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(BankError::Format(format!(
            "tensor {name:?} contains a non-finite value"
        )));
    }
    Ok(values)
}

fn factor_error(name: &str, e: FactorError) -> BankError {
    BankError::Format(match e {
        FactorError::NotLowerTriangular { row, col } => {
            format!("{name} is not lower triangular (entry [{row}, {col}] is non-zero)")
        }
        FactorError::NotPositiveDefinite { index, pivot } => {
            format!("{name} has a non-positive diagonal entry [{index}] = {pivot:e}")
        }
        FactorError::NonFinite => format!("{name} contains a non-finite value"),
        FactorError::Shape => format!("{name} has the wrong number of entries"),
    })
}
