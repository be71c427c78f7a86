//! The demo's drive with a story (issue 17): the real KITTI frame held for a
//! moment, then a simulated drive that is normal, runs into a LiDAR fault
//! (spurious returns added to every sweep) and clears again. Written as a
//! rosbag2 MCAP (PointCloud2, Image, CameraInfo, `/tf_static`) that
//! `eloss replay` plays through the node, plus `story.json` with each
//! frame's stamp, source and anomaly (the ground truth the summary and the
//! test compare the node's alarm with), and the clouds and images of the
//! frames the demo's figure shows.
//!
//! The anomaly is the simulator's `noise` with `max_fraction` =
//! [`StoryConfig::noise_fraction`] at severity 1, applied (as in `eloss
//! dose-response`) to the cloud cropped to KITTI's image window: that
//! fraction of its point count is added as uniform random returns (range
//! 1-50 m all around the sensor, z −2.5..3 m). docs/eloss_monitor.md
//! measured the shipped monitor on it: from 30 % every frame is above the
//! threshold (the raw Eloss factor there, 20x at 100 %, is relative to the
//! calibration's median; the node reports its own). Realistic fog or rain
//! moves the score far less and is not flagged frame by frame, so the
//! story uses the fault the monitor honestly sees.
//!
//! Everything is a pure function of the configuration and the KITTI input,
//! so [`cache_key`] (SHA-256 of both and [`STORY_FORMAT`]) names a folder
//! that a second run reuses.

use crate::bag::kitti_drive::{camera_info_from_p2, read_p2, static_transforms, DriveSpec};
use crate::bag::messages::{CameraInfo, Header, Image, PointCloud2, RosMessage, Time};
use crate::bag::qos::OfferedQos;
use crate::bag::tf::TFMessage;
use crate::bag::BagWriter;
use crate::cloud::kitti_bin;
use crate::dataset::kitti::{Calibration, KITTI_IMAGE_HEIGHT, KITTI_IMAGE_WIDTH};
use crate::dataset::sim::anomalies::{Anomaly, Severity};
use crate::dataset::sim::camera::CameraModel;
use crate::dataset::sim::{DriveConfig, Lidar, LidarConfig, SceneConfig, KITTI_IMAGE_WINDOW_DEG};
use crate::geometry::Box3D;
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bump when the bag or story.json changes for the same configuration.
pub const STORY_FORMAT: u32 = 2;
pub const TOPIC_POINTS: &str = "/demo/points";
pub const TOPIC_IMAGE: &str = "/demo/image";
pub const TOPIC_CAMERA_INFO: &str = "/demo/camera_info";
pub const TOPIC_TF_STATIC: &str = "/tf_static";
pub const LIDAR_FRAME: &str = "velodyne";
pub const CAMERA_FRAME: &str = "camera";
pub const BASE_FRAME: &str = "base_link";
/// First stamp (as the KITTI drive's).
const START_NS: i64 = 1_700_000_000_000_000_000;
const MAX_FRAMES: usize = 2000;

/// The shape of the story, in frames at `hz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryConfig {
    /// Seed of the simulated drive (scene, scans, noise).
    pub seed: u64,
    pub hz: f64,
    /// The real KITTI frame, repeated (a vehicle standing still).
    pub kitti_frames: usize,
    /// Simulated frames before the fault, during it, and after it.
    pub normal_frames: usize,
    pub anomaly_frames: usize,
    pub clear_frames: usize,
    /// Spurious returns added per sweep during the fault, as a fraction of its points.
    pub noise_fraction: f64,
}

impl StoryConfig {
    /// The demo's drive: 1 s real frame, 2 s normal, 4 s fault, 3 s clear
    /// (100 frames). The fault is long because the node, ~0.5 s per frame on
    /// a CPU with GDC and slower on the fault's extra boxes, drops frames,
    /// and the alarm needs 3 of 5 processed frames above the threshold.
    pub fn demo() -> Self {
        Self { seed: 20_261_202, hz: 10.0, kitti_frames: 10, normal_frames: 20, anomaly_frames: 40, clear_frames: 30, noise_fraction: 1.0 }
    }

