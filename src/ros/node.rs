//! `eloss_perception_node`: subscriptions, newest-frame workers, diagnostics.
//!
//! Concurrency (r2r + tokio): the r2r node spins on a blocking thread; each
//! subscription stream is drained at once by a tokio task into a
//! [`LatestSlot`] (r2r's own queue drops *new* messages when full, so we must
//! never let it fill); a worker thread per sensor decodes only the newest
//! frame. A malformed message is counted and logged, never fatal.
//!
//! Topics (relative names, so namespaces and `-r from:=to` remaps apply):
//! inputs `points` (PointCloud2), `image` (Image), `image/compressed`
//! (CompressedImage, jpeg/png), `camera_info` (CameraInfo), all with
//! sensor-data QoS, and `/tf`, `/tf_static` (tf2_msgs/TFMessage, tf2's QoS);
//! outputs per cloud, with its stamp, in `detector.frame` (or the cloud's
//! frame when that is empty): `detections` (vision_msgs/Detection3DArray,
//! the standard type), `annotated_detections` (our Detection3DArray: GDC
//! labels, model id), `detected_objects` (Autoware's DetectedObjects, with
//! `detector.autoware_objects`), `markers` (MarkerArray for RViz) and
//! `eloss` (ElossReport: the Eloss anomaly report of the same forward pass);
//! and `/diagnostics` (DiagnosticArray, incl. detector latency, frames and
//! tf, the anomaly alarm, and the workers: a thread or task that died or
//! stalled is an ERROR naming it). Time is the ROS clock: with
//! `-p use_sim_time:=true` it follows `/clock` (r2r's time source).
//! Logs go through rcutils (console, `/rosout`, `--log-level`: logging.rs).
//! services `~/relabel` (RelabelObjects, GDC labels for image crops) and
//! `~/add_classes` (AddClasses: new GDC classes from their names through the
//! configured generator, in the background), with `~/gdc_bank`
//! (GdcBankStatus, transient local) reporting the bank's classes and the
//! generation queue. Service requests beyond the in-flight limits are
//! answered "busy" at once, and every wait ends at shutdown
//! (docs/reliability.md, "Workers, locks and shutdown").
//!
//! GDC: the node keeps the newest `gdc.history_frames` frames (cloud stamp,
//! frame id, published boxes) and decoded images in a [`FrameHistory`], so
//! `~/relabel` can label detections of a recent frame by id; requests copy
//! what they need out of it under a short lock and classify outside it.
//! With `gdc.auto_relabel` the cloud worker labels every detection from the
//! time-matched image before publishing (time in the detector diagnostics).
//! The GDC side of the node (the services, `~/gdc_bank`, the classifier's
//! loader, the class generator, auto relabelling) is in `node_gdc.rs`, the
//! child module `gdc`; this file holds the rest of the node.

use super::convert;
use super::param_guard::GuardedParams;
use super::params::NodeParams;
use super::relabel::Gdc;
use crate::gdc::generator::class_queue::{ClassQueue, GeneratorSettings};
use crate::perception::FramePipeline;
use crate::camera::PinholeCamera;
use crate::frame_slot::LatestSlot;
use crate::frames::TransformBuffer;
use crate::log_limit::{suppressed_note, LogLimiter};
use crate::gdc::frame_history::{FrameHistory, ImageRecord};
use crate::snapshot_cell::SnapshotCell;
use crate::stats::{DetectorStats, ElossStats, FrameStats, GdcStats, InputStats};
use crate::workers::{Heartbeat, Workers};
use anyhow::Context as _;
use futures::StreamExt;
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::eloss_perception_msgs::msg::{Detection3DArray, ElossReport};
use r2r::visualization_msgs::msg::MarkerArray;
use r2r::sensor_msgs::msg::{CameraInfo, CompressedImage, Image, PointCloud2};
use r2r::QosProfile;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[path = "node_detect.rs"]
mod detect;
#[path = "node_frames.rs"]
pub mod frames;
#[path = "node_gdc.rs"]
mod gdc;
pub use gdc::{MAX_ADD_CLASSES_IN_FLIGHT, MAX_RELABEL_IN_FLIGHT, MAX_RELABEL_RUNNING};

