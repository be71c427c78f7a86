//! A one-frame mailbox that keeps only the newest frame.
//!
//! Sensors publish faster than a slow consumer (a detector on CPU) can keep
//! up. Queueing would add latency without bound, so a producer overwrites the
//! waiting frame and the overwritten one is counted as dropped. The consumer
//! always gets the freshest data the moment it is ready for more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Newest-frame mailbox shared between one or more producers and a consumer.
#[derive(Debug, Default)]
pub struct LatestSlot<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
    dropped: AtomicU64,
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self { slot: Mutex::new(None), ready: Condvar::new(), dropped: AtomicU64::new(0) }
    }

    /// Stores `frame`, replacing (and counting as dropped) any frame still waiting.
    /// Returns true when a waiting frame was replaced.
    pub fn put(&self, frame: T) -> bool {
        let replaced = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            slot.replace(frame).is_some()
        };
        if replaced {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
        replaced
    }

    /// Takes the waiting frame, if any, without blocking.
    pub fn take(&self) -> Option<T> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Waits up to `timeout` for a frame and takes it.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        slot.take()
    }

    /// Frames overwritten before the consumer took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_only_newest_and_counts_drops() {
        let s = LatestSlot::new();
        assert!(!s.put(1));
        assert!(s.put(2));
        assert!(s.put(3));
        assert_eq!(s.take(), Some(3));
        assert_eq!(s.take(), None);
        assert_eq!(s.dropped(), 2);
    }

    #[test]
    fn slow_consumer_sees_latest_frame() {
        let s = Arc::new(LatestSlot::new());
        let producer = {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..1000u32 {
                    s.put(i);
                }
            })
        };
        producer.join().unwrap();
        assert_eq!(s.take_timeout(Duration::from_millis(10)), Some(999));
        assert_eq!(s.dropped(), 999);
    }

    #[test]
    fn take_timeout_wakes_on_put() {
        let s = Arc::new(LatestSlot::new());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.take_timeout(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        s.put(7u8);
        assert_eq!(t.join().unwrap(), Some(7));
        assert_eq!(s.take_timeout(Duration::from_millis(1)), None);
    }
}
