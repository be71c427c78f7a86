//! Worker heartbeats: no thread or task of the node may die or hang unseen.
//!
//! Every worker (a thread such as the cloud worker, or an async task such as
//! a service loop) registers under its name and gets a [`Heartbeat`]. It
//! beats whenever it comes round its loop; dropping the heartbeat (the
//! worker returned, or unwound from a panic) marks it as gone. [`Workers::spawn`]
//! runs a thread body under `catch_unwind`, so a panic is recorded with its
//! message. [`Workers::status`] turns the registry into one diagnostic
//! status: ERROR naming every worker that died, exited while the node runs,
//! or has not beaten within its stall limit.

use crate::stats::{DiagnosticStatus, Level};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What became of a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerState {
    Running,
    /// Returned on its own (its input ended, or the node is stopping).
    Exited,
    /// Unwound from a panic: the message.
    Died(String),
}

#[derive(Debug)]
struct Entry {
    name: String,
    /// No beat for longer than this is a stall; `None` = a worker that only
    /// waits (a service loop idles without bound).
    stall_after: Option<Duration>,
    last_beat: Instant,
    state: WorkerState,
}

/// The registry of the node's workers.
#[derive(Debug, Default)]
pub struct Workers {
    entries: Mutex<Vec<Entry>>,
}

/// One worker's handle: [`Heartbeat::beat`] while alive; dropped = gone.
#[derive(Debug)]
pub struct Heartbeat {
    workers: Arc<Workers>,
    index: usize,
}

/// One worker as the diagnostics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerReport {
    pub name: String,
    pub state: WorkerState,
    pub since_beat: Duration,
    /// Running, but silent for longer than its stall limit.
    pub stalled: bool,
    /// Has no stall limit (a task that only waits for its input).
    pub waits_only: bool,
}

impl Workers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a running worker named `name` (a stall is no beat for `stall_after`).
    pub fn register(self: &Arc<Self>, name: &str, stall_after: Option<Duration>) -> Heartbeat {
        let mut entries = self.lock();
        entries.push(Entry { name: name.to_string(), stall_after, last_beat: Instant::now(), state: WorkerState::Running });
        Heartbeat { workers: self.clone(), index: entries.len() - 1 }
    }

    /// A thread named `name` running `body` with its heartbeat; a panic in
    /// `body` is caught and recorded as [`WorkerState::Died`] with its message
    /// (and logged), never lost.
    pub fn spawn<F>(self: &Arc<Self>, name: &str, stall_after: Option<Duration>, body: F) -> std::io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce(&Heartbeat) + Send + 'static,
    {
        let heartbeat = self.register(name, stall_after);
        let thread_name = name.to_string();
        std::thread::Builder::new().name(thread_name.clone()).spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| body(&heartbeat));
            if let Err(panic) = std::panic::catch_unwind(run) {
                let message = crate::panic_message::panic_message(&*panic);
                tracing::error!("worker {thread_name} died: panicked: {message}");
                heartbeat.set_state(WorkerState::Died(format!("panicked: {message}")));
            }
        })
    }

    /// Every worker, in registration order.
    pub fn reports(&self) -> Vec<WorkerReport> {
        let now = Instant::now();
        self.lock()
            .iter()
            .map(|e| {
                let since_beat = now.saturating_duration_since(e.last_beat);
                let stalled = e.state == WorkerState::Running && e.stall_after.is_some_and(|limit| since_beat > limit);
                WorkerReport { name: e.name.clone(), state: e.state.clone(), since_beat, stalled, waits_only: e.stall_after.is_none() }
            })
            .collect()
    }

    /// The diagnostic status: ERROR naming each dead, exited or stalled
    /// worker (`stopping`: the node is shutting down, so exits are expected).
    pub fn status(&self, name: &str, hardware_id: &str, stopping: bool) -> DiagnosticStatus {
        let reports = self.reports();
        let mut problems = Vec::new();
        let mut values = Vec::new();
        for r in &reports {
            let state = match &r.state {
                WorkerState::Running if r.stalled => {
                    problems.push(format!("{} stalled: no heartbeat for {:.1} s", r.name, r.since_beat.as_secs_f64()));
                    format!("stalled ({:.1} s since its last heartbeat)", r.since_beat.as_secs_f64())
                }
                WorkerState::Running if r.waits_only => "alive (waits for requests or messages)".to_string(),
                WorkerState::Running => format!("alive ({:.1} s since its last heartbeat)", r.since_beat.as_secs_f64()),
                WorkerState::Exited => {
                    if !stopping {
                        problems.push(format!("{} exited", r.name));
                    }
                    "exited".to_string()
                }
                WorkerState::Died(why) => {
                    problems.push(format!("{} died: {why}", r.name));
                    format!("died: {why}")
                }
            };
            values.push((r.name.clone(), state));
        }
        let (level, message) = if problems.is_empty() {
            (Level::Ok, format!("{} workers alive", reports.len()))
        } else {
            (Level::Error, problems.join("; "))
        };
        DiagnosticStatus { level, name: name.to_string(), message, hardware_id: hardware_id.to_string(), values }
    }
}

