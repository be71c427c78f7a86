//! KITTI object-detection data on disk: calibration files ([`Calibration`]),
//! `label_2` lines ([`ObjectLabel`]), image footprints of 3D boxes
//! ([`project_box_to_image`]), and the benchmark's folder layout, read by
//! [`KittiDataset`] and written by [`KittiWriter`]. The same code reads real
//! KITTI data and writes the simulator's, so the two are interchangeable.
//!
//! Layout (KITTI's, with the `ImageSets` split files of OpenPCDet and
//! mmdetection3d):
//!
//! ```text
//! ROOT/ImageSets/{train,val,trainval,test}.txt  one frame id a line
//! ROOT/training/velodyne/000000.bin              f32 x, y, z, reflectance
//! ROOT/training/calib/000000.txt                 see calib
//! ROOT/training/label_2/000000.txt               see label
//! ROOT/training/image_2/000000.png               left colour camera
//! ROOT/testing/{velodyne,calib,image_2}/...      no label_2
//! ```
//!
//! Frame ids are decimal digits, six and zero-padded as written here
//! ([`frame_id`]). `planes/` (road planes) is ignored.
//!
//! Frames: LiDAR as in [`crate::geometry`]; "camera" means KITTI's rectified
//! camera-0 frame, x right, y down, z forward (see [`calib`]).

pub mod calib;
pub mod fov;
pub mod info_json;
pub mod label;
pub mod project;
#[cfg(test)]
mod tests;

pub use calib::{Calibration, KITTI_IMAGE_HEIGHT, KITTI_IMAGE_WIDTH, KITTI_LIDAR_HEIGHT_M};
pub use label::{
    format_labels, observation_angle, parse_labels, read_labels, rotation_y_to_yaw, write_labels, yaw_to_rotation_y,
    Difficulty, DifficultyRule, ObjectClass, ObjectLabel, DIFFICULTY_RULES,
};
pub use project::{project_box_to_image, ProjectedBox, NEAR_PLANE_M};

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cloud::{kitti_bin, CloudError, Points};

/// A problem in the text of a KITTI file, with its 1-based line when it
/// belongs to one (a missing calibration entry belongs to none).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(line: usize, message: String) -> Self {
        Self { line: Some(line), message }
    }

    pub(crate) fn whole_file(message: String) -> Self {
        Self { line: None, message }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why KITTI data could not be read or written; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum KittiError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: ParseError },
    #[error("{}: {source}", path.display())]
    Cloud { path: PathBuf, source: CloudError },
    #[error("invalid KITTI frame id `{id}` (expected decimal digits such as 000008)")]
    InvalidId { id: String },
}

/// Which half of the benchmark: `training/` has labels, `testing/` none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Training,
    Testing,
}

impl Split {
    /// The folder under the dataset root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::Testing => "testing",
        }
    }
}

/// The id lists in `ImageSets/`. Train, Val and TrainVal index `training/`,
/// Test indexes `testing/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSet {
    Train,
    Val,
    TrainVal,
    Test,
}

impl ImageSet {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Train => "train.txt",
            Self::Val => "val.txt",
            Self::TrainVal => "trainval.txt",
            Self::Test => "test.txt",
        }
    }

    pub fn split(self) -> Split {
        if self == Self::Test {
            Split::Testing
        } else {
            Split::Training
        }
    }
}

/// The six-digit id of frame `index` (`8` → `000008`; larger numbers get more digits).
pub fn frame_id(index: u64) -> String {
    format!("{index:06}")
}

/// One frame of a KITTI dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct KittiFrame {
    pub id: String,
    pub points: Points,
    pub calib: Calibration,
    /// Empty for testing frames without a label file.
    pub labels: Vec<ObjectLabel>,
    /// `image_2/<id>.png` when that file exists.
    pub image_path: Option<PathBuf>,
}

/// A KITTI object folder opened for reading one split.
#[derive(Debug, Clone)]
pub struct KittiDataset {
    root: PathBuf,
    split: Split,
    ids: Vec<String>,
}

