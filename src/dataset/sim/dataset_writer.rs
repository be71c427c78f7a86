//! `eloss simulate`: simulated KITTI object folders and rosbag2 drives.
//!
//! Dataset (`--out DIR`): frame `i` of a run is an independent scene with
//! seed `seed + id`, where `id` is its frame number in the folder. Appending
//! to an existing folder continues after the largest id already in
//! `training/velodyne`, so runs with the same seed add new scenes. Per frame:
//! * `training/velodyne/<id>.bin`: the HDL-64E (or VLP-32) sweep with any
//!   LiDAR anomaly applied, cropped to KITTI's image window
//!   ([`KITTI_IMAGE_WINDOW_DEG`]) as KITTI's object clouds are;
//! * `training/image_2/<id>.png`: the camera image ([`CameraModel::kitti`]),
//!   with any camera anomaly applied;
//! * `training/calib/<id>.txt`: [`Calibration::kitti_like_default`];
//! * `training/label_2/<id>.txt`: [`frame_labels`] from the *clean* scan and
//!   image (ground truth does not change with a fault);
//! * `ImageSets/{train,val}.txt`: the new ids are appended to the chosen
//!   split's list, existing lists kept; `trainval.txt` is rewritten as their
//!   union;
//! * `anomalies.json`: `{ "<id>": { "seed", "split", "lidar", "camera" } }`
//!   for every frame (null when clean), merged with the file already there;
//! * `sensors.json`: `{ "<id>": SensorDraw }`, the LiDAR each frame was
//!   scanned with (beams, field of view, mounting height, intensity gain,
//!   dropout), merged likewise. With `sensor_variation` these are drawn per
//!   frame ([`SensorVariation`], sim-to-real); the camera moves with the
//!   LiDAR, so the calibration file stays the same.
//!
//! A frame is anomalous with probability `anomaly_fraction` (drawn from the
//! frame's seed); it then gets one anomaly picked uniformly from the list,
//! at that entry's severity.
//!
//! Drive (`--bag FILE`): one scene with ego motion and moving objects
//! ([`DriveConfig`]), `frames` frames at `hz`, written as rosbag2 MCAP with
//! `/sim/points` (PointCloud2, full 360° sweep, sensor frame `velodyne`),
//! `/sim/image` (rgb8), `/sim/camera_info` and `/sim/ground_truth`
//! (std_msgs/String holding JSON: time, ego pose, objects with LiDAR-frame
//! boxes, KITTI label lines and the anomalies applied).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::anomalies::{Anomaly, AnomalyKind, AnomalyTag, Severity};
use super::camera::CameraModel;
use super::camera_anomalies::{self, CameraAnomalyKind, CameraAnomalyTag};
use super::labels::{frame_labels, LabelRules, SimLabel};
use super::lidar::{Lidar, LidarConfig, KITTI_IMAGE_WINDOW_DEG};
use super::scene::{DriveConfig, Scene, SceneConfig, Snapshot};
use super::sensor_variation::{SensorDraw, SensorVariation};
use super::{Rng, SimError};
use crate::bag::kitti_drive::camera_info_from_p2;
use crate::bag::{BagError, BagWriter, Header, Image, PointCloud2, StdString, Time};
use crate::cloud::Points;
use crate::dataset::kitti::{frame_id, ImageSet, KittiError, KittiWriter, ObjectLabel, Split};

pub const TOPIC_POINTS: &str = "/sim/points";
pub const TOPIC_IMAGE: &str = "/sim/image";
pub const TOPIC_CAMERA_INFO: &str = "/sim/camera_info";
pub const TOPIC_GROUND_TRUTH: &str = "/sim/ground_truth";
/// First stamp of a drive (2023-11-14T22:13:20Z), as in [`crate::bag::kitti_drive`].
const START_NS: i64 = 1_700_000_000_000_000_000;

/// Why `simulate` failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: ::image::ImageError },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("nothing to write: give an output folder, a bag, or both")]
    NoOutput,
}

/// Which `ImageSets` list the new frames join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimSplit {
    Train,
    Val,
}

impl FromStr for SimSplit {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "train" => Ok(Self::Train),
            "val" => Ok(Self::Val),
            other => Err(SimError::InvalidConfig { what: "split", why: format!("`{other}` (expected train or val)") }),
        }
    }
}

