//! `torch.save` files read without Python: both the zip container (torch
//! ≥ 1.6's default: `<name>/data.pkl` plus one `<name>/data/<key>` entry per
//! storage, stored uncompressed) and the legacy sequential format that
//! OpenPCDet writes (`_use_new_zipfile_serialization=False`: pickles of the
//! magic number, the protocol version and the system info, the object, the
//! list of storage keys, then each storage as an 8-byte little-endian element
//! count followed by its raw bytes).
//!
//! Tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size,
//! stride, ...)` calls in the pickle (`_rebuild_parameter` around one for a
//! Parameter); [`TensorRef`] describes one, [`PthFile::tensor_f32`] reads its
//! values (contiguous float32 or float64 only: that is what a state dict
//! holds). Bounds: [`MAX_FILE_BYTES`], storages inside the file, tensor
//! extents inside their storages, and the pickle reader's own.

use super::pickle::{self, PickleError, Value};
use std::collections::HashMap;
use std::path::Path;

/// Largest checkpoint read (OpenPCDet's KITTI PointPillars with optimizer state: about 60 MB).
pub const MAX_FILE_BYTES: u64 = 2 << 30;
/// `torch.serialization.MAGIC_NUMBER` of the legacy format.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} bytes is more than the {MAX_FILE_BYTES} accepted for a checkpoint")]
    TooLarge(u64),
    #[error("not a torch.save file: {0}")]
    Format(String),
    #[error(transparent)]
    Pickle(#[from] PickleError),
    #[error("zip container: {0}")]
    Zip(String),
    #[error("tensor {name}: {problem}")]
    Tensor { name: String, problem: String },
}

/// Element type of a storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }
}

/// One tensor of the pickle: where its values are.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: String,
    pub dtype: Dtype,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.size.iter().product()
    }

    /// The tensor a pickle value rebuilds, if it is one.
    pub fn from_value(v: &Value) -> Option<Result<Self, String>> {
        let Value::Object { callable, args, .. } = v else { return None };
        let Value::Tuple(args) = args.as_ref() else { return None };
        if callable.is_global("torch._utils", "_rebuild_parameter") {
            return args.first().and_then(Self::from_value);
        }
        if !callable.is_global("torch._utils", "_rebuild_tensor_v2") {
            return None;
        }
        Some(Self::from_rebuild_args(args))
    }

    fn from_rebuild_args(args: &[Value]) -> Result<Self, String> {
        let [Value::PersistentId(pid), offset, Value::Tuple(size), Value::Tuple(stride), ..] = args else {
            return Err("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)".into());
        };
        let (storage, dtype, _) = storage_id(pid)?;
        let dims = |t: &[Value]| -> Result<Vec<usize>, String> {
            t.iter().map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| format!("bad dimension {d:?}"))).collect()
        };
        let offset = offset.as_int().and_then(|o| usize::try_from(o).ok()).ok_or("bad storage offset")?;
        Ok(TensorRef { storage, dtype, offset, size: dims(size)?, stride: dims(stride)? })
    }

    fn is_contiguous(&self) -> bool {
        let mut expect = 1usize;
        for (d, s) in self.size.iter().zip(&self.stride).rev() {
            if *d != 1 && *s != expect {
                return false;
            }
            expect = expect.saturating_mul(*d);
        }
        true
    }
}

/// `('storage', <torch.XStorage>, key, location, numel[, view_metadata])`.
fn storage_id(pid: &Value) -> Result<(String, Dtype, usize), String> {
    let Value::Tuple(t) = pid else { return Err(format!("persistent id {pid:?} is not a tuple")) };
    match t.as_slice() {
        // `torch.cuda.XStorage`: a GPU tensor saved by torch < 1.13 (its bytes are the same)
        [Value::Str(kind), Value::Global { module, name }, Value::Str(key), _location, numel, rest @ ..]
            if kind == "storage" && (module == "torch" || module == "torch.cuda") =>
        {
            let dtype = Dtype::from_storage_class(name).ok_or_else(|| format!("storage type torch.{name}"))?;
            if rest.first().is_some_and(|v| *v != Value::None) {
                return Err(format!("storage {key} is a view of another storage (torch < 1.0 files are not supported)"));
            }
            let numel = numel.as_int().and_then(|n| usize::try_from(n).ok()).ok_or("bad storage size")?;
            Ok((key.clone(), dtype, numel))
        }
        _ => Err(format!("persistent id {t:?} is not a storage")),
    }
}