impl Heartbeat {
    /// The worker is alive and coming round its loop.
    pub fn beat(&self) {
        if let Some(e) = self.workers.lock().get_mut(self.index) {
            e.last_beat = Instant::now();
        }
    }

    fn set_state(&self, state: WorkerState) {
        if let Some(e) = self.workers.lock().get_mut(self.index) {
            e.state = state;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let mut entries = self.workers.lock();
        let Some(e) = entries.get_mut(self.index) else { return };
        if e.state == WorkerState::Running {
            // an async task unwinding from a panic drops its heartbeat here (tokio catches the panic)
            e.state = if std::thread::panicking() { WorkerState::Died("panicked".into()) } else { WorkerState::Exited };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(workers: &Workers, name: &str, pred: impl Fn(&WorkerReport) -> bool) -> WorkerReport {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let r = workers.reports().into_iter().find(|r| r.name == name).unwrap();
            if pred(&r) || Instant::now() > end {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_panicking_worker_is_an_error_naming_it_with_the_message() {
        let workers = Workers::new();
        let _alive = workers.register("image-worker", Some(Duration::from_secs(10)));
        let t = workers.spawn("cloud-worker", Some(Duration::from_secs(10)), |_| panic!("CUDA out of memory")).unwrap();
        t.join().unwrap();
        let s = workers.status("node: workers", "hw", false);
        assert_eq!(s.level, Level::Error);
        assert!(s.message.contains("cloud-worker died: panicked: CUDA out of memory"), "{}", s.message);
        assert!(!s.message.contains("image-worker"), "{}", s.message);
        assert_eq!(s.values[0].0, "image-worker");
        assert!(s.values[0].1.starts_with("alive"));
    }

    #[test]
    fn a_worker_that_stops_beating_is_stalled_and_recovers_when_it_beats() {
        let workers = Workers::new();
        let hb = workers.register("gdc-bank-status", Some(Duration::from_millis(30)));
        assert_eq!(workers.status("w", "", false).level, Level::Ok);
        std::thread::sleep(Duration::from_millis(60));
        let s = workers.status("w", "", false);
        assert_eq!(s.level, Level::Error);
        assert!(s.message.starts_with("gdc-bank-status stalled"), "{}", s.message);
        hb.beat();
        assert_eq!(workers.status("w", "", false).level, Level::Ok);
        // a worker that only waits (no stall limit) is never stalled
        let _idle = workers.register("relabel-service", None);
        std::thread::sleep(Duration::from_millis(40));
        hb.beat();
        assert_eq!(workers.status("w", "", false).level, Level::Ok);
    }

    #[test]
    fn an_exit_is_an_error_while_running_and_expected_when_stopping() {
        let workers = Workers::new();
        workers.spawn("image-worker", None, |hb| hb.beat()).unwrap().join().unwrap();
        assert_eq!(wait_for(&workers, "image-worker", |r| r.state == WorkerState::Exited).state, WorkerState::Exited);
        let s = workers.status("w", "", false);
        assert_eq!((s.level, s.message.as_str()), (Level::Error, "image-worker exited"));
        assert_eq!(workers.status("w", "", true).level, Level::Ok);
    }

    #[test]
    fn a_heartbeat_dropped_while_unwinding_marks_the_worker_dead() {
        let workers = Workers::new();
        let w = workers.clone();
        // as in a tokio task: the runtime catches the panic, the heartbeat is dropped while unwinding
        let r = std::panic::catch_unwind(move || {
            let _hb = w.register("add-classes-service", None);
            panic!("boom");
        });
        assert!(r.is_err());
        let s = workers.status("w", "", true);
        assert_eq!(s.level, Level::Error, "a death is an error even while stopping");
        assert!(s.message.contains("add-classes-service died: panicked"), "{}", s.message);
    }
}
