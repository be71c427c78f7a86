//! The `~/add_classes` service (eloss_perception_msgs/srv/AddClasses) and
//! the `~/gdc_bank` status topic (GdcBankStatus): zero-shot classes added to
//! the running node's GDC bank from their names, through the
//! [`ClassQueue`] and the generator named by `gdc.generator.*`.
//! Requests return at once (or, with `wait`, when their classes are done);
//! every failure is an error response or a `failed_*` entry, never a crash.

use super::params::GdcParams;
use super::relabel::Gdc;
use crate::gdc::bank_builder::read_rgb;
use crate::gdc::generator::class_images::ClassImages;
use crate::gdc::generator::class_queue::{ClassQueue, GeneratorSettings, QueueStatus};
use r2r::builtin_interfaces::msg::Time;
use r2r::eloss_perception_msgs::msg::GdcBankStatus;
use r2r::eloss_perception_msgs::srv::AddClasses;
use crate::snapshot_cell::SnapshotCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Generation settings from the parameters; None when no generator is configured.
pub fn settings(p: &GdcParams) -> Option<GeneratorSettings> {
    let g = &p.generator;
    if g.path.is_empty() {
        return None;
    }
    let cache_root = if !g.cache_dir.is_empty() {
        PathBuf::from(&g.cache_dir)
    } else if !p.bank_path.is_empty() {
        PathBuf::from(format!("{}.images", p.bank_path))
    } else if !g.save_bank_path.is_empty() {
        PathBuf::from(format!("{}.images", g.save_bank_path))
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache/eloss_perception/generated_images")
    };
    Some(GeneratorSettings {
        generator_dir: PathBuf::from(&g.path),
        cache_root,
        per_class: usize::try_from(g.per_class).unwrap_or(2),
        templates: g.templates.clone(),
        steps: usize::try_from(g.steps).unwrap_or(1),
        guidance: g.guidance,
        size: (g.size > 0).then_some(g.size),
        seed: u64::try_from(g.seed).unwrap_or(0),
        batch: usize::try_from(g.batch).unwrap_or(1),
        device: crate::torch_cuda::cuda_if_available(),
    })
}

/// How often a waiting request checks whether the node is stopping.
const STOP_CHECK: Duration = Duration::from_millis(100);

fn failure(error: String) -> AddClasses::Response {
    AddClasses::Response { success: false, error, estimated_seconds: f64::NAN, ..Default::default() }
}

/// The bank's class names, or why there is no bank.
pub(crate) fn bank_classes(gdc: &SnapshotCell<Gdc>) -> Result<Vec<String>, String> {
    match &*gdc.get() {
        Ok((c, _)) => Ok(c.bank().class_names().into_iter().map(String::from).collect()),
        Err(e) => Err(e.clone()),
    }
}

/// Answers a request (blocking: with `wait` it returns when the classes are
/// done, or with an error once `stop` is set: the node is shutting down).
/// `queue` is None without a generator, `gdc` None while GDC is still loading.
pub fn handle(queue: Option<&ClassQueue>, gdc: Option<&SnapshotCell<Gdc>>, per_class: usize, stop: &AtomicBool, req: &AddClasses::Request) -> AddClasses::Response {
    let Some(queue) = queue else {
        return failure("no generator configured: set gdc.generator.path to a diffusers folder (docs/generators.md)".into());
    };
    let Some(gdc) = gdc else { return failure("GDC is still loading".into()) };
    let before = match bank_classes(gdc) {
        Ok(c) => c,
        Err(e) => return failure(format!("new classes need a GDC bank to extend: {e}")),
    };
    let enqueued = match queue.enqueue(&req.class_names, &before, per_class) {
        Ok(e) => e,
        Err(e) => return failure(e.to_string()),
    };
    if req.wait {
        // the client decides how long it waits; the node gives up only when it stops
        while !queue.wait_settled(&req.class_names, STOP_CHECK) {
            if stop.load(Ordering::Relaxed) {
                return failure("the node is shutting down: the classes stay queued only until it exits".into());
            }
        }
    }
    let classes = bank_classes(gdc).unwrap_or_default();
    let failed: Vec<String> = queue
        .status()
        .failed
        .iter()
        .filter(|(n, _)| req.class_names.contains(n))
        .map(|(n, why)| format!("{n}: {why}"))
        .collect();
    let ready = req.class_names.iter().all(|n| classes.contains(n));
    let estimated_seconds = if ready { 0.0 } else { queue.estimated_seconds(&req.class_names).unwrap_or(f64::NAN) };
    AddClasses::Response {
        success: !req.wait || failed.is_empty(),
        error: failed.join("; "),
        queued: enqueued.queued,
        already_present: enqueued.already_present,
        ready,
        estimated_seconds,
        classes,
    }
}

