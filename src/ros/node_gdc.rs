//! The GDC part of `eloss_perception_node` (a child module of `node.rs`,
//! whose doc lists all topics and services): the `~/relabel` and
//! `~/add_classes` services, the `~/gdc_bank` status, the classifier's loader,
//! the class generator and `gdc.auto_relabel` in the cloud worker. Message
//! conversion and request handling are in `ros::relabel` and
//! `ros::add_classes`, the ROS-free logic in `crate::gdc`.

use super::{lock, ros_now, Shared, SERVICE_ADD_CLASSES, SERVICE_RELABEL, TOPIC_CAMERA_INFO, TOPIC_GDC_BANK};
use crate::ros::params::NodeParams;
use crate::dataset::kitti::Calibration;
use crate::geometry::Box3D;
use crate::ros::relabel::Gdc;
use crate::snapshot_cell::SnapshotCell;
use crate::stats::TransformSource;
use crate::workers::Heartbeat;
use futures::{FutureExt, StreamExt};
use r2r::eloss_perception_msgs::msg::GdcBankStatus;
use r2r::eloss_perception_msgs::srv::{AddClasses, RelabelObjects};
use r2r::QosProfile;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Creates `~/relabel`, `~/add_classes` and `~/gdc_bank`, then starts the GDC
/// loader, the class generator (when a generator is configured) and the
/// bank-status publisher, whose thread is returned so shutdown can join it,
/// with the drain of the service requests that the spin thread calls after
/// every spin (each request then runs on its own task).
pub(super) fn spawn(node: &mut r2r::Node, shared: &Arc<Shared>, clock: &Arc<Mutex<r2r::Clock>>) -> anyhow::Result<(JoinHandle<()>, Box<dyn FnMut() + Send>)> {
    // r2r takes one request per service per spin: a burst beyond the default
    // depth of 10 would be dropped by rmw before the node ever saw it
    let queue = QosProfile::services_default().keep_last(SERVICE_QUEUE_DEPTH);
    let mut relabel_requests = node.create_service::<RelabelObjects::Service>(SERVICE_RELABEL, queue.clone())?;
    let mut add_class_requests = node.create_service::<AddClasses::Service>(SERVICE_ADD_CLASSES, queue)?;
    let bank_pub = node.create_publisher::<GdcBankStatus>(TOPIC_GDC_BANK, QosProfile::default().keep_last(1).transient_local())?;
    // GDC loads off the async threads (weights can take seconds); relabel
    // requests arriving before it finished wait for it (until the node
    // stops), a failed (or panicking) load answers every request with the reason
    let gdc_params = lock(&shared.params).gdc.clone();
    let sh = shared.clone();
    let gdc_loader = tokio::task::spawn_blocking(move || load_gdc(&sh, &gdc_params));
    let (loaded, gdc_ready) = tokio::sync::watch::channel(false);
    let sh = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = gdc_loader.await {
            // load_gdc catches panics in the loader; this is one in its bookkeeping
            set_gdc(&sh, Err(format!("the GDC loader failed: {e}")));
        }
        loaded.send_replace(true);
    });
    let relabel_slots = Arc::new(Semaphore::new(MAX_RELABEL_IN_FLIGHT));
    let relabel_running = Arc::new(Semaphore::new(MAX_RELABEL_RUNNING));
    let add_class_slots = Arc::new(Semaphore::new(MAX_ADD_CLASSES_IN_FLIGHT));
    let runtime = tokio::runtime::Handle::current();
    let (mut relabel_service, mut add_classes_service) =
        (Some(shared.workers.register("relabel service", None)), Some(shared.workers.register("add_classes service", None)));
    let sh = shared.clone();
    // on the spin thread after every spin: each request is answered "busy" at
    // once beyond the in-flight limits, else handled on its own task
    let drain = move || {
        while let Some(next) = relabel_requests.next().now_or_never() {
            let Some(req) = next else {
                relabel_service = None; // the stream ended: an exited worker
                break;
            };
            let Ok(slot) = relabel_slots.clone().try_acquire_owned() else {
                lock(&sh.stats).gdc.busy_requests += 1;
                let error = format!("busy: {MAX_RELABEL_IN_FLIGHT} relabel requests in flight; retry later");
                if let Err(e) = req.respond(RelabelObjects::Response { success: false, error, labels: vec![] }) {
                    tracing::warn!("relabel response not delivered: {e}");
                }
                continue;
            };
            let (sh, running, mut gdc_ready) = (sh.clone(), relabel_running.clone(), gdc_ready.clone());
            runtime.spawn(async move {
                let _slot = slot;
                let message = req.message.clone();
                let work = async {
                    let _ = gdc_ready.wait_for(|ready| *ready).await;
                    let Ok(_permit) = running.acquire_owned().await else { unreachable!("the semaphore is never closed") };
                    let sh = sh.clone();
                    tokio::task::spawn_blocking(move || relabel(&sh, &message))
                        .await
                        .unwrap_or_else(|e| RelabelObjects::Response { success: false, error: format!("internal error: {e}"), labels: vec![] })
                };
                let response = tokio::select! {
                    r = work => r,
                    _ = sh.stopped() => RelabelObjects::Response { success: false, error: "the node is shutting down".into(), labels: vec![] },
                };
                if let Err(e) = req.respond(response) {
                    tracing::warn!("relabel response not delivered: {e}");
                }
            });
        }
        while let Some(next) = add_class_requests.next().now_or_never() {
            let Some(req) = next else {
                add_classes_service = None;
                break;
            };
            // each request on its own task: one that waits for its classes must not hold up the next;
            // the waits are bounded (each holds a blocking thread) and end when the node stops
            let Ok(slot) = add_class_slots.clone().try_acquire_owned() else {
                lock(&sh.stats).gdc.busy_requests += 1;
                let error = format!("busy: {MAX_ADD_CLASSES_IN_FLIGHT} add_classes requests in flight; retry later");
                if let Err(e) = req.respond(AddClasses::Response { success: false, error, estimated_seconds: f64::NAN, ..Default::default() }) {
                    tracing::warn!("add_classes response not delivered: {e}");
                }
                continue;
            };
            let sh = sh.clone();
            runtime.spawn(async move {
                let _slot = slot;
                let message = req.message.clone();
                let response = tokio::task::spawn_blocking(move || {
                    let per_class = sh.generator.as_ref().map_or(0, |g| g.per_class);
                    crate::ros::add_classes::handle(sh.generator.as_ref().map(|_| &sh.class_queue), sh.gdc.get(), per_class, &sh.stop, &message)
                })
                .await
                .unwrap_or_else(|e| AddClasses::Response { success: false, error: format!("internal error: {e}"), estimated_seconds: f64::NAN, ..Default::default() });
                if let Err(e) = req.respond(response) {
                    tracing::warn!("add_classes response not delivered: {e}");
                }
            });
        }
        let _alive = (&relabel_service, &add_classes_service);
    };
    if shared.generator.is_some() {
        // not joined at shutdown: a class in generation may take minutes, and
        // the images already made stay in the cache for the next start
        shared.workers.spawn("class-generator", Some(super::CLASS_GENERATOR_STALL), {
            let sh = shared.clone();
            move |heartbeat| class_generator(&sh, heartbeat)
        })?;
    }
    let bank_status = shared.workers.spawn("gdc-bank-status", Some(super::WORKER_STALL), {
        let (sh, clock) = (shared.clone(), clock.clone());
        move |heartbeat| publish_bank_status(&sh, &bank_pub, &clock, heartbeat)
    })?;
    Ok((bank_status, Box::new(drain)))
}

