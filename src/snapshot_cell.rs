//! State that readers use without ever waiting on a writer.
//!
//! A [`SnapshotCell`] holds an `Arc<T>`. [`SnapshotCell::get`] takes its lock
//! only to clone the `Arc`; the reader then works on that snapshot for as
//! long as it likes. [`SnapshotCell::update`] builds the next value from the
//! current one outside that lock (writers wait for each other, never for
//! readers, and readers never wait for them) and swaps it in. The node keeps
//! its GDC classifier so: a long relabel request, or a class being embedded
//! into the bank, never holds up the detections the cloud worker labels.

use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug)]
pub struct SnapshotCell<T> {
    current: Mutex<Arc<T>>,
    /// Serialises writers: an update starts from the value the previous one swapped in.
    writer: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> SnapshotCell<T> {
    pub fn new(value: T) -> Self {
        Self { current: Mutex::new(Arc::new(value)), writer: Mutex::new(()) }
    }

    /// The current value (the lock is held for the `Arc` clone only).
    pub fn get(&self) -> Arc<T> {
        lock(&self.current).clone()
    }

    /// Builds the next value from the current one with `next` (no reader
    /// waits meanwhile) and swaps it in; returns it. An error leaves the
    /// current value in place.
    pub fn update<E>(&self, next: impl FnOnce(&T) -> Result<T, E>) -> Result<Arc<T>, E> {
        let _writer = lock(&self.writer);
        let current = self.get();
        let new = Arc::new(next(&current)?);
        *lock(&self.current) = new.clone();
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    #[test]
    fn readers_do_not_wait_for_a_slow_update() {
        let cell = Arc::new(SnapshotCell::new(vec![1]));
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let writer = {
            let cell = cell.clone();
            std::thread::spawn(move || {
                cell.update(|v| {
                    started_tx.send(()).unwrap();
                    // a long embedding: until the test lets it finish
                    release_rx.recv_timeout(Duration::from_secs(10)).unwrap();
                    Ok::<_, ()>(v.iter().copied().chain([2]).collect())
                })
            })
        };
        started.recv().unwrap();
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(*cell.get(), [1], "the old value until the swap");
        }
        assert!(t.elapsed() < Duration::from_millis(500), "reads waited {:?}", t.elapsed());
        release.send(()).unwrap();
        assert_eq!(*writer.join().unwrap().unwrap(), [1, 2]);
        assert_eq!(*cell.get(), [1, 2]);
    }

    #[test]
    fn a_reader_keeps_its_snapshot_and_a_failed_update_changes_nothing() {
        let cell = SnapshotCell::new(String::from("a"));
        let held = cell.get();
        cell.update(|s| Ok::<_, ()>(format!("{s}b"))).unwrap();
        assert_eq!((held.as_str(), cell.get().as_str()), ("a", "ab"));
        assert_eq!(cell.update(|_| Err::<String, _>("no")).unwrap_err(), "no");
        assert_eq!(cell.get().as_str(), "ab");
    }
}
