//! Run-time classes: a queue of class names that a background worker turns
//! into bank classes (generate images → embed → fit), one class at a time in
//! request order, so a running node can learn "traffic_cone" from its name
//! while it keeps serving. ROS-free: the node's `~/add_classes` service and
//! `~/gdc_bank` topic are thin layers over [`ClassQueue`].
//!
//! The generator is loaded when work arrives and dropped when the queue runs
//! dry: a diffusion model is gigabytes of (GPU) memory the detector should
//! get back between requests. Images go through the same resumable cache as
//! `eloss gdc bank --generator`, so a restart or a repeated request reuses them.

use super::class_images::{check_class_name, contact_sheet, generate_class, ClassImageOptions, ClassImages, ImageCache};
use super::pipeline::{GenerateOptions, Pipeline};
use super::prompts::Templates;
use super::GeneratorError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How new classes are generated.
#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// Diffusers folder of the generator.
    pub generator_dir: PathBuf,
    /// Root of the image cache (a settings-keyed folder is made inside).
    pub cache_root: PathBuf,
    pub per_class: usize,
    /// `default` or a template file (see [`Templates::from_arg`]).
    pub templates: String,
    pub steps: usize,
    pub guidance: f64,
    /// Square image side; None = the model's native size.
    pub size: Option<i64>,
    pub seed: u64,
    pub batch: usize,
    pub device: tch::Device,
}

/// A class waiting for or in generation.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingClass {
    pub name: String,
    /// Images present so far (cached or generated).
    pub done: usize,
    pub total: usize,
}

/// A snapshot of the queue; `version` grows with every change.
#[derive(Debug, Clone, Default)]
pub struct QueueStatus {
    pub version: u64,
    pub pending: Vec<PendingClass>,
    /// (class, why) for classes that failed since start; a new request retries them.
    pub failed: Vec<(String, String)>,
    /// Measured wall time per newly generated image.
    pub seconds_per_image: Option<f64>,
}

/// Classes that may wait at once: a request cannot queue days of GPU work by accident.
pub const MAX_PENDING: usize = 256;

/// Failures kept in the status (the newest; older ones are dropped): each
/// request can add up to [`MAX_PENDING`], and they last until retried.
pub const MAX_FAILED: usize = 256;
/// Longest failure reason kept (bytes; longer ones are cut at a character boundary).
pub const MAX_FAILURE_REASON_BYTES: usize = 1024;

/// What a request did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enqueued {
    pub queued: Vec<String>,
    /// In the bank or already queued: not generated again.
    pub already_present: Vec<String>,
}

/// Where finished classes go: embeds the images and adds the class to the
/// bank (or says why not). Called on the worker thread.
pub type AddClass<'a> = dyn FnMut(&ClassImages) -> Result<(), String> + 'a;

#[derive(Default)]
pub struct ClassQueue {
    state: Mutex<QueueStatus>,
    changed: Condvar,
}