/// Requests rmw holds for a service until the node takes them (each then
/// answered at once, "busy" beyond the limits below).
pub const SERVICE_QUEUE_DEPTH: usize = 100;
/// Relabel requests classified at the same time (each on a blocking thread).
pub const MAX_RELABEL_RUNNING: usize = 2;
/// Relabel requests running or waiting to run; more are answered "busy".
pub const MAX_RELABEL_IN_FLIGHT: usize = 6;
/// add_classes requests in flight (with `wait`, each holds a blocking
/// thread until its classes are done); more are answered "busy".
pub const MAX_ADD_CLASSES_IN_FLIGHT: usize = 16;

/// Loads the classifier (a panic in the loader is a failed load, with its
/// message), reports it in the diagnostics, queues the start-up classes the
/// bank lacks and publishes it to the services.
fn load_gdc(sh: &Shared, gdc_params: &crate::ros::params::GdcParams) {
    {
        let mut stats = lock(&sh.stats);
        stats.gdc.configured = !gdc_params.bank_path.is_empty();
        stats.gdc.generator = sh.generator.is_some();
    }
    let g = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fail::fail_point!("gdc_load");
        crate::ros::relabel::load(gdc_params)
    }))
        .unwrap_or_else(|panic| Err(format!("the GDC loader panicked: {}", crate::panic_message::panic_message(&*panic))));
    match &g {
        Ok((c, _)) => tracing::info!("GDC ready: {} classes, backbone {}", c.bank().len(), c.bank().spec().backbone),
        Err(e) if gdc_params.auto_relabel => tracing::warn!("gdc.auto_relabel is on, but {e}"),
        Err(e) if gdc_params.bank_path.is_empty() => tracing::info!("{e}"),
        Err(e) => tracing::error!("{e}"),
    }
    // start-up classes (gdc.generator.classes) the bank lacks go to the generator
    let startup = gdc_params.generator.class_names();
    if let (Ok((c, _)), Some(settings), false) = (&g, &sh.generator, startup.is_empty()) {
        let have: Vec<String> = c.bank().class_names().into_iter().map(String::from).collect();
        match sh.class_queue.enqueue(&startup, &have, settings.per_class) {
            Ok(e) if !e.queued.is_empty() => tracing::info!("generating start-up classes {:?}", e.queued),
            Ok(_) => {}
            Err(e) => tracing::error!("gdc.generator.classes: {e}"),
        }
    }
    set_gdc(sh, g);
}

