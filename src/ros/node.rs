//! `eloss_perception_node`: subscriptions, newest-frame workers, diagnostics.
//!
//! Concurrency (r2r + tokio): the r2r node spins on a blocking thread; each
//! subscription stream is drained at once by a tokio task into a
//! [`LatestSlot`] (r2r's own queue drops *new* messages when full, so we must
//! never let it fill); a worker thread per sensor decodes only the newest
//! frame. A malformed message is counted and logged, never fatal.
//!
//! Topics (relative names, so namespaces and `-r from:=to` remaps apply):
//! inputs `points` (PointCloud2), `image` (Image), `camera_info` (CameraInfo),
//! all with sensor-data QoS; outputs `detections` (Detection3DArray) and
//! `markers` (MarkerArray for RViz) and `eloss` (ElossReport: the Eloss
//! anomaly report of the same forward pass) per cloud, in the cloud's frame
//! and with its stamp, and `/diagnostics` (DiagnosticArray, incl. detector
//! latency and the anomaly alarm);
//! services `~/relabel` (RelabelObjects, GDC labels for image crops) and
//! `~/add_classes` (AddClasses: new GDC classes from their names through the
//! configured generator, in the background), with `~/gdc_bank`
//! (GdcBankStatus, transient local) reporting the bank's classes and the
//! generation queue.
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
use super::detections::{detection_array, marker_array};
use super::params::NodeParams;
use super::relabel::Gdc;
use crate::gdc::generator::class_queue::{ClassQueue, GeneratorSettings};
use crate::perception::FramePipeline;
use crate::camera::PinholeCamera;
use crate::cloud::Points;
use crate::frame_slot::LatestSlot;
use crate::gdc::frame_history::{FrameHistory, FrameRecord, ImageRecord};
use crate::geometry::Box3D;
use crate::stats::{DetectorStats, ElossStats, GdcStats, InputStats};
use anyhow::Context as _;
use futures::StreamExt;
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::eloss_perception_msgs::msg::{Detection3DArray, ElossReport};
use r2r::visualization_msgs::msg::MarkerArray;
use r2r::sensor_msgs::msg::{CameraInfo, Image, PointCloud2};
use r2r::QosProfile;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

#[path = "node_gdc.rs"]
mod gdc;

pub const NODE_NAME: &str = "eloss_perception_node";
pub const TOPIC_POINTS: &str = "points";
pub const TOPIC_IMAGE: &str = "image";
pub const TOPIC_CAMERA_INFO: &str = "camera_info";
pub const TOPIC_DIAGNOSTICS: &str = "/diagnostics";
pub const TOPIC_DETECTIONS: &str = "detections";
pub const TOPIC_MARKERS: &str = "markers";
pub const TOPIC_ELOSS: &str = "eloss";
pub const SERVICE_RELABEL: &str = "~/relabel";
pub const SERVICE_ADD_CLASSES: &str = "~/add_classes";
pub const TOPIC_GDC_BANK: &str = "~/gdc_bank";

#[derive(Default, Clone)]
struct Stats {
    cloud: InputStats,
    image: InputStats,
    camera_info: InputStats,
    detector: DetectorStats,
    eloss: ElossStats,
    gdc: GdcStats,
}

/// What the cloud worker publishes.
struct Outputs {
    detections: r2r::Publisher<Detection3DArray>,
    markers: r2r::Publisher<MarkerArray>,
    eloss: r2r::Publisher<ElossReport>,
}

struct Shared {
    params: Arc<Mutex<NodeParams>>,
    clouds: LatestSlot<PointCloud2>,
    images: LatestSlot<Image>,
    stats: Mutex<Stats>,
    /// Recent frames and decoded images, for ~/relabel by id and auto relabelling.
    history: Mutex<FrameHistory>,
    /// The newest valid CameraInfo.
    camera: Mutex<Option<PinholeCamera>>,
    /// The GDC classifier once its loader finished (or why there is none).
    gdc: OnceLock<Mutex<Gdc>>,
    /// Classes asked for through ~/add_classes, generated one at a time.
    class_queue: ClassQueue,
    /// How they are generated; None = no generator configured.
    generator: Option<GeneratorSettings>,
    stop: AtomicBool,
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

