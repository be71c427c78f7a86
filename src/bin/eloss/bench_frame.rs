//! `eloss bench-frame`: the node's whole frame, from the PointCloud2 bytes
//! to the messages it publishes, per stage (eloss_perception::ros::frame_bench),
//! with the Eloss monitor on and off in alternate iterations, so machine
//! noise hits both alike. `--json` writes the medians and the detections for
//! the Python pipeline's comparison (scripts/bench_frame_python.py --compare).

use anyhow::Context as _;
use eloss_perception::frames::mounting::Mounting;
use eloss_perception::numeric::median;
use eloss_perception::perception::{Coverage, FramePipeline};
use eloss_perception::ros::frame_bench::{cloud_message, run_frame, FrameSettings, FrameTimes};
use eloss_perception::ros::params::NodeParams;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BenchFrameArgs {
    /// Detector checkpoint (default: the embedded compact model)
    #[arg(long)]
    model: Option<PathBuf>,
    /// KITTI .bin cloud (x forward, the model's frame), sent as x y z intensity float32
    #[arg(long)]
    cloud: PathBuf,
    #[arg(long, default_value_t = 30)]
    iters: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// libtorch intra-op threads (the node's detector.threads)
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// full = also the rear half (detector.coverage)
    #[arg(long, default_value = "front")]
    coverage: String,
    /// ONNX graph of the model (scripts/export_onnx.py): the dense part runs
    /// on ONNX Runtime (the node's detector.backend onnxruntime)
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Medians per stage (ms) and the detections of the monitor-on run, as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn bench(a: BenchFrameArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=64).contains(&a.threads), "--threads must be 1..=64");
    tch::set_num_threads(a.threads);
    let params = NodeParams::defaults()?;
    let model = a.model.as_deref().map(|p| p.to_str().context("model path is not UTF-8")).transpose()?.unwrap_or("");
    let mut pipe = FramePipeline::load(model, tch::Device::Cpu, &params.eloss.settings()?)?;
    if let Some(graph) = &a.onnx {
        #[cfg(feature = "onnxruntime")]
        pipe.use_onnxruntime(graph, a.threads as usize)?;
        #[cfg(not(feature = "onnxruntime"))]
        anyhow::bail!("--onnx {}: this build has no onnxruntime feature", graph.display());
    }
    let coverage = match a.coverage.as_str() {
        "front" => Coverage::Front,
        "full" => Coverage::Full,
        c => anyhow::bail!("--coverage must be front or full, not {c:?}"),
    };
    let settings = FrameSettings {
        min_range_m: params.cloud.min_range_m as f32,
        max_range_m: params.cloud.max_range_m as f32,
        score_threshold: params.detector.score_threshold as f32,
        marker_lifetime_s: params.detector.marker_lifetime_s,
        // detector.frame empty: the cloud's frame is the model's, as the node's default
        mounting: Mounting::identity().with_intensity_scale(params.cloud.intensity_scale as f32)?,
        coverage,
    };
    let points = eloss_perception::cloud::kitti_bin::read(&a.cloud)?;
    let msg = cloud_message(&points, "velodyne");
    let mut runs: [Vec<FrameTimes>; 2] = Default::default();
    let mut detections = Vec::new();
    for i in 0..a.warmup + a.iters.max(1) {
        for (on, store) in [true, false].into_iter().zip(runs.iter_mut()) {
            pipe.set_monitor_enabled(on);
            let (dets, t) = run_frame(&mut pipe, &msg, &settings).map_err(anyhow::Error::msg)?;
            if i >= a.warmup {
                store.push(t);
            }
            if on {
                detections = dets;
            }
        }
    }
    let medians = |ts: &[FrameTimes]| -> Vec<(&'static str, f64)> {
        let names = FrameTimes::default().stages().map(|(n, _)| n);
        names.iter().enumerate().map(|(k, &n)| (n, median(&ts.iter().map(|t| t.stages()[k].1.as_secs_f64() * 1e3).collect::<Vec<_>>()))).collect()
    };
    let (on, off) = (medians(&runs[0]), medians(&runs[1]));
    let backend = pipe.detector().backend();
    println!("whole frame, {} points, {backend} backend, {} threads, coverage {}, medians of {} (ms):", points.len(), a.threads, a.coverage, a.iters.max(1));
    println!("| stage | Eloss monitor on | off |\n|---|---:|---:|");
    for ((name, x), (_, y)) in on.iter().zip(&off) {
        println!("| {name} | {x:.2} | {y:.2} |");
    }
    println!("{} detections at score >= {}", detections.len(), settings.score_threshold);
    if let Some(path) = &a.json {
        let names = pipe.class_names();
        let dets: Vec<_> = detections
            .iter()
            .map(|d| {
                let b = &d.bbox;
                json!({"class": names.get(d.class).cloned().unwrap_or_default(), "score": d.score,
                       "box": [b.center[0], b.center[1], b.center[2], b.size[0], b.size[1], b.size[2], b.yaw]})
            })
            .collect();
        let stages = |m: &[(&str, f64)]| m.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>();
        let doc = json!({"engine": format!("eloss_perception (Rust, {backend})"), "threads": a.threads, "iters": a.iters.max(1),
                         "points": points.len(), "stages_ms": stages(&on), "stages_ms_monitor_off": stages(&off),
                         "total_ms": on.last().map(|x| x.1), "detections": dets});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