/// The LiDAR presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LidarPreset {
    Hdl64e,
    Vlp32,
}

impl LidarPreset {
    pub fn config(self) -> LidarConfig {
        match self {
            Self::Hdl64e => LidarConfig::hdl64e(),
            Self::Vlp32 => LidarConfig::vlp32(),
        }
    }
}

impl FromStr for LidarPreset {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "hdl64e" => Ok(Self::Hdl64e),
            "vlp32" => Ok(Self::Vlp32),
            other => Err(SimError::InvalidConfig { what: "preset", why: format!("`{other}` (expected hdl64e or vlp32)") }),
        }
    }
}

/// One entry of `--anomalies`: a LiDAR or camera anomaly with its severity.
#[derive(Debug, Clone, PartialEq)]
pub enum AnomalySpec {
    Lidar(Anomaly, Severity),
    Camera(CameraAnomalyKind, Severity),
}

/// Parses `kind:severity[,kind:severity…]`, severity `low`, `medium`,
/// `high` or a number in [0, 1]; a kind without `:severity` gets medium.
/// LiDAR kinds are [`AnomalyKind`]'s snake_case names except `stale_frame`
/// (it needs a sequence of frames); camera kinds are `blur`, `glare`,
/// `lens_occlusion`.
pub fn parse_anomaly_list(text: &str) -> Result<Vec<AnomalySpec>, SimError> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, sev) = match item.split_once(':') {
            Some((n, s)) => (n.trim(), s.trim().parse::<Severity>()?),
            None => (item, Severity::MEDIUM),
        };
        if let Some(kind) = CameraAnomalyKind::from_name(name) {
            out.push(AnomalySpec::Camera(kind, sev));
            continue;
        }
        let kind: AnomalyKind = serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
            SimError::InvalidConfig { what: "anomaly", why: format!("unknown kind `{name}`") }
        })?;
        if kind == AnomalyKind::StaleFrame {
            return Err(SimError::NeedsSequence("stale_frame"));
        }
        out.push(AnomalySpec::Lidar(Anomaly::default_for(kind), sev));
    }
    Ok(out)
}

/// Where the drive goes and at what rate.
#[derive(Debug, Clone, PartialEq)]
pub struct BagOptions {
    pub path: PathBuf,
    pub hz: f64,
}

/// Everything `simulate` needs.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub frames: usize,
    pub split: SimSplit,
    /// The KITTI object folder to write or extend (`None`: bag only).
    pub out: Option<PathBuf>,
    pub seed: u64,
    pub anomalies: Vec<AnomalySpec>,
    /// Fraction of frames that get an anomaly (0..1).
    pub anomaly_fraction: f64,
    pub preset: LidarPreset,
    /// The preset's reflectance model unless set.
    pub intensity_model: Option<super::lidar::IntensityModel>,
    /// Per-frame sensor randomisation of the dataset's frames (not the drive's).
    pub sensor_variation: SensorVariation,
    pub scene: SceneConfig,
    pub bag: Option<BagOptions>,
}

impl SimulateOptions {
    pub fn new(frames: usize, out: impl Into<PathBuf>) -> Self {
        Self {
            frames,
            split: SimSplit::Train,
            out: Some(out.into()),
            seed: 0,
            anomalies: Vec::new(),
            anomaly_fraction: 0.0,
            preset: LidarPreset::Hdl64e,
            intensity_model: None,
            sensor_variation: SensorVariation::none(),
            scene: SceneConfig::default(),
            bag: None,
        }
    }

    fn validate(&self) -> Result<(), SimulateError> {
        let bad = |what, why: String| Err(SimError::InvalidConfig { what, why }.into());
        if self.frames == 0 || self.frames > 1_000_000 {
            return bad("frames", format!("{} not in 1..=1000000", self.frames));
        }
        if !(0.0..=1.0).contains(&self.anomaly_fraction) {
            return bad("anomaly_fraction", format!("{} not in [0, 1]", self.anomaly_fraction));
        }
        if let Some(b) = &self.bag {
            if !(b.hz.is_finite() && b.hz > 0.0 && b.hz <= 1000.0) {
                return bad("hz", format!("{} not in (0, 1000]", b.hz));
            }
        }
        if self.out.is_none() && self.bag.is_none() {
            return Err(SimulateError::NoOutput);
        }
        self.scene.validate()?;
        self.sensor_variation.validate()?;
        Ok(())
    }
}