impl ClassQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, QueueStatus> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, s: &mut QueueStatus) {
        s.version += 1;
        self.changed.notify_all();
    }

    pub fn status(&self) -> QueueStatus {
        self.lock().clone()
    }

    /// Queues the names that are neither in `bank_classes` nor queued. All
    /// names are checked first: one bad name refuses the whole request.
    pub fn enqueue(&self, names: &[String], bank_classes: &[String], per_class: usize) -> Result<Enqueued, GeneratorError> {
        if names.is_empty() {
            return Err(GeneratorError::Input("no class names given".into()));
        }
        for n in names {
            check_class_name(n)?;
        }
        let mut s = self.lock();
        let new = names.iter().filter(|n| !bank_classes.contains(n) && !s.pending.iter().any(|p| &p.name == *n)).count();
        if s.pending.len() + new > MAX_PENDING {
            return Err(GeneratorError::Input(format!("{} classes queued already; at most {MAX_PENDING} may wait", s.pending.len())));
        }
        let mut out = Enqueued::default();
        for n in names {
            if bank_classes.contains(n) || s.pending.iter().any(|p| &p.name == n) {
                if !out.already_present.contains(n) {
                    out.already_present.push(n.clone());
                }
                continue;
            }
            s.failed.retain(|(f, _)| f != n);
            s.pending.push(PendingClass { name: n.clone(), done: 0, total: per_class });
            out.queued.push(n.clone());
        }
        if !out.queued.is_empty() {
            self.bump(&mut s);
        }
        Ok(out)
    }

    /// Seconds until every one of `names` still queued is done, at the
    /// measured speed: the images left in the queue up to the last of them.
    /// 0 when none is queued, None before any image was timed.
    pub fn estimated_seconds(&self, names: &[String]) -> Option<f64> {
        let s = self.lock();
        let Some(last) = s.pending.iter().rposition(|p| names.contains(&p.name)) else { return Some(0.0) };
        let left: usize = s.pending[..=last].iter().map(|p| p.total.saturating_sub(p.done)).sum();
        s.seconds_per_image.map(|t| t * left as f64)
    }

    /// Blocks until none of `names` is queued, or `timeout` passes (false then).
    pub fn wait_settled(&self, names: &[String], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.pending.iter().any(|p| names.contains(&p.name)) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self.changed.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Blocks until the status version differs from `seen` or `timeout` passes; returns the status.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> QueueStatus {
        let s = self.lock();
        let (s, _) = self.changed.wait_timeout_while(s, timeout, |s| s.version == seen).unwrap_or_else(|e| e.into_inner());
        s.clone()
    }

    /// Records failures, keeping the list and each reason bounded.
    fn record_failures(s: &mut QueueStatus, failures: impl IntoIterator<Item = (String, String)>) {
        for (name, mut why) in failures {
            if why.len() > MAX_FAILURE_REASON_BYTES {
                let cut = (0..=MAX_FAILURE_REASON_BYTES).rev().find(|&i| why.is_char_boundary(i)).unwrap_or(0);
                why.truncate(cut);
                why.push('…');
            }
            s.failed.push((name, why));
        }
        let excess = s.failed.len().saturating_sub(MAX_FAILED);
        s.failed.drain(..excess);
    }

    fn finish_head(&self, result: Result<(), String>) {
        let mut s = self.lock();
        if s.pending.is_empty() {
            return;
        }
        let head = s.pending.remove(0);
        if let Err(e) = result {
            tracing::warn!(class = %head.name, "run-time class failed: {e}");
            Self::record_failures(&mut s, [(head.name, e)]);
        } else {
            tracing::info!(class = %head.name, "run-time class added to the GDC bank");
        }
        self.bump(&mut s);
    }

    fn fail_all(&self, why: &str) {
        let mut s = self.lock();
        let names: Vec<_> = s.pending.drain(..).map(|p| p.name).collect();
        Self::record_failures(&mut s, names.into_iter().map(|n| (n, why.to_string())));
        self.bump(&mut s);
    }

    /// The worker loop: runs until `stop` is set (checked between classes and
    /// every 100 ms while idle). `alive` is called while idle and for every
    /// generated image (the worker's heartbeat).
    pub fn run_worker(&self, settings: &GeneratorSettings, stop: &AtomicBool, alive: &dyn Fn(), add: &mut AddClass<'_>) {
        while !stop.load(Ordering::Relaxed) {
            alive();
            let idle = self.status();
            if idle.pending.is_empty() {
                self.wait_change(idle.version, Duration::from_millis(100));
                continue;
            }
            let t = Instant::now();
            // a panic while loading (CUDA out of memory) fails the queued classes, not the worker
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fail::fail_point!("generator_load");
                Loaded::new(settings)
            }))
                .unwrap_or_else(|panic| Err(GeneratorError::Input(format!("loading panicked: {}", crate::panic_message::panic_message(&*panic)))));
            let loaded = match loaded {
                Ok(l) => l,
                Err(e) => {
                    self.fail_all(&format!("generator {}: {e}", settings.generator_dir.display()));
                    continue;
                }
            };
            tracing::info!(generator = %settings.generator_dir.display(), elapsed = ?t.elapsed(), "generator loaded");
            // one load serves every class queued meanwhile
            while !stop.load(Ordering::Relaxed) {
                let Some(head) = self.status().pending.first().cloned() else { break };
                // a libtorch panic (tch's infallible ops) fails this class, not the worker
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.generate_one(&loaded, &head.name, alive).and_then(|set| add(&set))))
                    .unwrap_or_else(|panic| Err(format!("generation panicked: {}", crate::panic_message::panic_message(&*panic))));
                self.finish_head(result);
            }
            tracing::info!("generation queue empty: generator unloaded");
        }
    }

    fn generate_one(&self, l: &Loaded, class: &str, alive: &dyn Fn()) -> Result<ClassImages, String> {
        let mut last = Instant::now();
        let mut last_done: Option<usize> = None;
        let set = generate_class(&l.pipe, &l.cache, class, &l.opts, |done| {
            let mut s = self.lock();
            if let Some(prev) = last_done {
                // only newly generated images time the generator (cached ones come first)
                let per = last.elapsed().as_secs_f64() / (done - prev).max(1) as f64;
                s.seconds_per_image = Some(match s.seconds_per_image {
                    Some(old) => 0.7 * old + 0.3 * per,
                    None => per,
                });
            }
            (last, last_done) = (Instant::now(), Some(done));
            alive();
            if let Some(p) = s.pending.first_mut().filter(|p| p.name == class) {
                p.done = done;
            }
            self.bump(&mut s);
        })
        .map_err(|e| e.to_string())?;
        contact_sheet(&set.paths, &l.cache.sheet_path(class), 128).map_err(|e| e.to_string())?;
        Ok(set)
    }
}

/// A loaded generator with its options and cache.
struct Loaded {
    pipe: Pipeline,
    opts: ClassImageOptions,
    cache: ImageCache,
}