impl KittiDataset {
    /// Opens `root` for `split`. The frames are, first found:
    /// * Training: `ImageSets/trainval.txt`; else `train.txt` then `val.txt`
    ///   (either may be missing); else every `training/velodyne/*.bin`;
    /// * Testing: `ImageSets/test.txt`; else every `testing/velodyne/*.bin`.
    ///
    /// Listing a velodyne folder takes the files named digits + `.bin`, in
    /// ascending id order, and ignores the rest. Split files are read as
    /// they are: ids they list need not exist until [`frame`](Self::frame).
    pub fn open(root: impl AsRef<Path>, split: Split) -> Result<Self, KittiError> {
        let root = root.as_ref().to_owned();
        let listed = |set: ImageSet| {
            let path = root.join("ImageSets").join(set.file_name());
            path.is_file().then_some(path)
        };
        let lists: Vec<PathBuf> = match split {
            Split::Training => match listed(ImageSet::TrainVal) {
                Some(path) => vec![path],
                None => [ImageSet::Train, ImageSet::Val].into_iter().filter_map(listed).collect(),
            },
            Split::Testing => listed(ImageSet::Test).into_iter().collect(),
        };
        let ids = if lists.is_empty() {
            list_velodyne(&root.join(split.dir_name()).join("velodyne"))?
        } else {
            // train + val without repeating an id listed in both.
            let mut seen = std::collections::HashSet::new();
            let mut ids = Vec::new();
            for path in &lists {
                ids.extend(read_id_list(path)?.into_iter().filter(|id| seen.insert(id.clone())));
            }
            ids
        };
        Ok(Self { root, split, ids })
    }