/// Progress callbacks: which stage, frames done, frames in the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Dataset,
    Bag,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateReport {
    pub frames: usize,
    /// Ids written to the dataset (empty without `out`).
    pub ids: Vec<String>,
    pub labels: usize,
    pub dont_care: usize,
    pub anomalous_frames: usize,
    pub bag_messages: u64,
    pub seconds: f64,
    pub frames_per_s: f64,
}

/// The anomalies applied to one frame (an `anomalies.json` entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameAnomalies {
    pub seed: u64,
    pub split: SimSplit,
    pub lidar: Option<AnomalyTag>,
    pub camera: Option<CameraAnomalyTag>,
}

/// One simulated frame before it is written.
pub struct SimFrame {
    pub scene: Scene,
    pub snapshot: Snapshot,
    /// The full sweep after any LiDAR anomaly (sensor frame).
    pub points: Points,
    pub image: ::image::RgbImage,
    pub labels: Vec<SimLabel>,
    pub lidar_anomaly: Option<AnomalyTag>,
    pub camera_anomaly: Option<CameraAnomalyTag>,
}

/// Simulates one frame of `scene` at `snapshot`: scan, render, label, and
/// the anomaly (if any) drawn for `seed`.
pub fn simulate_frame(
    lidar: &Lidar,
    camera: &CameraModel,
    scene: Scene,
    snapshot: Snapshot,
    seed: u64,
    anomalies: &[AnomalySpec],
    anomaly_fraction: f64,
) -> Result<SimFrame, SimError> {
    let scan = lidar.scan(&scene, &snapshot, seed);
    let rendered = camera.render(&scene, &snapshot);
    let labels = frame_labels(camera, &snapshot, &scan, &rendered, &LabelRules::default());
    let mut points = scan.points;
    let mut image = rendered.image;
    let (mut lidar_anomaly, mut camera_anomaly) = (None, None);
    let mut rng = Rng::stream(seed, 0x5E1EC7);
    if !anomalies.is_empty() && rng.chance(anomaly_fraction) {
        match &anomalies[rng.below(anomalies.len())] {
            AnomalySpec::Lidar(a, s) => lidar_anomaly = Some(a.apply(&mut points, *s, seed)?.tag),
            AnomalySpec::Camera(k, s) => camera_anomaly = Some(camera_anomalies::apply(*k, &mut image, *s, seed)),
        }
    }
    Ok(SimFrame { scene, snapshot, points, image, labels, lidar_anomaly, camera_anomaly })
}