impl Loaded {
    fn new(s: &GeneratorSettings) -> Result<Self, GeneratorError> {
        let templates = Templates::from_arg(&s.templates).map_err(|e| GeneratorError::Input(e.to_string()))?;
        let pipe = Pipeline::load(&s.generator_dir, s.device)?;
        let mut generate = GenerateOptions::turbo(&pipe);
        generate.steps = s.steps;
        generate.guidance_scale = s.guidance;
        if let Some(side) = s.size {
            (generate.height, generate.width) = (side, side);
        }
        let opts = ClassImageOptions { per_class: s.per_class, batch: s.batch.max(1), seed: s.seed, generate, templates };
        let cache = ImageCache::open(&s.cache_root, &s.generator_dir, &opts)?;
        Ok(Self { pipe, opts, cache })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn enqueue_skips_known_names_and_refuses_bad_ones() {
        let q = ClassQueue::new();
        let e = q.enqueue(&names(&["bus", "car", "bus", "tram"]), &names(&["car"]), 10).unwrap();
        assert_eq!(e.queued, ["bus", "tram"]);
        assert_eq!(e.already_present, ["car", "bus"]);
        let s = q.status();
        assert_eq!(s.pending.iter().map(|p| (p.name.as_str(), p.done, p.total)).collect::<Vec<_>>(), [("bus", 0, 10), ("tram", 0, 10)]);
        assert_eq!(s.version, 1);
        // one bad name refuses the request and queues nothing
        assert!(q.enqueue(&names(&["truck", "a/b"]), &[], 10).is_err());
        assert!(q.enqueue(&[], &[], 10).is_err());
        assert_eq!(q.status().pending.len(), 2);
        assert_eq!(q.status().version, 1);
        // a request that would overfill the queue is refused whole
        let many: Vec<String> = (0..MAX_PENDING - 1).map(|i| format!("c{i}")).collect();
        assert!(q.enqueue(&many, &[], 10).unwrap_err().to_string().contains("at most"));
        assert_eq!(q.status().pending.len(), 2);
        assert_eq!(q.enqueue(&many[..MAX_PENDING - 2], &[], 10).unwrap().queued.len(), MAX_PENDING - 2);
    }

    /// Issue 13: the failed-class list grew without bound.
    #[test]
    fn failures_are_bounded_in_number_and_length() {
        let q = ClassQueue::new();
        for round in 0..3 {
            let many: Vec<String> = (0..MAX_PENDING).map(|i| format!("r{round}c{i}")).collect();
            q.enqueue(&many, &[], 2).unwrap();
            q.fail_all(&"é".repeat(MAX_FAILURE_REASON_BYTES));
        }
        let s = q.status();
        assert_eq!(s.failed.len(), MAX_FAILED);
        assert_eq!(s.failed.last().unwrap().0, format!("r2c{}", MAX_PENDING - 1), "the newest are kept");
        let why = &s.failed[0].1;
        assert!(why.len() <= MAX_FAILURE_REASON_BYTES + '…'.len_utf8() && why.ends_with('…'), "{}", why.len());
    }

    #[test]
    fn estimates_count_the_images_ahead_in_the_queue() {
        let q = ClassQueue::new();
        q.enqueue(&names(&["a", "b", "c"]), &[], 10).unwrap();
        assert_eq!(q.estimated_seconds(&names(&["b"])), None);
        {
            let mut s = q.lock();
            s.seconds_per_image = Some(0.5);
            s.pending[0].done = 4;
        }
        assert_eq!(q.estimated_seconds(&names(&["a"])), Some(3.0));
        assert_eq!(q.estimated_seconds(&names(&["b", "a"])), Some(8.0));
        assert_eq!(q.estimated_seconds(&names(&["c"])), Some(13.0));
        assert_eq!(q.estimated_seconds(&names(&["zebra"])), Some(0.0));
    }

    #[test]
    fn a_generator_that_does_not_load_fails_the_queue_and_a_retry_requeues() {
        let q = std::sync::Arc::new(ClassQueue::new());
        let dir = tempfile::tempdir().unwrap();
        let settings = GeneratorSettings {
            generator_dir: dir.path().join("missing"),
            cache_root: dir.path().join("cache"),
            per_class: 2,
            templates: "default".into(),
            steps: 1,
            guidance: 0.0,
            size: None,
            seed: 0,
            batch: 1,
            device: tch::Device::Cpu,
        };
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let worker = {
            let (q, stop) = (q.clone(), stop.clone());
            std::thread::spawn(move || q.run_worker(&settings, &stop, &|| {}, &mut |_| unreachable!("nothing is generated")))
        };
        q.enqueue(&names(&["bus"]), &[], 2).unwrap();
        assert!(q.wait_settled(&names(&["bus"]), Duration::from_secs(20)));
        let s = q.status();
        assert_eq!(s.failed.len(), 1);
        assert!(s.failed[0].1.contains("missing"), "{:?}", s.failed);
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        // asking again clears the failure and queues the class again
        assert_eq!(q.enqueue(&names(&["bus"]), &[], 2).unwrap().queued, ["bus"]);
        assert!(q.status().failed.is_empty());
        assert!(!q.wait_settled(&names(&["bus"]), Duration::from_millis(10)));
    }
}
