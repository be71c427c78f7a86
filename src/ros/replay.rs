//! Publishes a rosbag2 MCAP file's messages through r2r, with the recorded
//! timing scaled by `rate` or as fast as possible. Messages are published as
//! the raw CDR stored in the bag, so any type r2r has bindings for replays
//! without conversion.
//!
//! * **QoS.** Each topic's publisher offers what its recorded publishers
//!   offered (`offered_qos_profiles`, see [`crate::bag::qos::playback_profile`]):
//!   `/tf_static` recorded transient-local stays transient-local, so a
//!   subscriber that joins late still gets the static transforms. Topics
//!   recorded without QoS get rosbag2's default (reliable, volatile, depth 10).
//! * **Clock.** With a clock rate, `/clock` (`rosgraph_msgs/Clock`, best
//!   effort, depth 1, as rclcpp's `ClockQoS`) carries the bag's time: the
//!   log time of each message just before it is published, and between
//!   messages at the given rate the bag time that corresponds to the wall
//!   time elapsed (scaled by `rate`, never past the next message). Each loop
//!   starts again at the bag's first time, so with `loops > 1` sim time
//!   jumps back once per loop, as with `ros2 bag play --loop --clock`.
//!   With `rate = None` (as fast as possible) only the per-message clock is
//!   published.

use crate::bag::{qos, BagReader, PlaybackQos};
use anyhow::{bail, Context as _};
use r2r::QosProfile;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Slowest and fastest accepted playback rates: beyond them a replay either
/// never ends or is "as fast as possible" anyway (`--fast`).
pub const MIN_RATE: f64 = 1e-3;
pub const MAX_RATE: f64 = 1e3;
/// `/clock` rate of `ros2 bag play --clock` without a value.
pub const DEFAULT_CLOCK_HZ: f64 = 40.0;
pub const MAX_CLOCK_HZ: f64 = 1e3;
/// The topic `--clock` publishes on.
pub const CLOCK_TOPIC: &str = "/clock";

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Playback speed relative to the recording; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Only these topics (all when empty).
    pub topics: Vec<String>,
    /// Wait up to this long for at least one subscriber on every replayed
    /// volatile topic (transient-local topics keep their messages for late joiners).
    pub wait_for_subscribers: Duration,
    /// Play the bag this many times.
    pub loops: u32,
    /// Publish the bag's time on `/clock` at this rate (Hz) and before every message.
    pub clock_hz: Option<f64>,
}

#[derive(Debug, Default)]
pub struct ReplayReport {
    pub published: u64,
    pub clock_published: u64,
    pub skipped_topics: Vec<String>,
    pub wall_time: Duration,
}

/// Refuses rates outside [[`MIN_RATE`], [`MAX_RATE`]] (and NaN) with the reason.
pub fn check_rate(rate: f64) -> anyhow::Result<()> {
    if !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate)) {
        bail!("rate must be between {MIN_RATE} and {MAX_RATE} (got {rate}); use --fast to publish as fast as possible");
    }
    Ok(())
}

/// Refuses clock rates outside (0, [`MAX_CLOCK_HZ`]].
pub fn check_clock_hz(hz: f64) -> anyhow::Result<()> {
    if !(hz.is_finite() && hz > 0.0 && hz <= MAX_CLOCK_HZ) {
        bail!("clock rate must be > 0 and <= {MAX_CLOCK_HZ} Hz (got {hz})");
    }
    Ok(())
}

/// Maps a loop's recorded times to wall-clock offsets from its start, and back.
#[derive(Debug, Clone, Copy)]
struct Pace {
    t0_ns: u64,
    rate: f64,
}

impl Pace {
    /// When (after the loop's start) the message logged at `log_time_ns` is due.
    fn wall_offset(&self, log_time_ns: u64) -> Option<Duration> {
        let secs = log_time_ns.saturating_sub(self.t0_ns) as f64 / 1e9 / self.rate;
        Duration::try_from_secs_f64(secs).ok()
    }

    /// The bag time `elapsed` wall time after the loop's start.
    fn bag_time(&self, elapsed: Duration) -> u64 {
        // float → int casts saturate
        self.t0_ns.saturating_add((elapsed.as_secs_f64() * 1e9 * self.rate) as u64)
    }
}

