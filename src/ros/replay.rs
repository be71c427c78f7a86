//! Publishes a rosbag2 MCAP file's messages through r2r, with the recorded
//! timing scaled by `rate` or as fast as possible. Messages are published as
//! the raw CDR stored in the bag, so any type r2r has bindings for replays
//! without conversion.

use crate::bag::BagReader;
use anyhow::{bail, Context as _};
use r2r::QosProfile;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Playback speed relative to the recording; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Only these topics (all when empty).
    pub topics: Vec<String>,
    /// Wait up to this long for at least one subscriber on every replayed topic.
    pub wait_for_subscribers: Duration,
    /// Play the bag this many times.
    pub loops: u32,
}

#[derive(Debug, Default)]
pub struct ReplayReport {
    pub published: u64,
    pub skipped_topics: Vec<String>,
    pub wall_time: Duration,
}

pub fn replay(path: &Path, opts: &ReplayOptions) -> anyhow::Result<ReplayReport> {
    if let Some(r) = opts.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("rate must be > 0 (got {r})");
        }
    }
    let bag = BagReader::open(path).with_context(|| format!("opening bag {}", path.display()))?;
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, "eloss_replay", "")?;
    let mut report = ReplayReport::default();

    let mut publishers = HashMap::new();
    for t in bag.topics()? {
        if !opts.topics.is_empty() && !opts.topics.contains(&t.topic) {
            continue;
        }
        match node.create_publisher_untyped(&t.topic, &t.type_name, QosProfile::default()) {
            Ok(p) => {
                tracing::info!("replaying {} [{}], {} messages", t.topic, t.type_name, t.message_count);
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

    let deadline = Instant::now() + opts.wait_for_subscribers;
    for (topic, p) in &publishers {
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
        let mut t0 = None;
        for msg in bag.messages()? {
            let msg = msg?;
            let Some(p) = publishers.get(&msg.topic) else { continue };
            let t0 = *t0.get_or_insert(msg.log_time_ns);
            if let Some(rate) = opts.rate {
                let offset = Duration::from_nanos(msg.log_time_ns.saturating_sub(t0)).div_f64(rate);
                let due = loop_start + offset;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            p.publish_raw(&msg.data).with_context(|| format!("publishing on {}", msg.topic))?;
            report.published += 1;
        }
    }
    report.wall_time = start.elapsed();
    // give reliable transports a moment to flush before the participant goes away
    let flush_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < flush_until {
        node.spin_once(Duration::from_millis(20));
    }
    Ok(report)
}
