//! The ground-truth database of ground-truth sampling (OpenPCDet's
//! `create_groundtruth_database` for its `gt_sampling` augmentation): every
//! labelled object of the model's classes in the training frames, with the
//! LiDAR points inside its box.
//!
//! * Points are those of the whole cloud (not cut to the camera's view, as
//!   OpenPCDet's database), inside the 3D box ([`Box3D::contains`]), stored
//!   as x, y, z relative to the box centre and the intensity.
//! * Every object is kept, with its point count and KITTI difficulty; the
//!   sampler filters (min points, unknown difficulty) when it loads, so a
//!   change of filter needs no rebuild.
//! * Cached in a folder as `<key>.json` (the objects) and `<key>.bin` (their
//!   points, f32 little-endian), where the key hashes the dataset's root,
//!   the frame ids, the size and modification time of each frame's
//!   velodyne, label and calibration files and the classes
//!   ([`cache_key`]): changed data gets a new database.

use crate::dataset::kitti::{Difficulty, KittiDataset, KittiError};
use crate::geometry::Box3D;
use crate::train::data::{parse_classes, DataError};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when the stored layout or what goes into it changes.
pub const FORMAT_VERSION: u32 = 1;
/// Floats per stored point: x, y, z (relative to the box centre), intensity.
pub const POINT_FLOATS: usize = 4;

/// One object of the database.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GtObject {
    /// Index into the database's classes (the model's).
    pub class: usize,
    /// Frame it was cut from and its line in that frame's label file.
    pub frame: String,
    pub label_index: usize,
    /// LiDAR-frame box: centre, size [l, w, h], yaw.
    pub center: [f64; 3],
    pub size: [f64; 3],
    pub yaw: f64,
    /// KITTI difficulty 0 easy, 1 moderate, 2 hard, -1 none of them
    /// (OpenPCDet's `difficulty`, which `filter_by_difficulty: [-1]` drops).
    pub difficulty: i8,
    pub num_points: usize,
    /// First point in the database's point array.
    pub offset: usize,
}