/// The bank after a class was added.
#[derive(Debug, Clone, PartialEq)]
pub struct BankUpdate {
    pub classes: usize,
    /// [`GaussianBank::bytes`](crate::gdc::bank::GaussianBank::bytes).
    pub bytes: u64,
    /// Why saving the bank failed: the class is in the bank (usable now),
    /// but a restart would lose it, so the caller reports it (diagnostics,
    /// `~/gdc_bank`, `~/add_classes`), not only the log.
    pub save_error: Option<String>,
}

/// Embeds a generated class with the GDC backbone and swaps in a bank with
/// it (on the generation worker; readers are never blocked meanwhile); the
/// bank is then saved to `save_path` if set.
pub fn add_to_bank(gdc: &SnapshotCell<Gdc>, set: &ClassImages, save_path: &str) -> Result<BankUpdate, String> {
    let images = set.paths.iter().map(|p| read_rgb(p)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    // embedded and fitted off every reader's way: ~/relabel and auto relabelling
    // keep classifying with the current bank until the new one is swapped in
    let next = gdc.update(|current| {
        let (classifier, crop_cfg) = current.as_ref().map_err(Clone::clone)?;
        let rows = classifier.embed(&images).map_err(|e| e.to_string())?;
        let extended = classifier.with_class(&set.class, &rows, set.prompts.clone()).map_err(|e| e.to_string())?;
        Ok::<Gdc, String>(Ok((extended, crop_cfg.clone())))
    })?;
    let Ok((classifier, _)) = next.as_ref() else { unreachable!("update swapped in a classifier") };
    let bank = classifier.bank();
    let (classes, bytes) = (bank.len(), bank.bytes());
    let save_error = (!save_path.is_empty()).then(|| bank.save(save_path)).and_then(|r| match r {
        Ok(()) => {
            tracing::info!(path = save_path, classes = bank.len(), "GDC bank with run-time classes saved");
            None
        }
        Err(e) => {
            let why = format!("class {:?} is in the bank, but saving the bank (gdc.generator.save_bank_path) failed: {e}", set.class);
            tracing::error!("{why}");
            Some(why)
        }
    });
    Ok(BankUpdate { classes, bytes, save_error })
}

/// The `~/gdc_bank` message for the bank's classes and the queue.
pub fn bank_status(stamp: Time, classes: Vec<String>, generator: &str, q: &QueueStatus) -> GdcBankStatus {
    GdcBankStatus {
        stamp,
        classes,
        generator: generator.to_string(),
        pending_classes: q.pending.iter().map(|p| p.name.clone()).collect(),
        pending_images_done: q.pending.iter().map(|p| p.done as u32).collect(),
        pending_images_total: q.pending.iter().map(|p| p.total as u32).collect(),
        seconds_per_image: q.seconds_per_image.unwrap_or(f64::NAN),
        failed_classes: q.failed.iter().map(|(n, _)| n.clone()).collect(),
        failed_errors: q.failed.iter().map(|(_, e)| e.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(names: &[&str], wait: bool) -> AddClasses::Request {
        AddClasses::Request { class_names: names.iter().map(|s| s.to_string()).collect(), wait }
    }

    #[test]
    fn requests_fail_cleanly_without_a_generator_or_a_bank() {
        let running = AtomicBool::new(false);
        let r = handle(None, None, 4, &running, &req(&["bus"], false));
        assert!(!r.success && r.error.contains("gdc.generator.path"), "{}", r.error);
        let q = ClassQueue::new();
        let r = handle(Some(&q), None, 4, &running, &req(&["bus"], false));
        assert!(!r.success && r.error.contains("loading"));
        let off = SnapshotCell::new(Err("GDC is off: set gdc.bank_path".to_string()));
        let r = handle(Some(&q), Some(&off), 4, &running, &req(&["bus"], true));
        assert!(!r.success && r.error.contains("GDC is off"), "{}", r.error);
        assert!(q.status().pending.is_empty());
    }

    /// Issue 13: a failed bank save was only logged while the class was
    /// reported added; now the caller gets it to report.
    #[test]
    fn a_failed_save_is_returned_with_the_added_class() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("{i}.png"));
                ::image::RgbImage::from_pixel(16, 16, ::image::Rgb([120 + 5 * i as u8, 118, 121])).save(&p).unwrap();
                p
            })
            .collect();
        let set = |class: &str| ClassImages { class: class.into(), paths: paths.clone(), prompts: vec![], generated: 3 };
        let (classifier, _) = crate::gdc::classifier::test_support::dark_bright_classifier();
        let gdc: SnapshotCell<Gdc> = SnapshotCell::new(Ok((classifier, Default::default())));
        // the save path is a directory: the rename fails
        let not_a_file = dir.path().join("bank_dir");
        std::fs::create_dir_all(not_a_file.join("x")).unwrap();
        let update = add_to_bank(&gdc, &set("grey"), not_a_file.to_str().unwrap()).unwrap();
        assert_eq!(update.classes, 3);
        let why = update.save_error.expect("the failed save is reported");
        assert!(why.contains("\"grey\" is in the bank") && why.contains("bank_dir"), "{why}");
        assert!(!crate::atomic_file::temp_path(&not_a_file).exists());

        let file = dir.path().join("bank.safetensors");
        let update = add_to_bank(&gdc, &set("grey2"), file.to_str().unwrap()).unwrap();
        assert_eq!((update.classes, update.save_error), (4, None));
        assert!(update.bytes > 0);
        assert_eq!(crate::gdc::bank::GaussianBank::load(&file).unwrap().len(), 4);
    }

    /// SIGTERM under add_classes load: a request waiting for a class that
    /// will not be generated (no generation worker here) returns once the
    /// node stops, instead of holding a blocking thread for good.
    #[test]
    fn a_waiting_request_returns_when_the_node_stops() {
        use crate::gdc::bank::{EmbeddingSpec, FitOptions, GaussianBank};
        use crate::gdc::classifier::GdcClassifier;
        use crate::gdc::encoder::ImageEncoder;
        let encoder = crate::gdc::encoder::tiny_dinov2();
        let bank = GaussianBank::empty(EmbeddingSpec::new(encoder.backbone_id(), encoder.recipe().id()), FitOptions::default()).unwrap();
        let classifier = GdcClassifier::new(Box::new(encoder), bank).unwrap();
        let gdc = std::sync::Arc::new(SnapshotCell::new(Ok((classifier, crate::gdc::crops::CropConfig::default()))));
        let (q, stop) = (std::sync::Arc::new(ClassQueue::new()), std::sync::Arc::new(AtomicBool::new(false)));
        let waiter = {
            let (gdc, q, stop) = (gdc.clone(), q.clone(), stop.clone());
            std::thread::spawn(move || handle(Some(&q), Some(&gdc), 4, &stop, &req(&["bus"], true)))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished(), "waits while the class is queued");
        let t = std::time::Instant::now();
        stop.store(true, Ordering::Relaxed);
        while !waiter.is_finished() {
            assert!(t.elapsed() < Duration::from_secs(2), "the wait did not end when the node stopped");
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = waiter.join().unwrap();
        assert!(!r.success && r.error.contains("shutting down"), "{}", r.error);
    }

    #[test]
    fn settings_follow_the_parameters() {
        let mut p = super::super::params::NodeParams::defaults().unwrap().gdc;
        assert!(settings(&p).is_none());
        p.generator.path = "/models/sdxl-turbo".into();
        p.bank_path = "/data/bank.safetensors".into();
        let s = settings(&p).unwrap();
        assert_eq!(s.cache_root, PathBuf::from("/data/bank.safetensors.images"));
        assert_eq!((s.per_class, s.steps, s.size, s.batch), (240, 1, None, 4));
        p.generator.cache_dir = "/tmp/c".into();
        p.generator.size = 512;
        let s = settings(&p).unwrap();
        assert_eq!((s.cache_root, s.size), (PathBuf::from("/tmp/c"), Some(512)));
        // zero-shot start (no bank file): the cache goes beside the bank to be saved
        (p.bank_path, p.generator.cache_dir, p.generator.save_bank_path) = (String::new(), String::new(), "/data/new.safetensors".into());
        assert_eq!(settings(&p).unwrap().cache_root, PathBuf::from("/data/new.safetensors.images"));
        p.generator.save_bank_path.clear();
        assert!(settings(&p).unwrap().cache_root.ends_with(".cache/eloss_perception/generated_images"));
        p.generator.classes = " car, traffic_cone ,bus".into();
        assert_eq!(p.generator.class_names(), ["car", "traffic_cone", "bus"]);
    }

    #[test]
    fn status_lists_pending_progress_and_failures() {
        let q = QueueStatus {
            version: 3,
            pending: vec![crate::gdc::generator::class_queue::PendingClass { name: "bus".into(), done: 2, total: 8 }],
            failed: vec![("tram".into(), "out of memory".into())],
            seconds_per_image: None,
        };
        let m = bank_status(Time::default(), vec!["car".into()], "/g", &q);
        assert_eq!((m.pending_classes, m.pending_images_done, m.pending_images_total), (vec!["bus".to_string()], vec![2], vec![8]));
        assert_eq!((m.failed_classes, m.failed_errors), (vec!["tram".to_string()], vec!["out of memory".to_string()]));
        assert!(m.seconds_per_image.is_nan());
        assert_eq!(m.classes, ["car"]);
    }
}