pub use super::NODE_NAME;
pub const TOPIC_POINTS: &str = "points";
pub const TOPIC_IMAGE: &str = "image";
pub const TOPIC_COMPRESSED_IMAGE: &str = "image/compressed";
pub const TOPIC_CAMERA_INFO: &str = "camera_info";
pub const TOPIC_DIAGNOSTICS: &str = "/diagnostics";
pub const TOPIC_DETECTIONS: &str = "detections";
pub const TOPIC_ANNOTATED_DETECTIONS: &str = "annotated_detections";
pub const TOPIC_DETECTED_OBJECTS: &str = "detected_objects";
pub const TOPIC_MARKERS: &str = "markers";
pub const TOPIC_ELOSS: &str = "eloss";
pub const SERVICE_RELABEL: &str = "~/relabel";
pub const SERVICE_ADD_CLASSES: &str = "~/add_classes";
pub const TOPIC_GDC_BANK: &str = "~/gdc_bank";

#[derive(Default, Clone)]
struct Stats {
    cloud: InputStats,
    image: InputStats,
    compressed_image: InputStats,
    camera_info: InputStats,
    frames: FrameStats,
    detector: DetectorStats,
    eloss: ElossStats,
    gdc: GdcStats,
}

/// What the cloud worker publishes.
struct Outputs {
    detections: r2r::Publisher<r2r::vision_msgs::msg::Detection3DArray>,
    annotated: r2r::Publisher<Detection3DArray>,
    autoware: Option<r2r::Publisher<r2r::autoware_perception_msgs::msg::DetectedObjects>>,
    markers: r2r::Publisher<MarkerArray>,
    eloss: r2r::Publisher<ElossReport>,
}

/// A camera image as it arrived: raw, or compressed (jpeg/png).
enum CameraImage {
    Raw(Image),
    Compressed(CompressedImage),
}

impl CameraImage {
    /// For a log line about a malformed one (sender strings made printable).
    fn describe(&self) -> String {
        match self {
            CameraImage::Raw(m) => format!("Image (encoding '{}')", crate::log_limit::printable(&m.encoding)),
            CameraImage::Compressed(m) => format!("CompressedImage (format '{}')", crate::log_limit::printable(&m.format)),
        }
    }
}

struct Shared {
    params: Arc<Mutex<GuardedParams>>,
    clouds: LatestSlot<PointCloud2>,
    images: LatestSlot<CameraImage>,
    stats: Mutex<Stats>,
    /// Recent frames and decoded images, for ~/relabel by id and auto relabelling.
    history: Mutex<FrameHistory>,
    /// The newest valid CameraInfo and its frame id (the camera's optical frame).
    camera: Mutex<Option<(PinholeCamera, String)>>,
    /// Transforms from /tf and /tf_static.
    tf: Mutex<TransformBuffer>,
    /// One warning per second per kind for warnings caused by input.
    log_limit: LogLimiter,
    /// The GDC classifier once its loader finished (or why there is none):
    /// readers take a snapshot, a new class swaps in a new one.
    gdc: OnceLock<SnapshotCell<Gdc>>,
    /// Classes asked for through ~/add_classes, generated one at a time.
    class_queue: ClassQueue,
    /// How they are generated; None = no generator configured.
    generator: Option<GeneratorSettings>,
    stop: AtomicBool,
    /// `stop` for async waits: true once the node is shutting down.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Heartbeats of every thread and task (the workers diagnostics).
    workers: Arc<Workers>,
}

impl Shared {
    /// Resolves when the node starts shutting down (for `tokio::select!`).
    async fn stopped(&self) {
        let _ = self.stopping.subscribe().wait_for(|s| *s).await;
    }
}

/// Stall limits: a worker silent for longer is an ERROR in the workers
/// diagnostics. The cloud worker's covers loading the detector and one frame
/// with auto relabelling; the class generator's one generated image.
const CLOUD_WORKER_STALL: Duration = Duration::from_secs(30);
const WORKER_STALL: Duration = Duration::from_secs(10);
pub(crate) const CLASS_GENERATOR_STALL: Duration = Duration::from_secs(600);

