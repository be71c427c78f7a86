//! Shared helpers of the integration tests: locating the venv Python and the
//! real data, with the CI rule that missing prerequisites fail loudly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether a test may skip when a prerequisite (the venv Python, the KITTI
/// frame, converted weights) is missing: never under CI, elsewhere only when
/// the user opts out with `ELOSS_ALLOW_SKIPS=1`; otherwise a missing
/// prerequisite fails the test, so a green `scripts/test.sh` never hides skips.
pub fn skips_allowed() -> bool {
    !in_ci() && std::env::var("ELOSS_ALLOW_SKIPS").as_deref() == Ok("1")
}

/// Prints `SKIPPED: <why>` straight to stderr: the test harness captures
/// `eprintln!` of passing tests, so a skip would otherwise go unseen.
pub fn skip_note(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}; ELOSS_ALLOW_SKIPS=1");
}

/// A missing prerequisite: a skip that prints why (with `ELOSS_ALLOW_SKIPS=1`),
/// else a failure that says how to provide it or opt out.
pub fn missing<T>(what: &str, fix: &str) -> Option<T> {
    if skips_allowed() {
        skip_note(&format!("{what} ({fix})"));
        None
    } else {
        panic!("{what}: {fix}; or set ELOSS_ALLOW_SKIPS=1 to skip the tests that need it")
    }
}

/// The venv Python from scripts/env.sh; `None` (test skipped, saying why)
/// only with `ELOSS_ALLOW_SKIPS=1` outside CI ([`skips_allowed`]).
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("ELOSS_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => missing("ELOSS_PYTHON is not set", "run tests through scripts/test.sh or source scripts/env.sh"),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// ../shared/data/kitti_000008, or `None` (skip) when missing and skips are allowed.
pub fn kitti_dir() -> Option<PathBuf> {
    let d = repo().join("../shared/data/kitti_000008");
    if d.join("000008.bin").is_file() {
        Some(d)
    } else {
        missing(&format!("{} is missing", d.display()), "the real KITTI frame lives in ../shared/data")
    }
}

/// A numeric value of one diagnostic status as the peer reports it
/// (diagnostic values are strings); panics naming the key when absent.
pub fn counter(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// `node_peer.py status`: publishes the real KITTI cloud to the node in `ns`
/// until it counts `clouds` processed, then returns its diagnostics by name;
/// `None` (skip) when the venv or the frame is missing and skips are allowed.
pub fn peer_status(ns: &str, clouds: u32) -> Option<serde_json::Value> {
    let (py, kitti) = (python()?, kitti_dir()?);
    let out = Command::new(py)
        .arg(repo().join("tests/python/node_peer.py"))
        .args(["status", ns])
        .arg(kitti.join("000008.bin"))
        .arg(clouds.to_string())
        .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        .output()
        .expect("run node_peer.py");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("peer prints JSON"))
}

/// A GDC bank of the three colour classes ([`write_colour_classes`], 8 images
/// each) built with the small random DINOv2 with registers of
/// tests/python/dinov2_reference.py; returns (bank, backbone folder) under `dir`.
pub fn dinov2_colour_bank(py: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    use eloss_perception::gdc::{backbone::EmbeddingRecipe, bank::FitOptions, bank_builder::build_bank, encoder::Dinov2Encoder};
    let out = Command::new(py).arg(repo().join("tests/python/dinov2_reference.py")).arg(dir).output().unwrap();
    assert!(out.status.success(), "dinov2_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    let backbone = dir.join("registers");
    let encoder = Dinov2Encoder::load(&backbone, EmbeddingRecipe::ClsMeanPatch, tch::Device::Cpu).unwrap();
    write_colour_classes(&dir.join("images"), 8);
    let bank = build_bank(&dir.join("images"), &encoder, FitOptions::default(), 8, |_, _| {}).unwrap();
    let bank_path = dir.join("bank.safetensors");
    bank.save(&bank_path).unwrap();
    (bank_path, backbone)
}

/// EfficientNet-Lite0 weights converted by scripts/setup.sh, or `None` (skip)
/// when missing and skips are allowed.
pub fn efficientnet_weights() -> Option<PathBuf> {
    let cache = std::env::var_os("ELOSS_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/eloss_perception")
    });
    let w = cache.join("weights/efficientnet_lite0.safetensors");
    if w.is_file() {
        Some(w)
    } else {
        missing(&format!("{} is missing", w.display()), "run scripts/setup.sh")
    }
}