/// Every storage id in a value (key → dtype, element count).
fn collect_storages(v: &Value, out: &mut HashMap<String, (Dtype, usize)>) -> Result<(), String> {
    match v {
        Value::PersistentId(pid) => {
            let (key, dtype, numel) = storage_id(pid)?;
            if let Some(&(d, n)) = out.get(&key) {
                if (d, n) != (dtype, numel) {
                    return Err(format!("storage {key} is declared twice with different types or sizes"));
                }
            }
            out.insert(key, (dtype, numel));
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => items.iter().try_for_each(|i| collect_storages(i, out))?,
        Value::Dict(items) => items.iter().try_for_each(|(k, v)| collect_storages(k, out).and_then(|_| collect_storages(v, out)))?,
        Value::Object { callable, args, state } => {
            collect_storages(callable, out)?;
            collect_storages(args, out)?;
            if let Some(s) = state {
                collect_storages(s, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A parsed `torch.save` file: the saved object and where each storage's bytes are.
pub struct PthFile {
    pub object: Value,
    bytes: Vec<u8>,
    /// key → (byte offset in `bytes`, dtype, element count)
    storages: HashMap<String, (usize, Dtype, usize)>,
}

impl PthFile {
    pub fn read(path: &Path) -> Result<Self, PthError> {
        let len = std::fs::metadata(path)?.len();
        if len > MAX_FILE_BYTES {
            return Err(PthError::TooLarge(len));
        }
        Self::parse(std::fs::read(path)?)
    }

    pub fn parse(bytes: Vec<u8>) -> Result<Self, PthError> {
        if bytes.starts_with(b"PK\x03\x04") {
            Self::parse_zip(bytes)
        } else {
            Self::parse_legacy(bytes)
        }
    }

    fn parse_legacy(bytes: Vec<u8>) -> Result<Self, PthError> {
        let mut pos = 0;
        let mut next = |what: &str| -> Result<Value, PthError> {
            let (v, used) = pickle::parse(&bytes[pos..]).map_err(|e| match e {
                PickleError::Opcode { .. } | PickleError::Truncated(_) if pos == 0 => PthError::Format(format!("neither a zip nor a legacy torch file ({e})")),
                e => PthError::Format(format!("{what}: {e}")),
            })?;
            pos += used;
            Ok(v)
        };
        if next("magic number")?.as_int() != Some(LEGACY_MAGIC) {
            return Err(PthError::Format("no torch magic number".into()));
        }
        let version = next("protocol version")?;
        if version.as_int() != Some(LEGACY_PROTOCOL) {
            return Err(PthError::Format(format!("legacy protocol {version:?}, expected {LEGACY_PROTOCOL}")));
        }
        let sys_info = next("system info")?;
        if sys_info.get("little_endian") == Some(&Value::Bool(false)) {
            return Err(PthError::Format("written on a big-endian machine".into()));
        }
        let object = next("saved object")?;
        let keys = next("storage keys")?;
        let Value::List(keys) = keys else { return Err(PthError::Format("the storage key list is not a list".into())) };
        let mut declared = HashMap::new();
        collect_storages(&object, &mut declared).map_err(PthError::Format)?;
        let mut storages = HashMap::new();
        for key in &keys {
            let key = key.as_str().ok_or_else(|| PthError::Format(format!("storage key {key:?} is not a string")))?;
            let &(dtype, numel) = declared.get(key).ok_or_else(|| PthError::Format(format!("storage {key} is listed but never used")))?;
            let header = bytes.get(pos..pos + 8).ok_or_else(|| PthError::Format(format!("storage {key}: file ends early")))?;
            let count = u64::from_le_bytes(header.try_into().expect("8 bytes"));
            if count != numel as u64 {
                return Err(PthError::Format(format!("storage {key}: {count} elements in the file, {numel} in the pickle")));
            }
            let start = pos + 8;
            let end = numel.checked_mul(dtype.size()).and_then(|n| n.checked_add(start)).filter(|&e| e <= bytes.len());
            let end = end.ok_or_else(|| PthError::Format(format!("storage {key}: {numel} elements run past the end of the file")))?;
            storages.insert(key.to_string(), (start, dtype, numel));
            pos = end;
        }
        if let Some(missing) = declared.keys().find(|k| !storages.contains_key(*k)) {
            return Err(PthError::Format(format!("storage {missing} is used but not in the file")));
        }
        Ok(Self { object, bytes, storages })
    }

    fn parse_zip(bytes: Vec<u8>) -> Result<Self, PthError> {
        let zerr = |e: zip::result::ZipError| PthError::Zip(e.to_string());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).map_err(zerr)?;
        let pkl: Vec<String> = archive.file_names().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1).map(str::to_string).collect();
        let [pkl] = pkl.as_slice() else { return Err(PthError::Zip(format!("{} top-level data.pkl entries, expected one", pkl.len()))) };
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        // each entry as (offset, length) inside `bytes`: torch stores them uncompressed
        let mut locate = |name: &str| -> Result<(usize, usize), PthError> {
            let f = archive.by_name(name).map_err(|e| PthError::Zip(format!("{name}: {e}")))?;
            if f.compression() != zip::CompressionMethod::Stored {
                return Err(PthError::Zip(format!("{name} is compressed ({:?}); torch writes entries uncompressed", f.compression())));
            }
            let (start, len) = (f.data_start() as usize, f.size() as usize);
            if start.checked_add(len).is_none_or(|e| e > bytes.len()) {
                return Err(PthError::Zip(format!("{name} runs past the end of the file")));
            }
            Ok((start, len))
        };
        let (start, len) = locate(pkl)?;
        let (object, _) = pickle::parse(&bytes[start..start + len])?;
        let mut declared = HashMap::new();
        collect_storages(&object, &mut declared).map_err(PthError::Format)?;
        let mut storages = HashMap::new();
        for (key, (dtype, numel)) in declared {
            let (start, len) = locate(&format!("{prefix}data/{key}"))?;
            if numel.checked_mul(dtype.size()).is_none_or(|n| n > len) {
                return Err(PthError::Format(format!("storage {key}: {numel} elements but {len} bytes")));
            }
            storages.insert(key, (start, dtype, numel));
        }
        Ok(Self { object, bytes, storages })
    }

    /// The values of tensor `t` (named `name` in errors) as f32, row-major.
    pub fn tensor_f32(&self, name: &str, t: &TensorRef) -> Result<Vec<f32>, PthError> {
        let bad = |problem: String| PthError::Tensor { name: name.to_string(), problem };
        let &(start, dtype, numel) = self.storages.get(&t.storage).ok_or_else(|| bad(format!("storage {} is not in the file", t.storage)))?;
        if dtype != t.dtype {
            return Err(bad(format!("storage {} is {dtype:?}, the tensor says {:?}", t.storage, t.dtype)));
        }
        if t.size.len() != t.stride.len() || !t.is_contiguous() {
            return Err(bad(format!("size {:?} with stride {:?} is not a contiguous tensor", t.size, t.stride)));
        }
        let n = t.size.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(format!("size {:?} overflows", t.size)))?;
        if t.offset.checked_add(n).is_none_or(|e| e > numel) {
            return Err(bad(format!("{n} values from offset {} run past its storage of {numel}", t.offset)));
        }
        let at = start + t.offset * dtype.size();
        let raw = &self.bytes[at..at + n * dtype.size()];
        match dtype {
            Dtype::F32 => Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()),
            Dtype::F64 => Ok(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()),
            other => Err(bad(format!("{other:?} values, expected float32 (or float64)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pickle bytes of one value, protocol 2, from a few opcodes.
    struct P(Vec<u8>);

    impl P {
        fn new() -> Self {
            P(vec![0x80, 2])
        }
        fn op(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn s(mut self, text: &str) -> Self {
            self.0.push(b'X');
            self.0.extend((text.len() as u32).to_le_bytes());
            self.0.extend(text.as_bytes());
            self
        }
        fn global(self, module: &str, name: &str) -> Self {
            self.op(format!("c{module}\n{name}\n").as_bytes())
        }
        fn int(self, v: u8) -> Self {
            self.op(&[b'K', v])
        }
        fn end(self) -> Vec<u8> {
            self.op(b".").0
        }
    }

    /// `{'model_state': {'w': tensor of `values` [2, 2]}}` in the legacy
    /// format, its storage of class `module.FloatStorage`.
    fn legacy_file(module: &str, values: &[f32; 4], declared_numel: u64) -> Vec<u8> {
        let mut f = P::new().op(&[0x8a, 10]).op(&0x1950a86a20f9469cfc6cu128.to_le_bytes()[..10]).end();
        f.extend(P::new().op(&[b'M']).op(&1001u16.to_le_bytes()).end());
        f.extend(P::new().op(b"}").s("little_endian").op(&[0x88, b's']).end());
        let tensor = P::new()
            .op(b"}")
            .s("model_state")
            .op(b"}")
            .s("w")
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"(")
            .op(b"(")
            .s("storage")
            .global(module, "FloatStorage")
            .s("94011")
            .s("cuda:0")
            .int(4)
            .op(b"tQ")
            .int(0)
            .int(2)
            .int(2)
            .op(&[0x86])
            .int(2)
            .int(1)
            .op(&[0x86, 0x89])
            .global("collections", "OrderedDict")
            .op(b")R")
            .op(b"tR")
            .op(b"ss")
            .end();
        f.extend(tensor);
        f.extend(P::new().op(b"]").s("94011").op(b"a").end());
        f.extend(declared_numel.to_le_bytes());
        for v in values {
            f.extend(v.to_le_bytes());
        }
        f
    }

    #[test]
    fn a_legacy_file_with_a_gpu_storage_reads_back() {
        let values = [1.0f32, -2.0, 3.5, 4.25];
        for module in ["torch", "torch.cuda"] {
            let file = PthFile::parse(legacy_file(module, &values, 4)).unwrap();
            let w = file.object.get("model_state").and_then(|m| m.get("w")).unwrap();
            let t = TensorRef::from_value(w).unwrap().unwrap();
            assert_eq!((t.size.clone(), t.stride.clone(), t.dtype), (vec![2, 2], vec![2, 1], Dtype::F32));
            assert_eq!(file.tensor_f32("w", &t).unwrap(), values);
        }
    }

    #[test]
    fn broken_legacy_files_are_errors() {
        let values = [0.0f32; 4];
        // the element count in the file disagrees with the pickle
        let err = PthFile::parse(legacy_file("torch", &values, 5)).err().unwrap().to_string();
        assert!(err.contains("5 elements in the file, 4 in the pickle"), "{err}");
        // cut inside the storage
        let mut cut = legacy_file("torch", &values, 4);
        cut.truncate(cut.len() - 3);
        assert!(PthFile::parse(cut).err().unwrap().to_string().contains("past the end of the file"));
        // an unknown storage class
        let err = PthFile::parse(legacy_file("numpy", &values, 4)).err().unwrap().to_string();
        assert!(err.contains("is not a storage"), "{err}");
        // a tensor reaching past its storage
        let file = PthFile::parse(legacy_file("torch", &values, 4)).unwrap();
        let t = TensorRef { storage: "94011".into(), dtype: Dtype::F32, offset: 1, size: vec![2, 2], stride: vec![2, 1] };
        assert!(file.tensor_f32("w", &t).unwrap_err().to_string().contains("run past its storage of 4"));
        let t = TensorRef { offset: 0, stride: vec![1, 2], ..t };
        assert!(file.tensor_f32("w", &t).unwrap_err().to_string().contains("not a contiguous tensor"));
        assert!(matches!(PthFile::parse(b"hello".to_vec()), Err(PthError::Format(_))));
    }
}