/// The loader's outcome, to the services and the diagnostics (once: a
/// second call changes nothing).
fn set_gdc(sh: &Shared, g: Gdc) {
    let (bank, backbone, bytes) = match &g {
        Ok((c, _)) => (Ok(c.bank().len()), c.bank().spec().backbone.clone(), c.bank().bytes()),
        Err(e) => (Err(e.clone()), String::new(), 0),
    };
    if bank.is_err() {
        // images kept while GDC was loading will never be cropped
        lock(&sh.history).clear_images();
    }
    if sh.gdc.set(SnapshotCell::new(g)).is_ok() {
        let mut stats = lock(&sh.stats);
        stats.gdc.bank = Some(bank);
        stats.gdc.backbone = backbone;
        stats.gdc.bank_bytes = bytes;
    }
}

/// The camera calibration for crops of boxes in `boxes_frame` seen in an
/// image from `image_frame`: the newest CameraInfo's P with the extrinsic
/// camera optical frame ← `boxes_frame` from tf at `stamp_ns`. When tf has no
/// such transform and the boxes are in the LiDAR's own frame
/// (`detector.frame` empty), the `camera.*` parameters are the explicit
/// fallback (a warning in the log and the frames diagnostics). An image from
/// another frame than the CameraInfo, or boxes tf cannot place, are frame
/// errors (ERROR in the frames diagnostics), never a silent wrong crop.
fn camera_calibration(sh: &Shared, p: &NodeParams, boxes_frame: &str, image_frame: &str, stamp_ns: i64) -> Result<Calibration, String> {
    let (camera, camera_frame) = lock(&sh.camera)
        .clone()
        .ok_or_else(|| format!("no valid CameraInfo received on '{TOPIC_CAMERA_INFO}' yet: 3D boxes cannot be projected into the image"))?;
    let frame_error = |e: String| {
        lock(&sh.stats).frames.record_error(&e);
        e
    };
    if !image_frame.is_empty() && !camera_frame.is_empty() && image_frame != camera_frame {
        return Err(frame_error(format!(
            "the image's frame '{}' is not the CameraInfo's '{}': no crops",
            crate::log_limit::printable(image_frame),
            crate::log_limit::printable(&camera_frame)
        )));
    }
    let from_tf = if camera_frame.is_empty() {
        Err("the CameraInfo has no frame_id".to_string())
    } else {
        super::frames::lookup(sh, &camera_frame, boxes_frame, stamp_ns, Duration::ZERO)
    };
    let (extrinsic, source) = match from_tf {
        Ok(iso) => (super::frames::matrix_3x4(&iso), TransformSource::Tf),
        Err(e) if p.detector.frame.is_empty() => {
            if let Some(n) = sh.log_limit.allow("camera extrinsic fallback") {
                tracing::warn!("{e}; using camera.lidar_to_camera / camera.calib_file{}", crate::log_limit::suppressed_note(n));
            }
            let m = lock(&sh.params).camera_extrinsic()?; // resolved when set, never re-read here
            (m, TransformSource::Parameter { name: "camera.lidar_to_camera", why: e })
        }
        Err(e) => return Err(frame_error(format!("{e}: no crops (the camera parameters describe the LiDAR frame, not '{}')", crate::log_limit::printable(boxes_frame)))),
    };
    lock(&sh.stats).frames.camera_extrinsic = source;
    Ok(Calibration::from_camera(camera.p, extrinsic))
}