/// A tokio task watched as a worker named `name`: its end (its stream
/// closed) or a panic while the node runs is an ERROR in the diagnostics.
fn spawn_watched(sh: &Shared, name: &str, task: impl std::future::Future<Output = ()> + Send + 'static) {
    let heartbeat = sh.workers.register(name, None);
    tokio::spawn(async move {
        let _heartbeat = heartbeat;
        task.await;
    });
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking worker must not take the whole node down with a poisoned lock
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the node until SIGINT/SIGTERM. `args` are the process arguments
/// (`--ros-args ...` is handled by rcl).
pub async fn run() -> anyhow::Result<()> {
    let ctx = r2r::Context::create().context("rcl init")?;
    let mut node = r2r::Node::create(ctx, NODE_NAME, "").context("creating node")?;
    super::logging::set_logger_name(node.logger());
    super::logging::attach_rosout(&mut node).context("creating the /rosout publisher")?;

    let defaults = NodeParams::defaults().context("compiled-in defaults")?;
    let params = Arc::new(Mutex::new(GuardedParams::new(defaults)));
    let (param_handler, mut param_events) = node
        .make_derived_parameter_handler(params.clone())
        .context("parameters (check --params-file values and types)")?;
    lock(&params).validate().context("invalid parameters")?;
    // from now on a run-time change is validated, and start-up-only ones refused
    lock(&params).running = true;

    let history = FrameHistory::new(usize::try_from(lock(&params).gdc.history_frames).unwrap_or(1));
    let shared = Arc::new(Shared {
        params: params.clone(),
        clouds: LatestSlot::new(),
        images: LatestSlot::new(),
        stats: Mutex::new(Stats::default()),
        history: Mutex::new(history),
        camera: Mutex::new(None),
        tf: Mutex::new(TransformBuffer::default()),
        log_limit: LogLimiter::new(Duration::from_secs(1)),
        gdc: OnceLock::new(),
        class_queue: ClassQueue::new(),
        generator: super::add_classes::settings(&lock(&params).gdc),
        stop: AtomicBool::new(false),
        stopping: tokio::sync::watch::channel(false).0,
        workers: Workers::new(),
    });

    let qos = QosProfile::sensor_data();
    let mut clouds = node.subscribe::<PointCloud2>(TOPIC_POINTS, qos.clone())?;
    let mut images = node.subscribe::<Image>(TOPIC_IMAGE, qos.clone())?;
    let mut compressed = node.subscribe::<CompressedImage>(TOPIC_COMPRESSED_IMAGE, qos.clone())?;
    let mut infos = node.subscribe::<CameraInfo>(TOPIC_CAMERA_INFO, qos)?;
    let diag_pub = node.create_publisher::<DiagnosticArray>(TOPIC_DIAGNOSTICS, QosProfile::default())?;
    let autoware = lock(&params).detector.autoware_objects;
    let outputs = Outputs {
        detections: node.create_publisher(TOPIC_DETECTIONS, QosProfile::default())?,
        annotated: node.create_publisher::<Detection3DArray>(TOPIC_ANNOTATED_DETECTIONS, QosProfile::default())?,
        autoware: if autoware { Some(node.create_publisher(TOPIC_DETECTED_OBJECTS, QosProfile::default())?) } else { None },
        markers: node.create_publisher::<MarkerArray>(TOPIC_MARKERS, QosProfile::default())?,
        eloss: node.create_publisher::<ElossReport>(TOPIC_ELOSS, QosProfile::default())?,
    };
    frames::spawn(&mut node, &shared)?;
    let clock = node.get_ros_clock();
    let (bank_status, mut drain_services) = gdc::spawn(&mut node, &shared, &clock)?;
    tracing::info!(node = %node.fully_qualified_name()?, "started; params: {:?}", lock(&params).params);
    tracing::debug!(
        "inputs {TOPIC_POINTS}, {TOPIC_IMAGE}, {TOPIC_COMPRESSED_IMAGE}, {TOPIC_CAMERA_INFO}, /tf, /tf_static; outputs {TOPIC_DETECTIONS}, {TOPIC_ANNOTATED_DETECTIONS}{}, {TOPIC_MARKERS}, {TOPIC_ELOSS}, {TOPIC_DIAGNOSTICS} (relative to the namespace, after remaps)",
        if autoware { format!(", {TOPIC_DETECTED_OBJECTS}") } else { String::new() }
    );

    let sh = shared.clone();
    spawn_watched(&shared, "points subscription", async move {
        while let Some(msg) = clouds.next().await {
            lock(&sh.stats).cloud.received += 1;
            sh.clouds.put(msg);
        }
    });
    let sh = shared.clone();
    spawn_watched(&shared, "image subscription", async move {
        while let Some(msg) = images.next().await {
            lock(&sh.stats).image.received += 1;
            sh.images.put(CameraImage::Raw(msg));
        }
    });
    let sh = shared.clone();
    spawn_watched(&shared, "compressed image subscription", async move {
        while let Some(msg) = compressed.next().await {
            let mut stats = lock(&sh.stats);
            stats.image.received += 1;
            stats.compressed_image.received += 1;
            drop(stats);
            sh.images.put(CameraImage::Compressed(msg));
        }
    });
    let sh = shared.clone();
    spawn_watched(&shared, "camera info subscription", async move {
        while let Some(msg) = infos.next().await {
            let t = Instant::now();
            let result = convert::decode_camera_info(&msg);
            let mut stats = lock(&sh.stats);
            stats.camera_info.received += 1;
            match result {
                Ok(cam) => {
                    stats.camera_info.record_ok(1, t.elapsed());
                    *lock(&sh.camera) = Some((cam, msg.header.frame_id));
                }
                Err(e) => {
                    if let Some(n) = sh.log_limit.allow("malformed CameraInfo") {
                        tracing::warn!("malformed CameraInfo: {e}{}", suppressed_note(n));
                    }
                    stats.camera_info.record_malformed(e);
                }
            }
        }
    });
    spawn_watched(&shared, "parameter services", param_handler);
    spawn_watched(&shared, "parameter events", async move {
        while let Some((name, value)) = param_events.next().await {
            tracing::info!("parameter {name} set to {value:?}");
        }
    });

    let workers = [
        shared.workers.spawn("cloud-worker", Some(CLOUD_WORKER_STALL), {
            let sh = shared.clone();
            move |heartbeat| cloud_worker(&sh, outputs, heartbeat)
        })?,
        shared.workers.spawn("image-worker", Some(WORKER_STALL), {
            let sh = shared.clone();
            move |heartbeat| image_worker(&sh, heartbeat)
        })?,
    ];

    let sh = shared.clone();
    let diagnostics = tokio::spawn(async move {
        let mut previous = Stats::default();
        loop {
            let (period, hw) = {
                let p = lock(&sh.params);
                (p.diagnostics.period_s, p.hardware_id.clone())
            };
            // validated on every change; still never a panic in Duration::from_secs_f64
            let period = if period.is_finite() && period > 0.0 { period.min(3600.0) } else { 1.0 };
            tokio::time::sleep(Duration::from_secs_f64(period)).await;
            let queue = sh.class_queue.status();
            let now = {
                let mut stats = lock(&sh.stats);
                stats.cloud.dropped = sh.clouds.dropped();
                stats.image.dropped = sh.images.dropped();
                stats.frames.frames_known = lock(&sh.tf).len();
                (stats.gdc.history_frame_bytes, stats.gdc.history_image_bytes) = lock(&sh.history).bytes();
                (stats.gdc.pending_classes, stats.gdc.failed_classes) = (queue.pending.len(), queue.failed.len());
                stats.clone()
            };
            let statuses = [
                now.cloud.status(&format!("{NODE_NAME}: point cloud input"), &hw, &previous.cloud),
                now.image.status(&format!("{NODE_NAME}: image input"), &hw, &previous.image),
                now.compressed_image.status(&format!("{NODE_NAME}: compressed image input"), &hw, &previous.compressed_image),
                now.camera_info.status(&format!("{NODE_NAME}: camera info input"), &hw, &previous.camera_info),
                now.detector.status(&format!("{NODE_NAME}: detector"), &hw, &previous.detector),
                now.frames.status(&format!("{NODE_NAME}: frames"), &hw, &previous.frames),
                now.eloss.status(&format!("{NODE_NAME}: eloss monitor"), &hw),
                now.gdc.status(&format!("{NODE_NAME}: gdc"), &hw),
                sh.workers.status(&format!("{NODE_NAME}: workers"), &hw, sh.stop.load(Ordering::Relaxed)),
            ];
            previous = now;
            let stamp = ros_now(&clock);
            let msg = DiagnosticArray {
                header: r2r::std_msgs::msg::Header { stamp, frame_id: String::new() },
                status: statuses.iter().map(convert::diagnostic_status).collect(),
            };
            if let Err(e) = diag_pub.publish(&msg) {
                tracing::warn!("publishing diagnostics failed: {e}");
            }
        }
    });

    let sh = shared.clone();
    let spinner = tokio::task::spawn_blocking(move || {
        while !sh.stop.load(Ordering::Relaxed) {
            node.spin_once(Duration::from_millis(20));
            // r2r hands service requests over through a channel of 10 that it
            // does not wait on: emptied here after every spin, none is lost
            drain_services();
        }
        // drop the node on this thread, after the last spin_once returned
        drop(node);
    });

    wait_for_shutdown().await;
    tracing::info!("shutting down");
    shared.stop.store(true, Ordering::Relaxed);
    shared.stopping.send_replace(true);
    diagnostics.abort();
    spinner.await?;
    for w in workers {
        let _ = w.join();
    }
    let _ = bank_status.join();
    let stats = lock(&shared.stats).clone();
    for (name, s, dropped) in [
        ("point clouds", &stats.cloud, shared.clouds.dropped()),
        ("images (raw and compressed)", &stats.image, shared.images.dropped()),
        ("compressed images", &stats.compressed_image, 0),
        ("camera infos", &stats.camera_info, 0),
    ] {
        tracing::info!(
            "{name}: received {}, processed {}, dropped {dropped}, malformed {}, decode mean {:.2} ms / max {:.2} ms, last {} elements",
            s.received, s.processed, s.malformed, s.decode.mean_ms(), s.decode.max_ms, s.last_elements
        );
    }
    let d = &stats.detector;
    tracing::info!(
        "detector {}: {} frames, {} failed, last frame {} detections; mean pillarize {:.1} ms, network {:.1} ms, postprocess {:.1} ms, total {:.1} ms (max {:.1} ms)",
        d.model_id, d.frames, d.failures, d.last_detections, d.pillarize.mean_ms(), d.network.mean_ms(), d.postprocess.mean_ms(), d.total.mean_ms(), d.total.max_ms
    );
    let e = &stats.eloss;
    tracing::info!(
        "eloss monitor: {} frames, calibrated {}, last Eloss {:.4e}, last score {:.3} (threshold {:.3}), alarms raised {}, mean {:.1} ms per frame",
        e.frames, e.uncalibrated.is_none(), e.last_eloss, e.last_score, e.threshold, e.alarms_raised, e.compute.mean_ms()
    );
    Ok(())
}

async fn wait_for_shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no SIGTERM handler ({e}); stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Loads the detector once (a failure is reported in diagnostics and the
/// node keeps decoding without detections).
fn load_pipeline(sh: &Shared, p: &NodeParams) -> Option<FramePipeline> {
    fail::fail_point!("detector_load");
    if p.detector.threads > 0 {
        // validated to 0..=MAX_DETECTOR_THREADS (params.rs)
        tch::set_num_threads(i32::try_from(p.detector.threads).unwrap_or(1));
    }
    let device = match p.detector.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" => tch::Device::Cuda(0),
        _ => crate::torch_cuda::cuda_if_available(),
    };
    let loaded = if matches!(device, tch::Device::Cuda(_)) && {
        crate::torch_cuda::load();
        !tch::Cuda::is_available()
    } {
        Err(format!("detector.device is cuda but no CUDA device is available (libtorch_cuda {})", crate::torch_cuda::load().describe()))
    } else {
        injected_load_allocation(device)
            .and_then(|()| p.eloss.settings().map_err(|e| e.to_string()))
            .and_then(|eloss| FramePipeline::load(&p.detector.model_path, device, &eloss).map_err(|e| e.to_string()))
            .and_then(|pipe| with_backend(pipe, p))
    };
    let mut stats = lock(&sh.stats);
    match loaded {
        Ok(pipe) => {
            tracing::info!(model = pipe.model_id(), ?device, backend = pipe.detector().backend(), "detector ready");
            stats.detector.model_id = pipe.model_id().to_string();
            stats.eloss.uncalibrated = pipe.uncalibrated_reason();
            if let Some(r) = &stats.eloss.uncalibrated {
                tracing::warn!("{r}");
            }
            Some(pipe)
        }
        Err(e) => {
            tracing::error!("detector not loaded: {e}");
            stats.detector.load_error = Some(e);
            None
        }
    }
}

/// `detector.backend`: onnxruntime moves the dense part onto ONNX Runtime
/// with the graph of `detector.onnx_path` (or `<model stem>.onnx` beside the
/// model); a graph that is missing, broken or made for other weights is a
/// detector that did not load, with the reason in diagnostics.
fn with_backend(mut pipe: FramePipeline, p: &NodeParams) -> Result<FramePipeline, String> {
    if p.detector.backend != "onnxruntime" {
        return Ok(pipe);
    }
    #[cfg(feature = "onnxruntime")]
    {
        let graph = match (p.detector.onnx_path.as_str(), p.detector.model_path.as_str()) {
            ("", "") => return Err("detector.backend onnxruntime needs detector.onnx_path for the embedded model (scripts/export_onnx.py)".into()),
            ("", model) => std::path::Path::new(model).with_extension("onnx"),
            (graph, _) => std::path::PathBuf::from(graph),
        };
        let threads = usize::try_from(p.detector.threads).unwrap_or(0);
        pipe.use_onnxruntime(&graph, threads).map_err(|e| e.to_string())?;
        Ok(pipe)
    }
    #[cfg(not(feature = "onnxruntime"))]
    {
        let _ = &mut pipe;
        Err("detector.backend onnxruntime: this build has no onnxruntime feature".into())
    }
}

/// Fail point `detector_load_alloc(BYTES)`: before loading, asks libtorch
/// for BYTES on the detector's device, so a test can make loading meet a
/// real allocation failure (out of memory); a no-op without the fail point.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn injected_load_allocation(device: tch::Device) -> Result<(), String> {
    fail::fail_point!("detector_load_alloc", |bytes: Option<String>| {
        let bytes = bytes.and_then(|b| b.parse::<i64>().ok()).unwrap_or(i64::MAX);
        tch::Tensor::f_empty([bytes], (tch::Kind::Uint8, device)).map(drop).map_err(|e| format!("allocating {bytes} bytes: {e}"))
    });
    Ok(())
}