    let defaults = NodeParams::defaults().context("compiled-in defaults")?;
    let params = Arc::new(Mutex::new(defaults));
    let (param_handler, mut param_events) = node
        .make_derived_parameter_handler(params.clone())
        .context("parameters (check --params-file values and types)")?;
    lock(&params).validate().context("invalid parameters")?;
    tokio::spawn(param_handler);

    let history = FrameHistory::new(usize::try_from(lock(&params).gdc.history_frames).unwrap_or(1));
    let shared = Arc::new(Shared {
        params: params.clone(),
        clouds: LatestSlot::new(),
        images: LatestSlot::new(),
        stats: Mutex::new(Stats::default()),
        history: Mutex::new(history),
        camera: Mutex::new(None),
        gdc: OnceLock::new(),
        class_queue: ClassQueue::new(),
        generator: super::add_classes::settings(&lock(&params).gdc),
        stop: AtomicBool::new(false),
    });

    let qos = QosProfile::sensor_data();
    let mut clouds = node.subscribe::<PointCloud2>(TOPIC_POINTS, qos.clone())?;
    let mut images = node.subscribe::<Image>(TOPIC_IMAGE, qos.clone())?;
    let mut infos = node.subscribe::<CameraInfo>(TOPIC_CAMERA_INFO, qos)?;
    let diag_pub = node.create_publisher::<DiagnosticArray>(TOPIC_DIAGNOSTICS, QosProfile::default())?;
    let outputs = Outputs {
        detections: node.create_publisher::<Detection3DArray>(TOPIC_DETECTIONS, QosProfile::default())?,
        markers: node.create_publisher::<MarkerArray>(TOPIC_MARKERS, QosProfile::default())?,
        eloss: node.create_publisher::<ElossReport>(TOPIC_ELOSS, QosProfile::default())?,
    };
    let clock = node.get_ros_clock();
    let bank_status = gdc::spawn(&mut node, &shared, &clock)?;
    tracing::info!(node = %node.fully_qualified_name()?, "started; params: {:?}", lock(&params));