/// `gdc.auto_relabel`: GDC labels for the frame's detections from the image
/// nearest to the cloud (no waiting for a later one). A frame that cannot be
/// labelled (GDC not loaded, no image, no CameraInfo) is published without
/// labels and counted with its reason in the detector diagnostics.
pub(super) fn auto_relabel(sh: &Shared, p: &NodeParams, stamp_ns: i64, frame: &str, boxes: &[Box3D], array: &mut r2r::eloss_perception_msgs::msg::Detection3DArray) {
    let t = Instant::now();
    let outcome = (|| -> Result<usize, String> {
        // a snapshot: a relabel request or a class being added never holds this frame up
        let gdc = sh.gdc.get().ok_or("GDC is still loading")?.get();
        let record = lock(&sh.history).image_near(stamp_ns, p.gdc.max_image_lag_s).map_err(|e| e.to_string())?.clone();
        let calib = camera_calibration(sh, p, frame, &record.frame_id, stamp_ns)?;
        let image = record.image;
        let (shared, crop_cfg) = gdc.as_ref().as_ref().map_err(Clone::clone)?;
        // this frame's settings on a copy (encoder and bank stay shared)
        let mut classifier = shared.clone();
        crate::ros::relabel::apply_settings(&mut classifier, &p.gdc);
        crate::ros::relabel::attach_labels(&classifier, crop_cfg, &image, &calib, boxes, &mut array.detections)
    })();
    let mut stats = lock(&sh.stats);
    match outcome {
        Ok(crops) => stats.detector.record_gdc(crops as u64, t.elapsed()),
        Err(e) => {
            tracing::debug!("auto relabel skipped: {e}");
            stats.detector.record_gdc_skip(e);
        }
    }
}

/// A `~/relabel` request (on a blocking thread).
fn relabel(sh: &Shared, req: &RelabelObjects::Request) -> RelabelObjects::Response {
    let Some(gdc) = sh.gdc.get() else {
        return RelabelObjects::Response { success: false, error: "GDC is still loading".into(), labels: vec![] };
    };
    let t = Instant::now();
    // the request's settings on a copy of the snapshot (encoder and bank stay shared)
    let gdc_params = lock(&sh.params).params.gdc.clone();
    let mut current: crate::ros::relabel::Gdc = (*gdc.get()).clone();
    if let Ok((classifier, _)) = current.as_mut() {
        crate::ros::relabel::apply_settings(classifier, &gdc_params);
    }
    let response = crate::ros::relabel::handle(&current, req, |stamp_ns, ids| {
        let p = lock(&sh.params).params.clone();
        // the history lock is held for the lookup only (boxes copied, image shared)
        let selection = lock(&sh.history).select(stamp_ns, ids, p.gdc.max_image_lag_s).map_err(|e| e.to_string())?;
        let calib = camera_calibration(sh, &p, &selection.frame_id, &selection.image.frame_id, selection.stamp_ns)?;
        Ok((selection, calib))
    });
    let crops = response.labels.iter().filter(|l| l.valid).count();
    tracing::debug!(success = response.success, crops, elapsed = ?t.elapsed(), "relabel request");
    let mut stats = lock(&sh.stats);
    stats.gdc.requests += 1;
    stats.gdc.request.record(t.elapsed());
    if !response.success {
        stats.gdc.failed_requests += 1;
        stats.gdc.last_error = Some(response.error.clone());
    }
    drop(stats);
    response
}

/// Generates queued classes (once GDC has loaded) and adds them to the bank.
fn class_generator(sh: &Shared, heartbeat: &Heartbeat) {
    let Some(settings) = &sh.generator else { return };
    let gdc = loop {
        if let Some(g) = sh.gdc.get() {
            break g;
        }
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        heartbeat.beat();
        std::thread::sleep(Duration::from_millis(50));
    };
    let save_path = lock(&sh.params).gdc.generator.save_bank_path.clone();
    sh.class_queue.run_worker(settings, &sh.stop, &|| heartbeat.beat(), &mut |set| {
        let update = crate::ros::add_classes::add_to_bank(gdc, set, &save_path)?;
        let mut stats = lock(&sh.stats);
        (stats.gdc.bank, stats.gdc.bank_bytes, stats.gdc.bank_save_error) = (Some(Ok(update.classes)), update.bytes, update.save_error.clone());
        // a class that would not survive a restart is a failed class in ~/gdc_bank and ~/add_classes (it is usable meanwhile)
        update.save_error.map_or(Ok(()), Err)
    });
}

/// Publishes `~/gdc_bank` when GDC has loaded and on every queue change.
fn publish_bank_status(sh: &Shared, publisher: &r2r::Publisher<GdcBankStatus>, clock: &Mutex<r2r::Clock>, heartbeat: &Heartbeat) {
    let mut published: Option<u64> = None;
    while !sh.stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        let status = sh.class_queue.wait_change(published.unwrap_or(u64::MAX), Duration::from_millis(100));
        let Some(gdc) = sh.gdc.get() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if published == Some(status.version) {
            continue;
        }
        // no bank (GDC off or broken): an empty class list; diagnostics say why
        let classes = crate::ros::add_classes::bank_classes(gdc).unwrap_or_default();
        let stamp = ros_now(clock);
        let generator = sh.generator.as_ref().map(|g| g.generator_dir.display().to_string()).unwrap_or_default();
        if let Err(e) = publisher.publish(&crate::ros::add_classes::bank_status(stamp, classes, &generator, &status)) {
            tracing::warn!("publishing the GDC bank status failed: {e}");
        }
        published = Some(status.version);
    }
}