/// The node as a child process in its own namespace; SIGINT on drop.
pub struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    pub fn start(ns: &str, params: &[String]) -> Self {
        Self::start_with(ns, params, &[])
    }

    /// As [`NodeProcess::start`], with more `--ros-args` (remaps, `--log-level`).
    /// `/tf`, `/tf_static` and `/clock` are always remapped into the
    /// namespace, so parallel tests never see each other's transforms or time.
    pub fn start_with(ns: &str, params: &[String], ros_args: &[&str]) -> Self {
        let own = Self::namespaced_remaps(ns);
        let mut args: Vec<&str> = own.iter().flat_map(|r| ["-r", r.as_str()]).collect();
        args.extend_from_slice(ros_args);
        Self::start_raw(ns, params, &args)
    }

    /// `/tf`, `/tf_static` and `/clock` remapped into the namespace.
    fn namespaced_remaps(ns: &str) -> [String; 3] {
        [format!("/tf:={ns}/tf"), format!("/tf_static:={ns}/tf_static"), format!("/clock:={ns}/clock")]
    }

    /// The node on the global `/tf`, `/tf_static` and `/clock` (a bag replay):
    /// tests that use it must not run at the same time as another such test.
    pub fn start_raw(ns: &str, params: &[String], ros_args: &[&str]) -> Self {
        Self::spawn(ns, params, ros_args, &[])
    }

    /// As [`NodeProcess::start`], with faults injected at the node's fail
    /// points (`FAILPOINTS`, e.g. `detector_load=panic(why)`; the node is
    /// built with the `failpoints` feature in scripts/test.sh).
    pub fn start_with_failpoints(ns: &str, params: &[String], failpoints: &str) -> Self {
        let own = Self::namespaced_remaps(ns);
        let args: Vec<&str> = own.iter().flat_map(|r| ["-r", r.as_str()]).collect();
        Self::spawn(ns, params, &args, &[("FAILPOINTS", failpoints)])
    }

    fn spawn(ns: &str, params: &[String], ros_args: &[&str], env: &[(&str, &str)]) -> Self {
        let repo = repo();
        let child = Command::new(env!("CARGO_BIN_EXE_eloss_perception_node"))
            .args(["--ros-args", "--params-file"])
            .arg(repo.join("config/eloss_perception.yaml"))
            .args(["-p", "diagnostics.period_s:=0.2", "-r", &format!("__ns:={ns}")])
            .args(["-r", &format!("/diagnostics:={ns}/diagnostics")])
            .args(params.iter().flat_map(|p| ["-p", p.as_str()]))
            .args(ros_args)
            .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start eloss_perception_node");
        NodeProcess { child }
    }

    /// The node's process id (for /proc/PID/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, then wait for a clean exit.
    pub fn stop(self) -> std::process::ExitStatus {
        self.stop_with("INT").0
    }

    /// `signal` (INT, TERM), then wait (up to 10 s) for the exit; returns
    /// how it exited and how long after the signal.
    pub fn stop_with(mut self, signal: &str) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait node") {
                return (s, sent.elapsed());
            }
            assert!(sent.elapsed() < Duration::from_secs(10), "node did not exit within 10 s of SIG{signal}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A noisy image around `rgb` with a deterministic xorshift texture.
pub fn noisy_image(rgb: [u8; 3], w: u32, h: u32, seed: u64) -> ::image::RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ::image::RgbImage::from_fn(w, h, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let n = (s % 61) as i32 - 30;
        ::image::Rgb(rgb.map(|c| (c as i32 + n).clamp(0, 255) as u8))
    })
}