    let sh = shared.clone();
    tokio::spawn(async move {
        while let Some(msg) = clouds.next().await {
            lock(&sh.stats).cloud.received += 1;
            sh.clouds.put(msg);
        }
    });
    let sh = shared.clone();
    tokio::spawn(async move {
        while let Some(msg) = images.next().await {
            lock(&sh.stats).image.received += 1;
            sh.images.put(msg);
        }
    });
    let sh = shared.clone();
    tokio::spawn(async move {
        while let Some(msg) = infos.next().await {
            let t = Instant::now();
            let result = convert::decode_camera_info(&msg);
            let mut stats = lock(&sh.stats);
            stats.camera_info.received += 1;
            match result {
                Ok(cam) => {
                    stats.camera_info.record_ok(1, t.elapsed());
                    *lock(&sh.camera) = Some(cam);
                }
                Err(e) => {
                    tracing::warn!("malformed CameraInfo: {e}");
                    stats.camera_info.record_malformed(e);
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some((name, value)) = param_events.next().await {
            tracing::info!("parameter {name} set to {value:?}");
        }
    });

    let workers = [
        std::thread::Builder::new().name("cloud-worker".into()).spawn({
            let sh = shared.clone();
            move || cloud_worker(&sh, outputs)
        })?,
        std::thread::Builder::new().name("image-worker".into()).spawn({
            let sh = shared.clone();
            move || image_worker(&sh)
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
            let period = if period.is_finite() && period > 0.0 { period } else { 1.0 };
            tokio::time::sleep(Duration::from_secs_f64(period)).await;
            let queue = sh.class_queue.status();
            let now = {
                let mut stats = lock(&sh.stats);
                stats.cloud.dropped = sh.clouds.dropped();
                stats.image.dropped = sh.images.dropped();
                (stats.gdc.pending_classes, stats.gdc.failed_classes) = (queue.pending.len(), queue.failed.len());
                stats.clone()
            };
            let statuses = [
                now.cloud.status(&format!("{NODE_NAME}: point cloud input"), &hw, &previous.cloud),
                now.image.status(&format!("{NODE_NAME}: image input"), &hw, &previous.image),
                now.camera_info.status(&format!("{NODE_NAME}: camera info input"), &hw, &previous.camera_info),
                now.detector.status(&format!("{NODE_NAME}: detector"), &hw, &previous.detector),
                now.eloss.status(&format!("{NODE_NAME}: eloss monitor"), &hw),
                now.gdc.status(&format!("{NODE_NAME}: gdc"), &hw),
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
        }
        // drop the node on this thread, after the last spin_once returned
        drop(node);
    });

    wait_for_shutdown().await;
    tracing::info!("shutting down");
    shared.stop.store(true, Ordering::Relaxed);
    diagnostics.abort();
    spinner.await?;
    for w in workers {
        let _ = w.join();
    }
    let _ = bank_status.join();
    let stats = lock(&shared.stats).clone();
    for (name, s, dropped) in [
        ("point clouds", &stats.cloud, shared.clouds.dropped()),
        ("images", &stats.image, shared.images.dropped()),
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

/// Parameters may be changed at run time through the ROS parameter services;
/// a change that fails validation is logged once and ignored.
struct ValidParams {
    valid: NodeParams,
    rejected: Option<NodeParams>,
}

impl ValidParams {
    fn current(&mut self, sh: &Shared) -> &NodeParams {
        let p = lock(&sh.params).clone();
        if p != self.valid && self.rejected.as_ref() != Some(&p) {
            match p.validate() {
                Ok(()) => {
                    self.valid = p;
                    self.rejected = None;
                }
                Err(e) => {
                    tracing::error!("ignoring parameter change: {e}; keeping the previous values");
                    self.rejected = Some(p);
                }
            }
        }
        &self.valid
    }
}

/// Loads the detector once (a failure is reported in diagnostics and the
/// node keeps decoding without detections).
fn load_pipeline(sh: &Shared, p: &NodeParams) -> Option<FramePipeline> {
    if p.detector.threads > 0 {
        tch::set_num_threads(p.detector.threads as i32);
    }
    let device = match p.detector.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" => tch::Device::Cuda(0),
        _ => tch::Device::cuda_if_available(),
    };
    let loaded = if matches!(device, tch::Device::Cuda(_)) && !tch::Cuda::is_available() {
        Err("detector.device is cuda but no CUDA device is available".to_string())
    } else {
        p.eloss.settings().map_err(|e| e.to_string()).and_then(|eloss| FramePipeline::load(&p.detector.model_path, device, &eloss).map_err(|e| e.to_string()))
    };
    let mut stats = lock(&sh.stats);
    match loaded {
        Ok(pipe) => {
            tracing::info!(model = pipe.model_id(), ?device, "detector ready");
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

fn cloud_worker(sh: &Shared, out: Outputs) {
    let mut params = ValidParams { valid: lock(&sh.params).clone(), rejected: None };
    let mut pipeline = load_pipeline(sh, params.current(sh));
    while !sh.stop.load(Ordering::Relaxed) {
        let Some(msg) = sh.clouds.take_timeout(Duration::from_millis(100)) else { continue };
        let t = Instant::now();
        let p = params.current(sh).clone();
        let (min_r, max_r) = (p.cloud.min_range_m as f32, p.cloud.max_range_m as f32);
        match convert::decode_cloud(&msg) {
            Ok((mut points, report)) => {
                points.retain_range(min_r, max_r);
                let elapsed = t.elapsed();
                tracing::debug!(points = points.len(), non_finite = report.non_finite, ?elapsed, "cloud decoded");
                lock(&sh.stats).cloud.record_ok(points.len() as u64, elapsed);
                if let Some(pipe) = &mut pipeline {
                    // a libtorch panic on one cloud is a failed frame, not a dead worker
                    let run = std::panic::AssertUnwindSafe(|| detect_and_publish(sh, pipe, &p, &msg.header, &points, &out));
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
                tracing::warn!("malformed PointCloud2 (frame '{}'): {e}", msg.header.frame_id);
                lock(&sh.stats).cloud.record_malformed(e);
            }
        }
    }
}

/// Detects and publishes; the frame's boxes (index = detection id) enter the
/// history before the detections are published, so a client that saw them
/// can relabel them at once.
fn detect_and_publish(sh: &Shared, pipe: &mut FramePipeline, p: &NodeParams, header: &r2r::std_msgs::msg::Header, points: &Points, out: &Outputs) {
    let t = Instant::now();
    let result = match pipe.process(points, p.detector.score_threshold as f32) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("detector failed on a cloud of {} points: {e}", points.len());
            let mut stats = lock(&sh.stats);
            stats.detector.failures += 1;
            stats.detector.last_error = Some(e.to_string());
            return;
        }
    };
    let names = pipe.class_names();
    let boxes: Vec<Box3D> = result.detections.iter().map(|d| d.bbox).collect();
    let stamp_ns = convert::stamp_ns(&header.stamp);
    let mut array = detection_array(header, pipe.model_id(), &result.detections, &names);
    if p.gdc.auto_relabel {
        gdc::auto_relabel(sh, p, stamp_ns, &boxes, &mut array);
    }
    {
        let mut history = lock(&sh.history);
        history.set_capacity(usize::try_from(p.gdc.history_frames).unwrap_or(1));
        history.push_frame(FrameRecord { stamp_ns, frame_id: header.frame_id.clone(), boxes });
    }
    if let Err(e) = out.detections.publish(&array) {
        tracing::warn!("publishing detections failed: {e}");
    }
    if let Err(e) = out.markers.publish(&marker_array(header, &result.detections, &names, p.detector.marker_lifetime_s)) {
        tracing::warn!("publishing markers failed: {e}");
    }
    match &result.eloss {
        Ok(report) => {
            if let Err(e) = out.eloss.publish(&super::detections::eloss_report(header, pipe.model_id(), report)) {
                tracing::warn!("publishing the Eloss report failed: {e}");
            }
        }
        Err(e) => tracing::warn!("Eloss failed: {e}"),
    }
    let mut stats = lock(&sh.stats);
    let s = &mut stats.eloss;
    match &result.eloss {
        Ok(r) => {
            s.frames += 1;
            if r.anomaly && !s.alarm {
                s.alarms_raised += 1;
                tracing::warn!(score = r.anomaly_score, threshold = r.threshold, kind = %r.anomaly_type, "Eloss anomaly alarm raised");
            }
            (s.last_eloss, s.last_score, s.threshold, s.alarm) = (r.eloss, r.anomaly_score, r.threshold, r.anomaly);
            s.alarm_type = r.anomaly_type.clone();
            s.compute.record(r.compute_time);
        }
        Err(e) => {
            s.failures += 1;
            s.last_error = Some(e.clone());
        }
    }
    let d = &mut stats.detector;
    d.frames += 1;
    d.last_detections = result.detections.len() as u64;
    d.pillarize.record(result.timings.pillarize);
    d.network.record(result.timings.network);
    d.postprocess.record(result.timings.postprocess);
    d.total.record(t.elapsed());
}

fn ros_now(clock: &Mutex<r2r::Clock>) -> r2r::builtin_interfaces::msg::Time {
    lock(clock)
        .get_now()
        .map(|d| r2r::builtin_interfaces::msg::Time { sec: d.as_secs() as i32, nanosec: d.subsec_nanos() })
        .unwrap_or_default()
}

fn image_worker(sh: &Shared) {
    while !sh.stop.load(Ordering::Relaxed) {
        let Some(msg) = sh.images.take_timeout(Duration::from_millis(100)) else { continue };
        let t = Instant::now();
        match convert::decode_image(&msg) {
            Ok(img) => {
                let pixels = img.width as u64 * img.height as u64;
                let elapsed = t.elapsed();
                // into the history before it counts as processed (tests wait on that count)
                let record = ImageRecord { stamp_ns: convert::stamp_ns(&msg.header.stamp), frame_id: msg.header.frame_id, image: Arc::new(img) };
                lock(&sh.history).push_image(record);
                lock(&sh.stats).image.record_ok(pixels, elapsed);
            }
            Err(e) => {
                tracing::warn!("malformed Image (encoding '{}'): {e}", msg.encoding);
                lock(&sh.stats).image.record_malformed(e);
            }
        }
    }
}