fn cloud_worker(sh: &Shared, out: Outputs, heartbeat: &Heartbeat) {
    let params = lock(&sh.params).params.clone();
    // a panic while loading (CUDA out of memory, a libtorch error in tch's
    // infallible calls) is a detector that did not load: the worker goes on decoding
    let mut pipeline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_pipeline(sh, &params))).unwrap_or_else(|panic| {
        let e = format!("loading panicked: {}", crate::panic_message::panic_message(&*panic));
        tracing::error!("detector not loaded: {e}");
        lock(&sh.stats).detector.load_error = Some(e);
        None
    });
    while !sh.stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        let Some(msg) = sh.clouds.take_timeout(Duration::from_millis(100)) else { continue };
        let t = Instant::now();
        // validated when set (param_guard.rs): a snapshot for this frame
        let p = lock(&sh.params).params.clone();
        let (min_r, max_r) = (p.cloud.min_range_m as f32, p.cloud.max_range_m as f32);
        match convert::decode_cloud(&msg) {
            Ok((mut points, report)) => {
                points.retain_range(min_r, max_r);
                let elapsed = t.elapsed();
                tracing::debug!(points = points.len(), non_finite = report.non_finite, ?elapsed, "cloud decoded");
                lock(&sh.stats).cloud.record_ok(points.len() as u64, elapsed);
                if let Some(pipe) = &mut pipeline {
                    // a libtorch panic on one cloud is a failed frame, not a dead worker
                    let run = std::panic::AssertUnwindSafe(|| {
                        fail::fail_point!("detector_frame");
                        detect::detect_and_publish(sh, pipe, &p, &msg.header, &points, &out)
                    });
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        let e = crate::panic_message::panic_message(&*panic);
                        tracing::error!("detector panicked on a cloud of {} points: {e}", points.len());
                        let mut stats = lock(&sh.stats);
                        stats.detector.failures += 1;
                        stats.detector.last_error = Some(format!("panic: {e}"));
                    }
                }
            }
            Err(e) => {
                if let Some(n) = sh.log_limit.allow("malformed PointCloud2") {
                    tracing::warn!("malformed PointCloud2 (frame '{}'): {e}{}", crate::log_limit::printable(&msg.header.frame_id), suppressed_note(n));
                }
                lock(&sh.stats).cloud.record_malformed(e);
            }
        }
    }
}