/// `/clock` with a steady tick and a never-decreasing time within a loop.
struct ClockPublisher {
    publisher: r2r::Publisher<r2r::rosgraph_msgs::msg::Clock>,
    period: Duration,
    next_tick: Instant,
    last_ns: u64,
    published: u64,
}

impl ClockPublisher {
    fn publish(&mut self, ns: u64) -> anyhow::Result<()> {
        let ns = ns.max(self.last_ns);
        self.last_ns = ns;
        let t = crate::bag::Time::from_nanos(i64::try_from(ns).unwrap_or(i64::MAX));
        let clock = r2r::builtin_interfaces::msg::Time { sec: t.sec, nanosec: t.nanosec };
        self.publisher.publish(&r2r::rosgraph_msgs::msg::Clock { clock }).context("publishing /clock")?;
        self.published += 1;
        Ok(())
    }

    /// A new loop: time starts again at the bag's beginning.
    fn restart(&mut self, now: Instant) {
        self.last_ns = 0;
        self.next_tick = now;
    }

    /// Publishes a tick if one is due; returns when the next one is.
    fn tick(&mut self, now: Instant, pace: &Pace, loop_start: Instant, not_after_ns: u64) -> anyhow::Result<Instant> {
        if now >= self.next_tick {
            self.publish(pace.bag_time(now - loop_start).min(not_after_ns))?;
            self.next_tick += self.period;
            if self.next_tick <= now {
                self.next_tick = now + self.period; // fell behind: do not burst
            }
        }
        Ok(self.next_tick)
    }
}

fn r2r_profile(p: PlaybackQos) -> QosProfile {
    let base = QosProfile::default();
    let base = if p.reliable { base.reliable() } else { base.best_effort() };
    let base = if p.transient_local { base.transient_local() } else { base.volatile() };
    match p.depth {
        Some(d) => base.keep_last(d as usize),
        None => base.keep_all(),
    }
}

