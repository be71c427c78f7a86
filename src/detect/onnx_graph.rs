//! The detector's dense part (backbone, neck, anchor head) on ONNX Runtime:
//! the optional inference backend (`detector.backend: onnxruntime`), for
//! CPUs where ONNX Runtime's kernels beat libtorch's (docs/benchmarks.md).
//! The pillar net and the BEV scatter stay on libtorch; the graph takes the
//! BEV map and gives the head outputs and every backbone layer's output, so
//! the Eloss monitor reads the same layers as on libtorch.
//!
//! The graph is exported from one of our checkpoints by
//! `scripts/export_onnx.py` (input `bev`; outputs `cls`, `boxes`, `dir`,
//! `layer_{block}_{layer}`), which records the checkpoint's model id in the
//! file's metadata: a graph made for other weights is refused. ONNX Runtime's
//! C library is loaded at run time from `ORT_DYLIB_PATH` (scripts/env.sh
//! points it at the PyPI onnxruntime wheel's `libonnxruntime.so`).

use super::model::backbone::LayerOutputs;
use super::model::head::HeadOutput;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tch::{Kind, Tensor};

/// Largest graph file accepted (the compact model's is 5 MB, the full one's ~20 MB).
pub const MAX_GRAPH_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("ONNX Runtime library: {0} (set ORT_DYLIB_PATH to libonnxruntime.so, e.g. from the PyPI onnxruntime wheel; scripts/env.sh does)")]
    Library(String),
    #[error("ONNX graph {path}: {problem}")]
    Graph { path: PathBuf, problem: String },
    #[error("ONNX Runtime run: {0}")]
    Run(String),
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime, loaded once from `ORT_DYLIB_PATH`.
fn environment() -> Result<&'static Environment, OnnxError> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = std::env::var_os("ORT_DYLIB_PATH").ok_or_else(|| "ORT_DYLIB_PATH is not set".to_string())?;
            if !Path::new(&path).is_file() {
                return Err(format!("{} is not a file", Path::new(&path).display()));
            }
            let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
            builder.with_name("eloss_perception").build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| OnnxError::Library(e.clone()))
}

/// An ONNX Runtime session of one exported graph.
pub struct OnnxDense {
    session: Mutex<Session>,
    layer_counts: Vec<usize>,
    path: PathBuf,
}

impl std::fmt::Debug for OnnxDense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDense").field("path", &self.path).field("layer_counts", &self.layer_counts).finish()
    }
}

/// The output names a graph of a backbone with `layer_counts[b]` layers in block b has.
pub fn output_names(layer_counts: &[usize]) -> Vec<String> {
    let layers = layer_counts.iter().enumerate().flat_map(|(b, &n)| (0..n).map(move |l| format!("layer_{b}_{l}")));
    ["cls", "boxes", "dir"].into_iter().map(String::from).chain(layers).collect()
}

impl OnnxDense {
    /// Opens the graph at `path` for the weights `model_id` whose backbone
    /// blocks have `layer_counts` layers, running on `threads` intra-op
    /// threads (0 = ONNX Runtime's default).
    pub fn load(path: &Path, model_id: &str, layer_counts: &[usize], threads: usize) -> Result<Self, OnnxError> {
        let graph_err = |problem: String| OnnxError::Graph { path: path.to_path_buf(), problem };
        let size = std::fs::metadata(path).map_err(|e| graph_err(e.to_string()))?.len();
        if size > MAX_GRAPH_BYTES {
            return Err(graph_err(format!("{size} bytes, more than the {MAX_GRAPH_BYTES} accepted")));
        }
        let env = environment()?;
        let session = Session::builder(env)
            .and_then(|b| Ok(b.with_intra_threads(threads)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            // no busy-waiting between kernels: the node shares its cores with
            // DDS and the monitor (spinning cost 15 % of the node's rate, docs/benchmarks.md)
            .and_then(|b| Ok(b.with_intra_op_spinning(false)?))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| graph_err(e.to_string()))?;
        let recorded = session.metadata().ok().and_then(|m| m.custom("eloss_model_id"));
        if recorded.as_deref() != Some(model_id) {
            return Err(graph_err(format!(
                "made for weights {} but the detector has {model_id} (export it again: scripts/export_onnx.py)",
                recorded.as_deref().unwrap_or("<not recorded>")
            )));
        }
        let want = output_names(layer_counts);
        let have: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if have != want || inputs != ["bev"] {
            return Err(graph_err(format!("inputs {inputs:?} and outputs {have:?}, expected [\"bev\"] and {want:?}")));
        }
        Ok(Self { session: Mutex::new(session), layer_counts: layer_counts.to_vec(), path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Backbone, neck and head on `bev` ([B, C, H, W] float32 on the CPU;
    /// copied only when not contiguous): the layer outputs (with `bev` as
    /// their input) and the head outputs, as libtorch tensors.
    pub fn forward(&self, bev: &Tensor) -> Result<(LayerOutputs, HeadOutput), OnnxError> {
        let bev = bev.to_kind(Kind::Float).contiguous();
        let shape: Vec<i64> = bev.size();
        let n = usize::try_from(shape.iter().product::<i64>()).map_err(|_| OnnxError::Run("negative BEV size".into()))?;
        // SAFETY: `bev` is a contiguous float32 CPU tensor of `n` elements that
        // outlives the borrow (the run below ends before it is dropped).
        let data = unsafe { std::slice::from_raw_parts(bev.data_ptr() as *const f32, n) };
        let input = TensorRef::from_array_view((shape.clone(), data)).map_err(|e| OnnxError::Run(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(ort::inputs!["bev" => input]).map_err(|e| OnnxError::Run(e.to_string()))?;
        let mut tensors = Vec::with_capacity(outputs.len());
        for (name, value) in outputs.iter() {
            let (dims, values) = value.try_extract_tensor::<f32>().map_err(|e| OnnxError::Run(format!("{name}: {e}")))?;
            tensors.push(Tensor::from_slice(values).view(&**dims));
        }
        drop(outputs);
        drop(session);
        let mut it = tensors.into_iter();
        let (Some(cls), Some(boxes), Some(dir)) = (it.next(), it.next(), it.next()) else {
            return Err(OnnxError::Run("fewer outputs than the graph declares".into()));
        };
        let blocks: Vec<Vec<Tensor>> = self.layer_counts.iter().map(|&k| it.by_ref().take(k).collect()).collect();
        if blocks.iter().zip(&self.layer_counts).any(|(b, &k)| b.len() != k) {
            return Err(OnnxError::Run("fewer layer outputs than the backbone has".into()));
        }
        Ok((LayerOutputs { blocks, input: Some(bev) }, HeadOutput { cls, boxes, dir }))
    }
}