/// Runs `simulate`; `progress(stage, done, total)` after every frame.
pub fn simulate(opts: &SimulateOptions, progress: impl Fn(Stage, usize, usize)) -> Result<SimulateReport, SimulateError> {
    opts.validate()?;
    let started = Instant::now();
    let mut config = opts.preset.config();
    config.intensity_model = opts.intensity_model.unwrap_or(config.intensity_model);
    let lidar = Lidar::new(config)?;
    let camera = CameraModel::new(
        crate::dataset::kitti::Calibration::kitti_like_default(),
        crate::dataset::kitti::KITTI_IMAGE_WIDTH,
        crate::dataset::kitti::KITTI_IMAGE_HEIGHT,
        lidar.config().mount_height_m,
    )?;
    let mut report = SimulateReport {
        frames: opts.frames,
        ids: Vec::new(),
        labels: 0,
        dont_care: 0,
        anomalous_frames: 0,
        bag_messages: 0,
        seconds: 0.0,
        frames_per_s: 0.0,
    };
    if let Some(out) = &opts.out {
        write_dataset(opts, out, &lidar, &camera, &mut report, &progress)?;
    }
    if let Some(bag) = &opts.bag {
        write_drive(opts, bag, &lidar, &camera, &mut report, &progress)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    let total = opts.frames * (usize::from(opts.out.is_some()) + usize::from(opts.bag.is_some()));
    report.frames_per_s = total as f64 / report.seconds.max(1e-9);
    Ok(report)
}

fn write_dataset(
    opts: &SimulateOptions,
    out: &Path,
    lidar: &Lidar,
    camera: &CameraModel,
    report: &mut SimulateReport,
    progress: &impl Fn(Stage, usize, usize),
) -> Result<(), SimulateError> {
    let writer = KittiWriter::create(out, Split::Training)?;
    let first = next_free_index(out)?;
    let sidecar = out.join("anomalies.json");
    let mut record: BTreeMap<String, FrameAnomalies> = read_json_or_default(&sidecar)?;
    let sensors_path = out.join("sensors.json");
    let mut sensors: BTreeMap<String, SensorDraw> = read_json_or_default(&sensors_path)?;
    let calib = camera.calibration().clone();
    for i in 0..opts.frames {
        let index = first + i as u64;
        let id = frame_id(index);
        let seed = opts.seed.wrapping_add(index);
        let scene = opts.scene.generate(seed)?;
        let snapshot = scene.snapshot(0.0);
        let varied = if opts.sensor_variation.is_none() {
            None
        } else {
            let config = opts.sensor_variation.draw(lidar.config(), seed);
            let cam = CameraModel::new(calib.clone(), camera.width(), camera.height(), config.mount_height_m)?;
            Some((Lidar::new(config)?, cam))
        };
        let (lidar, camera) = varied.as_ref().map_or((lidar, camera), |(l, c)| (l, c));
        sensors.insert(id.clone(), SensorDraw::of(lidar.config()));
        let f = simulate_frame(lidar, camera, scene, snapshot, seed, &opts.anomalies, opts.anomaly_fraction)?;
        let cloud = KITTI_IMAGE_WINDOW_DEG.crop(&f.points);
        let labels: Vec<ObjectLabel> = f.labels.iter().map(|l| l.label.clone()).collect();
        writer.write_frame(&id, &cloud, &calib, &labels)?;
        let png = writer.image_path(&id)?;
        f.image.save(&png).map_err(|source| SimulateError::Image { path: png.clone(), source })?;
        report.dont_care += labels.iter().filter(|l| l.class == crate::dataset::kitti::ObjectClass::DontCare).count();
        report.labels += labels.len();
        report.anomalous_frames += usize::from(f.lidar_anomaly.is_some() || f.camera_anomaly.is_some());
        record.insert(id.clone(), FrameAnomalies { seed, split: opts.split, lidar: f.lidar_anomaly, camera: f.camera_anomaly });
        report.ids.push(id);
        progress(Stage::Dataset, i + 1, opts.frames);
    }
    write_json(&sidecar, &record)?;
    write_json(&sensors_path, &sensors)?;
    update_image_sets(&writer, out, opts.split, &report.ids)?;
    Ok(())
}

/// One past the largest frame id in `training/velodyne` (0 for a new folder).
fn next_free_index(root: &Path) -> Result<u64, SimulateError> {
    let dir = root.join("training").join("velodyne");
    let io = |source| SimulateError::Io { path: dir.clone(), source };
    let mut next = 0;
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".bin")).and_then(|n| n.parse::<u64>().ok()) {
            next = next.max(n + 1);
        }
    }
    Ok(next)
}

/// Appends `ids` to the split's list and rewrites `trainval.txt` as train ∪ val.
fn update_image_sets(writer: &KittiWriter, root: &Path, split: SimSplit, ids: &[String]) -> Result<(), SimulateError> {
    let read = |set: ImageSet| -> Result<Vec<String>, SimulateError> {
        let path = root.join("ImageSets").join(set.file_name());
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path).map_err(|source| SimulateError::Io { path: path.clone(), source })?;
        Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
    };
    let mut train = read(ImageSet::Train)?;
    let mut val = read(ImageSet::Val)?;
    let list = if split == SimSplit::Train { &mut train } else { &mut val };
    for id in ids {
        if !list.contains(id) {
            list.push(id.clone());
        }
    }
    writer.write_image_set(ImageSet::Train, &train)?;
    writer.write_image_set(ImageSet::Val, &val)?;
    let mut all = train.clone();
    all.extend(val.into_iter().filter(|id| !train.contains(id)));
    let key = |id: &String| (id.trim_start_matches('0').len(), id.trim_start_matches('0').to_owned());
    all.sort_by_key(key);
    writer.write_image_set(ImageSet::TrainVal, &all)?;
    Ok(())
}

