//! The node's sustained rate over DDS (issue 15 item 3): a full simulated
//! 64-beam sweep (~120k points) published as PointCloud2 by an rclpy peer
//! (tests/python/rate_peer.py) at fixed rates, the node with its defaults
//! (detector + Eloss monitor, no GDC). Per rate: clouds sent, frames the node
//! received / processed / dropped, and the latency from a cloud's stamp to
//! the arrival of its detections (p50 / p99).
//!
//! In the test suite: 10 Hz for 5 s, checking that every received cloud is
//! processed or dropped (never queued) and that detections keep coming.
//! `scripts/rate_sweep.sh` runs 10, 20 and 30 Hz for 60 s each
//! (`ELOSS_RATE_SWEEP_HZ`, `ELOSS_RATE_SWEEP_SECONDS`), with the Eloss
//! monitor on and off (`ELOSS_RATE_SWEEP_MONITOR`, default `on`: the node's
//! `eloss.enabled`), on the libtorch backend and, with `ELOSS_RATE_SWEEP_ONNX`
//! (a graph from scripts/export_onnx.py), on the onnxruntime one too, and
//! writes the table to `ELOSS_RATE_SWEEP_OUT/rate_sweep.md` (docs/benchmarks.md).
#![cfg(feature = "ros")]
mod common;

use common::NodeProcess;
use serde_json::Value;
use std::process::Command;

#[test]
fn sustained_rate_over_dds() {
    let Some(py) = common::python() else { return };
    let rates: Vec<f64> = std::env::var("ELOSS_RATE_SWEEP_HZ")
        .unwrap_or_else(|_| "10".into())
        .split(',')
        .map(|r| r.trim().parse().expect("ELOSS_RATE_SWEEP_HZ: comma-separated rates"))
        .collect();
    let seconds: f64 = std::env::var("ELOSS_RATE_SWEEP_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0);
    let monitors: Vec<bool> = std::env::var("ELOSS_RATE_SWEEP_MONITOR")
        .unwrap_or_else(|_| "on".into())
        .split(',')
        .map(|m| match m.trim() {
            "on" => true,
            "off" => false,
            m => panic!("ELOSS_RATE_SWEEP_MONITOR: comma-separated on/off, not {m:?}"),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (bin, _png) = common::simulated_frame(dir.path());
    let mut table = String::from(
        "| backend | Eloss monitor | rate | clouds sent | received | processed | dropped | processed/s | detections | latency p50 | p99 | max |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let onnx = std::env::var("ELOSS_RATE_SWEEP_ONNX").ok().filter(|p| !p.is_empty());
    let backends: Vec<Option<&str>> = std::iter::once(None).chain(onnx.as_deref().map(Some)).collect();
    let mut runs = Vec::new();
    for &b in &backends {
        for &m in &monitors {
            runs.extend(rates.iter().map(|&r| (b, m, r)));
        }
    }
    for (graph, monitor, rate) in runs {
        let backend = if graph.is_some() { "onnxruntime" } else { "torch" };
        let ns = format!("/eloss_rate_{}_{}_{monitor}_{backend}", std::process::id(), rate as u32);
        let mut params = vec!["detector.threads:=2".to_string(), format!("eloss.enabled:={monitor}")];
        if let Some(g) = graph {
            params.extend(["detector.backend:=onnxruntime".to_string(), format!("detector.onnx_path:={g}")]);
        }
        let node = NodeProcess::start(&ns, &params);
        let out = Command::new(&py)
            .arg(common::repo().join("tests/python/rate_peer.py"))
            .args(["rate", &ns])
            .arg(&bin)
            .args([rate.to_string(), seconds.to_string()])
            .env("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
            .output()
            .unwrap();
        assert!(out.status.success(), "rate peer failed: {}", String::from_utf8_lossy(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{}", serde_json::to_string(&r).unwrap());
        let n = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{k} missing: {r}"));
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
        // every received cloud is accounted for: processed or dropped, none waiting
        assert!(n("frames_processed") + n("frames_dropped") >= n("frames_received"), "{r}");
        assert!(n("frames_received") as f64 >= 0.8 * n("clouds_sent") as f64, "{r}");
        assert!(n("frames_processed") >= 3 && n("detections_received") >= 3, "{r}");
        // never queued: a frame's detections arrive within a couple of frame times
        assert!(f("latency_p99_s") < 2.0, "p99 latency {} s: frames are queueing ({r})", f("latency_p99_s"));
        table += &format!(
            "| {backend} | {} | {rate} Hz | {} | {} | {} | {} | {:.1} | {} | {:.0} ms | {:.0} ms | {:.0} ms |\n",
            if monitor { "on" } else { "off" },
            n("clouds_sent"),
            n("frames_received"),
            n("frames_processed"),
            n("frames_dropped"),
            n("frames_processed") as f64 / f("duration_s"),
            n("detections_received"),
            1e3 * f("latency_p50_s"),
            1e3 * f("latency_p99_s"),
            1e3 * f("latency_max_s"),
        );
        assert!(node.stop().success());
    }
    eprintln!("{table}");
    if let Some(out) = std::env::var_os("ELOSS_RATE_SWEEP_OUT") {
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(std::path::Path::new(&out).join("rate_sweep.md"), &table).unwrap();
    }
}