fn ros_now(clock: &Mutex<r2r::Clock>) -> r2r::builtin_interfaces::msg::Time {
    lock(clock)
        .get_now()
        .map(|d| r2r::builtin_interfaces::msg::Time { sec: d.as_secs() as i32, nanosec: d.subsec_nanos() })
        .unwrap_or_default()
}

/// Most pixels a compressed image may declare in its header (decoding
/// stops before allocating more): 8K UHD.
pub const MAX_COMPRESSED_PIXELS: u64 = 7680 * 4320;

/// GDC finished loading without a classifier (no bank configured, or the
/// load failed): nothing will ever crop an image. While it loads, images are kept.
fn gdc_unavailable(sh: &Shared) -> bool {
    sh.gdc.get().is_some_and(|cell| cell.get().is_err())
}

fn image_worker(sh: &Shared, heartbeat: &Heartbeat) {
    while !sh.stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        let Some(msg) = sh.images.take_timeout(Duration::from_millis(100)) else { continue };
        let t = Instant::now();
        let compressed = matches!(msg, CameraImage::Compressed(_));
        let (header, decoded) = match &msg {
            CameraImage::Raw(m) => (&m.header, convert::decode_image(m).map_err(|e| e.to_string())),
            CameraImage::Compressed(m) => (&m.header, crate::image::decode_compressed(&m.format, &m.data, MAX_COMPRESSED_PIXELS).map_err(|e| e.to_string())),
        };
        match decoded {
            Ok(img) => {
                let pixels = img.width as u64 * img.height as u64;
                let elapsed = t.elapsed();
                // into the history before it counts as processed (tests wait on that count)
                // kept for GDC crops only: with GDC unavailable (not configured or failed
                // to load) a decoded image is counted and dropped
                if !gdc_unavailable(sh) {
                    let record = ImageRecord { stamp_ns: convert::stamp_ns(&header.stamp), frame_id: header.frame_id.clone(), image: Arc::new(img) };
                    lock(&sh.history).push_image(record);
                }
                let mut stats = lock(&sh.stats);
                stats.image.record_ok(pixels, elapsed);
                if compressed {
                    stats.compressed_image.record_ok(pixels, elapsed);
                }
            }
            Err(e) => {
                if let Some(n) = sh.log_limit.allow("malformed image") {
                    tracing::warn!("malformed {}: {e}{}", msg.describe(), suppressed_note(n));
                }
                let mut stats = lock(&sh.stats);
                stats.image.record_malformed(&e);
                if compressed {
                    stats.compressed_image.record_malformed(e);
                }
            }
        }
    }
}