pub fn replay(path: &Path, opts: &ReplayOptions) -> anyhow::Result<ReplayReport> {
    if let Some(r) = opts.rate {
        check_rate(r)?;
    }
    if let Some(hz) = opts.clock_hz {
        check_clock_hz(hz)?;
    }
    let bag = BagReader::open(path).with_context(|| format!("opening bag {}", path.display()))?;
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, "eloss_replay", "")?;
    let mut report = ReplayReport::default();

    let mut publishers = HashMap::new();
    let mut volatile_topics = Vec::new();
    for t in bag.topics()? {
        if !opts.topics.is_empty() && !opts.topics.contains(&t.topic) {
            continue;
        }
        if opts.clock_hz.is_some() && t.topic == CLOCK_TOPIC {
            tracing::warn!("not replaying the recorded {CLOCK_TOPIC}: --clock publishes the bag's time there");
            report.skipped_topics.push(t.topic.clone());
            continue;
        }
        let recorded = t.offered_qos().unwrap_or_else(|e| {
            tracing::warn!("{}: recorded QoS unreadable ({e}); offering the default profile", t.topic);
            Vec::new()
        });
        let playback = qos::playback_profile(&recorded, t.message_count);
        match node.create_publisher_untyped(&t.topic, &t.type_name, r2r_profile(playback)) {
            Ok(p) => {
                tracing::info!(
                    "replaying {} [{}], {} messages, {} {} depth {}",
                    t.topic,
                    t.type_name,
                    t.message_count,
                    if playback.reliable { "reliable" } else { "best effort" },
                    if playback.transient_local { "transient-local" } else { "volatile" },
                    playback.depth.map_or("all".to_owned(), |d| d.to_string()),
                );
                if !playback.transient_local {
                    volatile_topics.push(t.topic.clone());
                }
                publishers.insert(t.topic.clone(), p);
            }
            Err(e) => {
                tracing::warn!("skipping {} [{}]: no bindings for this type ({e})", t.topic, t.type_name);
                report.skipped_topics.push(t.topic.clone());
            }
        }
    }
    if publishers.is_empty() {
        bail!("nothing to replay in {}", path.display());
    }
    let mut clock = match opts.clock_hz {
        None => None,
        Some(hz) => Some(ClockPublisher {
            publisher: node
                .create_publisher(CLOCK_TOPIC, QosProfile::sensor_data().keep_last(1))
                .context("creating the /clock publisher")?,
            period: Duration::from_secs_f64(1.0 / hz),
            next_tick: Instant::now(),
            last_ns: 0,
            published: 0,
        }),
    };

    let deadline = Instant::now() + opts.wait_for_subscribers;
    for topic in &volatile_topics {
        let p = &publishers[topic];
        while p.get_inter_process_subscription_count().unwrap_or(0) == 0 && Instant::now() < deadline {
            node.spin_once(Duration::from_millis(10));
        }
        if p.get_inter_process_subscription_count().unwrap_or(0) == 0 && !opts.wait_for_subscribers.is_zero() {
            tracing::warn!("no subscriber on {topic} after {:?}", opts.wait_for_subscribers);
        }
    }

    let start = Instant::now();
    for _ in 0..opts.loops.max(1) {
        let loop_start = Instant::now();
        if let Some(c) = &mut clock {
            c.restart(loop_start);
        }
        let mut pace = None;
        for msg in bag.messages()? {
            let msg = msg?;
            let Some(p) = publishers.get(&msg.topic) else { continue };
            if let Some(rate) = opts.rate {
                let pace = *pace.get_or_insert(Pace { t0_ns: msg.log_time_ns, rate });
                let due = pace
                    .wall_offset(msg.log_time_ns)
                    .and_then(|d| loop_start.checked_add(d))
                    .with_context(|| format!("message at {} ns is too far from the bag's start at rate {rate}", msg.log_time_ns))?;
                loop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    let wake = match &mut clock {
                        Some(c) => due.min(c.tick(now, &pace, loop_start, msg.log_time_ns)?),
                        None => due,
                    };
                    std::thread::sleep(wake.saturating_duration_since(now));
                }
            }
            if let Some(c) = &mut clock {
                c.publish(msg.log_time_ns)?;
            }
            p.publish_raw(&msg.data).with_context(|| format!("publishing on {}", msg.topic))?;
            report.published += 1;
        }
    }
    report.wall_time = start.elapsed();
    report.clock_published = clock.as_ref().map_or(0, |c| c.published);
    // give reliable transports a moment to flush before the participant goes away
    let flush_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < flush_until {
        node.spin_once(Duration::from_millis(20));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 11: a tiny rate used to overflow `Duration::div_f64`.
    #[test]
    fn absurd_rates_are_refused() {
        for bad in [0.0, -1.0, 1e-300, 9e-4, 1001.0, f64::NAN, f64::INFINITY] {
            let e = check_rate(bad).unwrap_err().to_string();
            assert!(e.contains("between 0.001 and 1000"), "{bad}: {e}");
        }
        for ok in [MIN_RATE, 0.5, 1.0, 20.0, MAX_RATE] {
            check_rate(ok).unwrap();
        }
        for bad in [0.0, -40.0, 1e6, f64::NAN] {
            assert!(check_clock_hz(bad).is_err(), "{bad}");
        }
        check_clock_hz(DEFAULT_CLOCK_HZ).unwrap();
    }

    #[test]
    fn pace_scales_recorded_time_both_ways() {
        let pace = Pace { t0_ns: 1_000_000_000, rate: 2.0 };
        assert_eq!(pace.wall_offset(1_000_000_000), Some(Duration::ZERO));
        assert_eq!(pace.wall_offset(1_400_000_000), Some(Duration::from_millis(200)));
        assert_eq!(pace.wall_offset(5), Some(Duration::ZERO)); // before t0 (out-of-order file): now
        assert_eq!(pace.bag_time(Duration::from_millis(200)), 1_400_000_000);
        // the slowest rate over the longest possible bag still gives a duration, no panic
        let slow = Pace { t0_ns: 0, rate: MIN_RATE };
        assert!(slow.wall_offset(u64::MAX).is_some());
        assert_eq!(Pace { t0_ns: u64::MAX - 1, rate: MAX_RATE }.bag_time(Duration::from_secs(1)), u64::MAX);
    }
}