/// Class folders of noisy colour images for few-shot bank tests.
pub const COLOUR_CLASSES: [(&str, [u8; 3]); 3] = [("brick", [170, 60, 40]), ("grass", [60, 150, 50]), ("sky", [120, 160, 230])];

pub fn write_colour_classes(root: &Path, per_class: u32) {
    for (c, (name, rgb)) in COLOUR_CLASSES.iter().enumerate() {
        std::fs::create_dir_all(root.join(name)).unwrap();
        for i in 0..per_class {
            noisy_image(*rgb, 40 + 7 * i, 30 + 5 * i, (c * 100 + i as usize) as u64)
                .save(root.join(name).join(format!("{i:03}.png")))
                .unwrap();
        }
    }
}

/// A copy of the embedded detector whose classification logits are raised by
/// `logit_shift` and whose output is capped at `max_detections` boxes: a
/// detector that always finds something, whatever the state of training
/// (for tests of what happens to detections, not of the detector).
pub fn eager_detector(dir: &Path, logit_shift: f32, max_detections: usize) -> PathBuf {
    use safetensors::tensor::{SafeTensors, TensorView};
    let bytes = std::fs::read(repo().join("config/detector/compact_eloss.safetensors")).expect("embedded detector");
    let (_, header) = SafeTensors::read_metadata(&bytes).expect("checkpoint header");
    let mut meta = header.metadata().clone().expect("checkpoint metadata");
    let mut config: serde_json::Value = serde_json::from_str(&meta["config"]).expect("config JSON");
    config["max_detections"] = max_detections.into();
    meta.insert("config".into(), config.to_string());
    let st = SafeTensors::deserialize(&bytes).expect("checkpoint tensors");
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name == "dense_head.conv_cls.bias" {
            for c in data.chunks_exact_mut(4) {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) + logit_shift;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        tensors.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("tensor view"))).collect();
    let path = dir.join("eager_detector.safetensors");
    safetensors::serialize_to_file(views, Some(meta), &path).expect("write checkpoint");
    path
}

/// The tiny generator and backbone under `dir` (sd/, plain/) and a colour
/// bank built with that backbone; returns the bank's path.
pub fn tiny_gdc(py: &Path, dir: &Path) -> PathBuf {
    use eloss_perception::gdc::{backbone::EmbeddingRecipe, bank::FitOptions, bank_builder::build_bank, encoder::Dinov2Encoder};
    for script in ["generator_reference.py", "dinov2_reference.py"] {
        let out = Command::new(py).arg(repo().join("tests/python").join(script)).arg(dir).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let encoder = Dinov2Encoder::load(&dir.join("plain"), EmbeddingRecipe::Cls, tch::Device::Cpu).unwrap();
    write_colour_classes(&dir.join("images"), 6);
    let bank = build_bank(&dir.join("images"), &encoder, FitOptions::default(), 8, |_, _| {}).unwrap();
    let bank_path = dir.join("bank.safetensors");
    bank.save(&bank_path).unwrap();
    bank_path
}

/// A simulated frame with cars ahead (the scene of tests/detect_dds.rs): its
/// HDL-64E scan as `cloud.bin` (KITTI layout) and the KITTI camera's image as
/// `image.png` under `dir`.
pub fn simulated_frame(dir: &Path) -> (PathBuf, PathBuf) {
    use eloss_perception::dataset::sim::camera::CameraModel;
    use eloss_perception::dataset::sim::{Lidar, LidarConfig, SceneConfig};
    let seed = 20_261_127;
    let scene = SceneConfig::default().generate(seed).unwrap();
    let snap = scene.snapshot(0.0);
    let scan = Lidar::new(LidarConfig::hdl64e()).unwrap().scan(&scene, &snap, seed);
    let bin = dir.join("cloud.bin");
    eloss_perception::cloud::kitti_bin::write(&bin, &scan.points).unwrap();
    let png = dir.join("image.png");
    CameraModel::kitti().render(&scene, &snap).image.save(&png).unwrap();
    (bin, png)
}