    /// The same story in small, for the DDS test (41 frames).
    pub fn small() -> Self {
        Self { kitti_frames: 3, normal_frames: 8, anomaly_frames: 16, clear_frames: 14, ..Self::demo() }
    }

    pub fn frames(&self) -> usize {
        self.kitti_frames + self.normal_frames + self.anomaly_frames + self.clear_frames
    }

    /// Frame indices `[start, end)` of the fault.
    pub fn anomaly_range(&self) -> (usize, usize) {
        let start = self.kitti_frames + self.normal_frames;
        (start, start + self.anomaly_frames)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.hz.is_finite() && self.hz > 0.0 && self.hz <= 100.0) {
            bail!("hz {} not in (0, 100]", self.hz);
        }
        if self.normal_frames + self.anomaly_frames + self.clear_frames == 0 || self.frames() > MAX_FRAMES {
            bail!("the story needs 1..={MAX_FRAMES} frames with at least one simulated frame (got {})", self.frames());
        }
        if !(self.noise_fraction.is_finite() && (0.0..=1.0).contains(&self.noise_fraction)) {
            bail!("noise_fraction {} not in [0, 1]", self.noise_fraction);
        }
        Ok(())
    }

    /// What the fault is, in words (printed by the demo).
    pub fn anomaly_description(&self) -> String {
        format!(
            "LiDAR fault: spurious returns, {:.0} % of the cloud's points added to every sweep (simulator `noise`, \
             uniform 1-50 m all around); docs/eloss_monitor.md: from 30 % the shipped monitor scores every frame \
             above its threshold (realistic fog or rain it flags only weakly)",
            self.noise_fraction * 100.0
        )
    }
}

/// The real frame the story starts with.
#[derive(Debug, Clone)]
pub struct KittiInput {
    pub bin: PathBuf,
    pub image: PathBuf,
    /// A KITTI calib file (its P2 gives the CameraInfo).
    pub calib: PathBuf,
}

/// One frame of the story (story.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryFrame {
    pub index: usize,
    pub stamp_ns: i64,
    /// `kitti` or `sim`.
    pub source: String,
    pub anomalous: bool,
    /// Simulated objects in the LiDAR frame; empty for the KITTI frame.
    pub objects: Vec<TruthObject>,
}

/// A simulated object (LiDAR frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthObject {
    pub class: String,
    pub center: [f64; 3],
    pub size: [f64; 3],
    pub yaw: f64,
}

impl TruthObject {
    pub fn to_box(&self) -> Box3D {
        Box3D { center: self.center, size: self.size, yaw: self.yaw }
    }
}

/// story.json: the configuration and the ground truth of every frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Story {
    pub format: u32,
    pub config: StoryConfig,
    pub anomaly: String,
    /// `[start, end)` frame indices of the fault.
    pub anomaly_start: usize,
    pub anomaly_end: usize,
    pub frames: Vec<StoryFrame>,
    /// Frames whose cloud and image are kept (`frames/<index>.bin|png`) for
    /// the figure: a few consecutive ones in the middle of each stretch.
    pub shown: Vec<usize>,
    /// The bag, relative to the story folder.
    pub bag: String,
    /// LiDAR → camera extrinsic in the bag's /tf_static (3x4 row-major) and each source's P2.
    pub lidar_to_camera: [f64; 12],
    pub p2_kitti: [f64; 12],
    pub p2_sim: [f64; 12],
}

impl Story {
    pub fn load(dir: &Path) -> anyhow::Result<Story> {
        let path = dir.join("story.json");
        let text = crate::untrusted_file::read_text(&path, 16 << 20).with_context(|| format!("reading {}", path.display()))?;
        let s: Story = serde_json::from_str(&text).with_context(|| format!("{}: not a demo story", path.display()))?;
        if s.format != STORY_FORMAT {
            bail!("{}: story format {} (this build writes {STORY_FORMAT})", path.display(), s.format);
        }
        Ok(s)
    }