fn read_json_or_default<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, SimulateError> {
    if !path.is_file() {
        return Ok(T::default());
    }
    let text = std::fs::read_to_string(path).map_err(|source| SimulateError::Io { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map_err(|source| SimulateError::Json { path: path.to_owned(), source })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SimulateError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| SimulateError::Json { path: path.to_owned(), source })?;
    std::fs::write(path, text + "\n").map_err(|source| SimulateError::Io { path: path.to_owned(), source })
}

/// Ground truth of one drive frame, as published on [`TOPIC_GROUND_TRUTH`].
#[derive(Debug, Clone, Serialize)]
struct GroundTruth<'a> {
    time_s: f64,
    frame: usize,
    /// Ego reference point (world) and heading.
    ego: [f64; 4],
    objects: Vec<GtObject>,
    lidar_anomaly: Option<AnomalyTag>,
    camera_anomaly: Option<CameraAnomalyTag>,
    lidar_frame: &'a str,
}

#[derive(Debug, Clone, Serialize)]
struct GtObject {
    id: u32,
    class: String,
    /// LiDAR frame: centre, size (l, w, h), yaw.
    center: [f64; 3],
    size: [f64; 3],
    yaw: f64,
    lidar_points: usize,
    /// The KITTI `label_2` line (objects in the camera view only).
    kitti: Option<String>,
}

fn write_drive(
    opts: &SimulateOptions,
    bag: &BagOptions,
    lidar: &Lidar,
    camera: &CameraModel,
    report: &mut SimulateReport,
    progress: &impl Fn(Stage, usize, usize),
) -> Result<(), SimulateError> {
    let drive = DriveConfig { scene: opts.scene.clone(), frames: opts.frames, hz: bag.hz }.generate(opts.seed)?;
    let mut writer = BagWriter::create(&bag.path)?;
    let calib = camera.calibration();
    let (w, h) = (camera.width(), camera.height());
    for i in 0..drive.frames {
        let snapshot = drive.snapshot(i)?;
        let seed = opts.seed.wrapping_add(i as u64);
        let f = simulate_frame(lidar, camera, drive.scene.clone(), snapshot, seed, &opts.anomalies, opts.anomaly_fraction)?;
        let t = START_NS + (drive.time(i) * 1e9).round() as i64;
        let stamp = Time::from_nanos(t);
        let cloud = PointCloud2::from_points(Header { stamp, frame_id: "velodyne".into() }, &f.points);
        let cam_header = Header { stamp, frame_id: "camera".into() };
        let img = Image {
            header: cam_header.clone(),
            height: h,
            width: w,
            encoding: "rgb8".into(),
            is_bigendian: 0,
            step: 3 * w,
            data: f.image.into_raw(),
        };
        let info = camera_info_from_p2(calib.p2, w, h, cam_header);
        let sensor = camera.lidar_pose(&f.snapshot);
        let counts_by_id: BTreeMap<u32, &SimLabel> = f.labels.iter().map(|l| (l.id, l)).collect();
        let objects = f
            .snapshot
            .objects
            .iter()
            .map(|o| {
                let b = sensor.box_to_local(&o.label);
                let l = counts_by_id.get(&o.id);
                GtObject {
                    id: o.id,
                    class: o.class.kitti().to_string(),
                    center: b.center,
                    size: b.size,
                    yaw: b.yaw,
                    lidar_points: l.map_or(0, |l| l.lidar_points),
                    kitti: l.map(|l| l.label.to_kitti_line()),
                }
            })
            .collect();
        let e = f.snapshot.ego;
        let gt = GroundTruth {
            time_s: f.snapshot.time,
            frame: i,
            ego: [e.position[0], e.position[1], e.position[2], e.yaw],
            objects,
            lidar_anomaly: f.lidar_anomaly,
            camera_anomaly: f.camera_anomaly,
            lidar_frame: "velodyne",
        };
        let json = serde_json::to_string(&gt).map_err(|source| SimulateError::Json { path: bag.path.clone(), source })?;
        writer.write(TOPIC_POINTS, t as u64, &cloud)?;
        writer.write(TOPIC_IMAGE, t as u64, &img)?;
        writer.write(TOPIC_CAMERA_INFO, t as u64, &info)?;
        writer.write(TOPIC_GROUND_TRUTH, t as u64, &StdString { data: json })?;
        report.bag_messages += 4;
        report.anomalous_frames += usize::from(f.lidar_anomaly.is_some() || f.camera_anomaly.is_some());
        progress(Stage::Bag, i + 1, drive.frames);
    }
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
#[path = "dataset_writer_tests.rs"]
mod tests;