impl GtObject {
    pub fn bbox(&self) -> Box3D {
        Box3D { center: self.center, size: self.size, yaw: self.yaw }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Header {
    version: u32,
    key: String,
    classes: Vec<String>,
    frames: usize,
    objects: Vec<GtObject>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GtDatabase {
    pub classes: Vec<String>,
    /// Training frames it was built from.
    pub frames: usize,
    pub objects: Vec<GtObject>,
    /// [`POINT_FLOATS`] floats per point, the objects' points one after the other.
    points: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum GtDatabaseError {
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GtDatabaseError + '_ {
    move |source| GtDatabaseError::Io { path: path.to_path_buf(), source }
}

fn difficulty_code(d: Option<Difficulty>) -> i8 {
    match d {
        Some(Difficulty::Easy) => 0,
        Some(Difficulty::Moderate) => 1,
        Some(Difficulty::Hard) => 2,
        None => -1,
    }
}

impl GtDatabase {
    /// Cuts the objects of `class_names` out of frames `ids` of `dataset`
    /// (frames in parallel, objects in frame then label order).
    pub fn build(dataset: &KittiDataset, ids: &[String], class_names: &[String]) -> Result<Self, GtDatabaseError> {
        let classes = parse_classes(class_names)?;
        let per_frame = ids
            .par_iter()
            .map(|id| -> Result<Vec<(GtObject, Vec<f32>)>, GtDatabaseError> {
                let frame = dataset.frame(id)?;
                let mut out = Vec::new();
                for (label_index, l) in frame.labels.iter().enumerate() {
                    let Some(class) = classes.iter().position(|c| *c == l.class) else { continue };
                    let b = l.to_lidar_box(&frame.calib);
                    let p = &frame.points;
                    let mut pts = Vec::new();
                    for i in 0..p.len() {
                        if b.contains([p.x[i] as f64, p.y[i] as f64, p.z[i] as f64]) {
                            pts.extend([
                                (p.x[i] as f64 - b.center[0]) as f32,
                                (p.y[i] as f64 - b.center[1]) as f32,
                                (p.z[i] as f64 - b.center[2]) as f32,
                                p.intensity[i],
                            ]);
                        }
                    }
                    let object = GtObject {
                        class,
                        frame: id.clone(),
                        label_index,
                        center: b.center,
                        size: b.size,
                        yaw: b.yaw,
                        difficulty: difficulty_code(l.difficulty()),
                        num_points: pts.len() / POINT_FLOATS,
                        offset: 0,
                    };
                    out.push((object, pts));
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut db = Self { classes: class_names.to_vec(), frames: ids.len(), objects: Vec::new(), points: Vec::new() };
        for (mut object, pts) in per_frame.into_iter().flatten() {
            object.offset = db.points.len() / POINT_FLOATS;
            db.points.extend(pts);
            db.objects.push(object);
        }
        Ok(db)
    }

    /// The stored points of object `i` ([`POINT_FLOATS`] floats each, x y z relative to its box centre).
    pub fn object_points(&self, i: usize) -> &[f32] {
        let o = &self.objects[i];
        &self.points[o.offset * POINT_FLOATS..(o.offset + o.num_points) * POINT_FLOATS]
    }

    /// Objects per class, in the order of [`classes`](Self::classes).
    pub fn counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.classes.len()];
        for o in &self.objects {
            n[o.class] += 1;
        }
        n
    }

    /// Writes `dir/<key>.bin`, then `dir/<key>.json` (whose presence marks a complete database).
    pub fn save(&self, dir: &Path, key: &str) -> Result<(), GtDatabaseError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (bin, json) = paths(dir, key);
        let bytes: Vec<u8> = self.points.iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::atomic_file::write(&bin, &bytes).map_err(io(&bin))?;
        let header = Header { version: FORMAT_VERSION, key: key.to_owned(), classes: self.classes.clone(), frames: self.frames, objects: self.objects.clone() };
        let text = serde_json::to_vec(&header).map_err(|e| GtDatabaseError::Corrupt { path: json.clone(), message: e.to_string() })?;
        crate::atomic_file::write(&json, &text).map_err(io(&json))
    }

    /// Reads the database saved under `key` in `dir`; `Ok(None)` when there is none.
    pub fn load(dir: &Path, key: &str) -> Result<Option<Self>, GtDatabaseError> {
        let (bin, json) = paths(dir, key);
        if !json.is_file() {
            return Ok(None);
        }
        let corrupt = |path: &Path, message: String| GtDatabaseError::Corrupt { path: path.to_path_buf(), message };
        let text = std::fs::read(&json).map_err(io(&json))?;
        let header: Header = serde_json::from_slice(&text).map_err(|e| corrupt(&json, e.to_string()))?;
        if header.version != FORMAT_VERSION || header.key != key {
            return Err(corrupt(&json, format!("version {} key {} (expected {FORMAT_VERSION}, {key})", header.version, header.key)));
        }
        let bytes = std::fs::read(&bin).map_err(io(&bin))?;
        if bytes.len() % (4 * POINT_FLOATS) != 0 {
            return Err(corrupt(&bin, format!("{} bytes is not a whole number of points", bytes.len())));
        }
        let points: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let n_points = points.len() / POINT_FLOATS;
        for o in &header.objects {
            if o.class >= header.classes.len() || o.offset.checked_add(o.num_points).is_none_or(|end| end > n_points) {
                return Err(corrupt(&json, format!("object {}/{} outside the classes or the {n_points} points", o.frame, o.label_index)));
            }
        }
        Ok(Some(Self { classes: header.classes, frames: header.frames, objects: header.objects, points }))
    }

    /// The database of frames `ids` cached in `dir` under their [`cache_key`],
    /// built and saved first when absent (and then read back); also says
    /// where it is and whether it was built.
    pub fn open_or_build(dir: &Path, dataset: &KittiDataset, ids: &[String], class_names: &[String]) -> Result<(Self, PathBuf, bool), GtDatabaseError> {
        let key = cache_key(dataset, ids, class_names)?;
        let json = paths(dir, &key).1;
        if let Some(db) = Self::load(dir, &key)? {
            return Ok((db, json, false));
        }
        Self::build(dataset, ids, class_names)?.save(dir, &key)?;
        // used as read back: JSON parsing may round a box's f64 by an ulp,
        // and a run resumed from the cache must see the boxes the first one saw
        let db = Self::load(dir, &key)?.ok_or_else(|| GtDatabaseError::Corrupt { path: json.clone(), message: "missing after saving".into() })?;
        Ok((db, json, true))
    }
}

fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{key}.bin")), dir.join(format!("{key}.json")))
}

/// What identifies the data a database is built from (see the module docs):
/// 16 hex digits of a SHA-256.
pub fn cache_key(dataset: &KittiDataset, ids: &[String], class_names: &[String]) -> Result<String, GtDatabaseError> {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    let root = std::fs::canonicalize(dataset.root()).map_err(io(dataset.root()))?;
    h.update(root.to_string_lossy().as_bytes());
    h.update([0]);
    for c in class_names {
        h.update(c.as_bytes());
        h.update([0]);
    }
    let split = dataset.root().join(dataset.split().dir_name());
    for id in ids {
        h.update(id.as_bytes());
        h.update([0]);
        for (folder, ext) in [("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt")] {
            let path = split.join(folder).join(format!("{id}.{ext}"));
            let meta = std::fs::metadata(&path).map_err(io(&path))?;
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            h.update(meta.len().to_le_bytes());
            h.update(mtime.to_le_bytes());
        }
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// Where a run keeps its databases: the config's folder when set, else
/// `$ELOSS_CACHE/gt_database`, else `<run>/gt_database`.
pub fn cache_dir(configured: &str, run_dir: &Path) -> PathBuf {
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    match std::env::var_os("ELOSS_CACHE") {
        Some(c) if !c.is_empty() => PathBuf::from(c).join("gt_database"),
        _ => run_dir.join("gt_database"),
    }
}

#[cfg(test)]
#[path = "gt_database_tests.rs"]
pub(crate) mod tests;