    /// The frame with exactly this stamp.
    pub fn frame_of_stamp(&self, stamp_ns: i64) -> Option<usize> {
        self.frames.binary_search_by_key(&stamp_ns, |f| f.stamp_ns).ok()
    }

    /// The calibration of a frame's camera (P2 of its source, the bag's extrinsic).
    pub fn calibration(&self, index: usize) -> Calibration {
        let p2 = if self.frames.get(index).is_some_and(|f| f.source == "kitti") { self.p2_kitti } else { self.p2_sim };
        Calibration::from_camera(p2, self.lidar_to_camera)
    }
}

/// The cache folder name of a story: SHA-256 over the format, the
/// configuration and the KITTI input's bytes.
pub fn cache_key(cfg: &StoryConfig, kitti: &KittiInput) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(format!("story v{STORY_FORMAT} {}", env!("CARGO_PKG_VERSION")).as_bytes());
    h.update(serde_json::to_vec(cfg)?);
    for p in [&kitti.bin, &kitti.image, &kitti.calib] {
        h.update(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// The story in `cache/<key>/`, generated unless a complete one is there.
/// Returns the folder and whether it was reused.
pub fn cached_story(
    cfg: &StoryConfig,
    kitti: &KittiInput,
    cache: &Path,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<(PathBuf, bool)> {
    let dir = cache.join(format!("story-{}", cache_key(cfg, kitti)?));
    if Story::load(&dir).is_ok() {
        return Ok((dir, true));
    }
    let tmp = cache.join(format!(".story-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    write_story(cfg, kitti, &tmp, progress)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))?;
    Ok((dir, false))
}

fn image_msg(rgb: &::image::RgbImage, stamp: Time) -> Image {
    let (w, h) = rgb.dimensions();
    Image {
        header: Header { stamp, frame_id: CAMERA_FRAME.into() },
        height: h,
        width: w,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 3 * w,
        data: rgb.as_raw().clone(),
    }
}

/// Writes `dir/drive.mcap`, `dir/story.json` and the shown frames into `dir`.
/// `progress(done, total)` after every frame.
pub fn write_story(cfg: &StoryConfig, kitti: &KittiInput, dir: &Path, mut progress: impl FnMut(usize, usize)) -> anyhow::Result<Story> {
    cfg.validate()?;
    std::fs::create_dir_all(dir.join("frames")).with_context(|| format!("creating {}", dir.display()))?;
    let kitti_points = kitti_bin::read(&kitti.bin).with_context(|| format!("reading {}", kitti.bin.display()))?;
    let kitti_image = ::image::open(&kitti.image).with_context(|| format!("reading {}", kitti.image.display()))?.to_rgb8();
    let p2_kitti = read_p2(&kitti.calib)?;
    let lidar = Lidar::new(LidarConfig::hdl64e())?;
    let sim_calib = Calibration::kitti_like_default();
    let camera = CameraModel::new(sim_calib.clone(), KITTI_IMAGE_WIDTH, KITTI_IMAGE_HEIGHT, lidar.config().mount_height_m)?;
    let sim_frames = cfg.normal_frames + cfg.anomaly_frames + cfg.clear_frames;
    let drive = DriveConfig { scene: SceneConfig::default(), frames: sim_frames, hz: cfg.hz }.generate(cfg.seed)?;
    let (a_start, a_end) = cfg.anomaly_range();
    // a few candidates in the middle of each stretch: the figure shows the
    // first one the node processed (it drops frames when it falls behind)
    let mut shown = Vec::new();
    // (every KITTI frame: they are one frame, so whichever the node processed will do)
    shown.extend(0..cfg.kitti_frames);
    // and the middle half of the normal and the fault stretch
    for (start, len) in [(cfg.kitti_frames, cfg.normal_frames), (a_start, cfg.anomaly_frames)] {
        shown.extend(start + len / 4..start + len - len / 4);
    }
    let lidar_to_camera = sim_calib.lidar_to_cam_matrix();
    let spec = DriveSpec {
        frames: cfg.frames() as u32,
        hz: cfg.hz,
        base_frame: BASE_FRAME.into(),
        lidar_frame: LIDAR_FRAME.into(),
        camera_frame: CAMERA_FRAME.into(),
    };
    let bag_path = dir.join("drive.mcap");
    let mut bag = BagWriter::create(&bag_path)?;
    let sensor_qos = [OfferedQos::reliable(10)];
    bag.add_topic_with_qos(TOPIC_TF_STATIC, TFMessage::TYPE_NAME, &[OfferedQos::static_broadcaster()])?;
    bag.add_topic_with_qos(TOPIC_POINTS, PointCloud2::TYPE_NAME, &sensor_qos)?;
    bag.add_topic_with_qos(TOPIC_IMAGE, Image::TYPE_NAME, &sensor_qos)?;
    bag.add_topic_with_qos(TOPIC_CAMERA_INFO, CameraInfo::TYPE_NAME, &sensor_qos)?;
    bag.write(TOPIC_TF_STATIC, START_NS as u64, &static_transforms(&spec, Some(lidar_to_camera), Time::from_nanos(START_NS))?)?;
    let noise = Anomaly::Noise { max_fraction: cfg.noise_fraction };
    let mut frames = Vec::with_capacity(cfg.frames());
    for i in 0..cfg.frames() {
        let t = START_NS + (i as f64 * 1e9 / cfg.hz).round() as i64;
        let stamp = Time::from_nanos(t);
        let anomalous = (a_start..a_end).contains(&i);
        let (points, image, p2, objects, source) = if i < cfg.kitti_frames {
            (kitti_points.clone(), kitti_image.clone(), p2_kitti, Vec::new(), "kitti")
        } else {
            let k = i - cfg.kitti_frames;
            let snapshot = drive.snapshot(k)?;
            let seed = cfg.seed.wrapping_add(k as u64);
            let scan = lidar.scan(&drive.scene, &snapshot, seed);
            // cropped first, as the clouds of `eloss dose-response` were: the
            // noise doubles the cloud the node sees (spread all around the sensor)
            let mut points = KITTI_IMAGE_WINDOW_DEG.crop(&scan.points);
            if anomalous {
                noise.apply(&mut points, Severity::new(1.0)?, seed)?;
            }
            let rendered = camera.render(&drive.scene, &snapshot);
            let objects = snapshot.labels_in(&scan.sensor).into_iter().map(|(_, c, b)| TruthObject { class: c.kitti().as_str().to_string(), center: b.center, size: b.size, yaw: b.yaw })
                .collect();
            (points, rendered.image, sim_calib.p2, objects, "sim")
        };
        if shown.contains(&i) {
            kitti_bin::write(dir.join(format!("frames/{i:04}.bin")), &points)?;
            image.save(dir.join(format!("frames/{i:04}.png"))).with_context(|| format!("writing frame {i} image"))?;
        }
        let img = image_msg(&image, stamp);
        let info = camera_info_from_p2(p2, img.width, img.height, img.header.clone());
        // the camera first: auto-relabel crops from images already decoded
        // when the cloud's boxes are ready, and never waits for a later one
        bag.write(TOPIC_CAMERA_INFO, t as u64, &info)?;
        bag.write(TOPIC_IMAGE, t as u64, &img)?;
        bag.write(TOPIC_POINTS, t as u64, &PointCloud2::from_points(Header { stamp, frame_id: LIDAR_FRAME.into() }, &points))?;
        frames.push(StoryFrame { index: i, stamp_ns: t, source: source.into(), anomalous, objects });
        progress(i + 1, cfg.frames());
    }
    bag.finish()?;
    let story = Story {
        format: STORY_FORMAT,
        config: cfg.clone(),
        anomaly: cfg.anomaly_description(),
        anomaly_start: a_start,
        anomaly_end: a_end,
        frames,
        shown,
        bag: "drive.mcap".into(),
        lidar_to_camera,
        p2_kitti,
        p2_sim: sim_calib.p2,
    };
    let json = serde_json::to_string_pretty(&story)?;
    crate::atomic_file::write(&dir.join("story.json"), json.as_bytes())?;
    Ok(story)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::BagReader;

    fn kitti() -> Option<KittiInput> {
        let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kitti_000008");
        d.join("000008.bin").is_file().then(|| KittiInput { bin: d.join("000008.bin"), image: d.join("000008.png"), calib: d.join("000008.txt") })
    }

    /// A 4-frame story: stamps, sources and fault flags in story.json; the
    /// bag holds /tf_static then, per frame, CameraInfo, Image and the cloud
    /// (camera first); the fault doubles the cloud; the cache reuses it.
    #[test]
    fn tiny_story_writes_truth_bag_and_is_reused_from_the_cache() {
        let Some(k) = kitti() else { return };
        let cfg = StoryConfig { kitti_frames: 1, normal_frames: 1, anomaly_frames: 1, clear_frames: 1, ..StoryConfig::demo() };
        let cache = tempfile::tempdir().unwrap();
        let (dir, reused) = cached_story(&cfg, &k, cache.path(), |_, _| {}).unwrap();
        assert!(!reused);
        let story = Story::load(&dir).unwrap();
        assert_eq!((story.anomaly_start, story.anomaly_end), (2, 3));
        let src: Vec<(&str, bool)> = story.frames.iter().map(|f| (f.source.as_str(), f.anomalous)).collect();
        assert_eq!(src, [("kitti", false), ("sim", false), ("sim", true), ("sim", false)]);
        assert!(story.frames.windows(2).all(|w| w[1].stamp_ns - w[0].stamp_ns == 100_000_000));
        assert_eq!(story.frame_of_stamp(story.frames[2].stamp_ns), Some(2));
        assert!(story.frames[0].objects.is_empty() && !story.frames[1].objects.is_empty());

        let reader = BagReader::open(dir.join(&story.bag)).unwrap();
        let msgs: Vec<_> = reader.messages().unwrap().map(|m| m.unwrap()).collect();
        let topics: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics[0], TOPIC_TF_STATIC);
        for f in 0..4 {
            assert_eq!(&topics[1 + 3 * f..4 + 3 * f], [TOPIC_CAMERA_INFO, TOPIC_IMAGE, TOPIC_POINTS], "frame {f}");
        }
        let clouds: Vec<PointCloud2> = msgs.iter().filter(|m| m.topic == TOPIC_POINTS).map(|m| m.decode().unwrap()).collect();
        let n: Vec<u32> = clouds.iter().map(|c| c.width).collect();
        let kitti_points = kitti_bin::read(&k.bin).unwrap().len() as u32;
        assert_eq!(n[0], kitti_points);
        assert!(n[2] as f64 > 1.7 * n[1] as f64 && n[2] as f64 > 1.7 * n[3] as f64, "the fault doubles the cloud: {n:?}");
        assert_eq!(clouds[2].header.stamp, Time::from_nanos(story.frames[2].stamp_ns));
        assert!(story.shown.iter().all(|i| dir.join(format!("frames/{i:04}.png")).is_file()));

        let (again, reused) = cached_story(&cfg, &k, cache.path(), |_, _| panic!("regenerated")).unwrap();
        assert_eq!((again, reused), (dir, true));
        let other = StoryConfig { noise_fraction: 0.5, ..cfg };
        assert_ne!(cache_key(&other, &k).unwrap(), cache_key(&cfg, &k).unwrap());
    }
}