    /// Opens the frames of one `ImageSets` file (which must exist).
    pub fn open_image_set(root: impl AsRef<Path>, set: ImageSet) -> Result<Self, KittiError> {
        let root = root.as_ref().to_owned();
        let ids = read_id_list(&root.join("ImageSets").join(set.file_name()))?;
        Ok(Self { root, split: set.split(), ids })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn split(&self) -> Split {
        self.split
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// `ROOT/<split>/<folder>/<id>.<ext>`, after checking the id.
    fn path(&self, folder: &str, id: &str, ext: &str) -> Result<PathBuf, KittiError> {
        frame_path(&self.root, self.split, folder, id, ext)
    }

    /// The frame's cloud from `velodyne/<id>.bin`.
    pub fn points(&self, id: &str) -> Result<Points, KittiError> {
        read_points(&self.path("velodyne", id, "bin")?)
    }

    /// The frame's calibration from `calib/<id>.txt`.
    pub fn calib(&self, id: &str) -> Result<Calibration, KittiError> {
        Calibration::read(self.path("calib", id, "txt")?)
    }

    /// The frame's labels from `label_2/<id>.txt`: required for training
    /// frames; a testing frame without one has no labels.
    pub fn labels(&self, id: &str) -> Result<Vec<ObjectLabel>, KittiError> {
        let path = self.path("label_2", id, "txt")?;
        if self.split == Split::Testing && !path.exists() {
            return Ok(Vec::new());
        }
        read_labels(path)
    }

    /// Everything of frame `id` (it need not be in [`ids`](Self::ids)).
    pub fn frame(&self, id: &str) -> Result<KittiFrame, KittiError> {
        let image = self.path("image_2", id, "png")?;
        Ok(KittiFrame {
            id: id.to_owned(),
            points: self.points(id)?,
            calib: self.calib(id)?,
            labels: self.labels(id)?,
            image_path: image.is_file().then_some(image),
        })
    }
}

/// Writes a KITTI object folder (see the module docs for the layout).
#[derive(Debug, Clone)]
pub struct KittiWriter {
    root: PathBuf,
    split: Split,
}

impl KittiWriter {
    /// Creates `ROOT/ImageSets` and `ROOT/<split>/{velodyne,calib,image_2}`
    /// (plus `label_2` for training) as needed; existing files are kept.
    pub fn create(root: impl AsRef<Path>, split: Split) -> Result<Self, KittiError> {
        let root = root.as_ref().to_owned();
        let split_dir = root.join(split.dir_name());
        let mut dirs = vec![
            root.join("ImageSets"),
            split_dir.join("velodyne"),
            split_dir.join("calib"),
            split_dir.join("image_2"),
        ];
        if split == Split::Training {
            dirs.push(split_dir.join("label_2"));
        }
        for d in dirs {
            create_dir(&d)?;
        }
        Ok(Self { root, split })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn split(&self) -> Split {
        self.split
    }

    /// Where frame `id`'s left colour image belongs (`image_2/<id>.png`); the
    /// caller encodes and writes the PNG there.
    pub fn image_path(&self, id: &str) -> Result<PathBuf, KittiError> {
        frame_path(&self.root, self.split, "image_2", id, "png")
    }

    pub fn write_points(&self, id: &str, points: &Points) -> Result<(), KittiError> {
        let path = frame_path(&self.root, self.split, "velodyne", id, "bin")?;
        std::fs::write(&path, kitti_bin::to_bytes(points)).map_err(|source| KittiError::Io { path, source })
    }

    pub fn write_calib(&self, id: &str, calib: &Calibration) -> Result<(), KittiError> {
        calib.write(frame_path(&self.root, self.split, "calib", id, "txt")?)
    }

    /// Writes `label_2/<id>.txt` (created for the testing split too, if asked).
    pub fn write_labels(&self, id: &str, labels: &[ObjectLabel]) -> Result<(), KittiError> {
        let path = frame_path(&self.root, self.split, "label_2", id, "txt")?;
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        write_labels(path, labels)
    }

    /// Cloud, calibration and labels of one frame. Training frames always get
    /// a label file (an empty one is valid KITTI: a frame without objects);
    /// testing frames only when `labels` is not empty.
    pub fn write_frame(
        &self,
        id: &str,
        points: &Points,
        calib: &Calibration,
        labels: &[ObjectLabel],
    ) -> Result<(), KittiError> {
        self.write_points(id, points)?;
        self.write_calib(id, calib)?;
        if self.split == Split::Training || !labels.is_empty() {
            self.write_labels(id, labels)?;
        }
        Ok(())
    }

    /// Writes `ImageSets/<set>.txt`, one id a line, replacing any old list.
    pub fn write_image_set(&self, set: ImageSet, ids: &[String]) -> Result<(), KittiError> {
        let mut text = String::new();
        for id in ids {
            check_id(id)?;
            text.push_str(id);
            text.push('\n');
        }
        let path = self.root.join("ImageSets").join(set.file_name());
        std::fs::write(&path, text).map_err(|source| KittiError::Io { path, source })
    }
}

/// Frame ids become file names, so only digits are accepted: no separators,
/// no `..`, nothing a shell or another tool would read differently.
fn check_id(id: &str) -> Result<(), KittiError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(KittiError::InvalidId { id: id.to_owned() })
    }
}

fn frame_path(root: &Path, split: Split, folder: &str, id: &str, ext: &str) -> Result<PathBuf, KittiError> {
    check_id(id)?;
    Ok(root.join(split.dir_name()).join(folder).join(format!("{id}.{ext}")))
}

fn create_dir(dir: &Path) -> Result<(), KittiError> {
    std::fs::create_dir_all(dir).map_err(|source| KittiError::Io { path: dir.to_owned(), source })
}

fn read_points(path: &Path) -> Result<Points, KittiError> {
    let bytes = std::fs::read(path).map_err(|source| KittiError::Io { path: path.to_owned(), source })?;
    kitti_bin::from_bytes(&bytes).map_err(|source| KittiError::Cloud { path: path.to_owned(), source })
}

/// An `ImageSets` file: one id a line, blank lines skipped.
fn read_id_list(path: &Path) -> Result<Vec<String>, KittiError> {
    let text = std::fs::read_to_string(path).map_err(|source| KittiError::Io { path: path.to_owned(), source })?;
    let mut ids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        if check_id(id).is_err() {
            let source = ParseError::at(i + 1, format!("`{id}` is not a frame id (decimal digits such as 000008)"));
            return Err(KittiError::Parse { path: path.to_owned(), source });
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// The ids of the `<digits>.bin` files in `dir`, in ascending order.
fn list_velodyne(dir: &Path) -> Result<Vec<String>, KittiError> {
    let io = |source| KittiError::Io { path: dir.to_owned(), source };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".bin")) {
            if check_id(id).is_ok() {
                ids.push(id.to_owned());
            }
        }
    }
    // By value, so that ids of unequal width (1000000 after 999999) stay in
    // order: compare without leading zeros, shorter first.
    let key = |id: &String| {
        let digits = id.trim_start_matches('0');
        (digits.len(), digits.to_owned(), id.clone())
    };
    ids.sort_by_key(key);
    Ok(ids)
}

/// The numbers of a calibration entry, all finite.
pub(crate) fn parse_numbers(text: &str, what: &str) -> Result<Vec<f64>, String> {
    text.split_whitespace().map(|t| parse_number(t, what)).collect()
}

/// One finite number; the message names the field and the text found.
pub(crate) fn parse_number(token: &str, what: &str) -> Result<f64, String> {
    match token.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{what}: `{token}` is not a finite number")),
        Err(_) => Err(format!("{what}: `{token}` is not a number")),
    }
}
