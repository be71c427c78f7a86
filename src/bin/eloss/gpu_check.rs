//! `eloss gpu-check`: the prepared check for a session with a GPU (issue 14
//! item 7, issue 15 item 6; scripts/gpu_check.sh, docs/gpu_check.md). On
//! whatever device libtorch sees (CUDA when there is one, else the CPU):
//! 1. the shipped compact model and the full-size detector (random weights,
//!    seed 0) on a simulated 64-beam sweep, fp32 and (on CUDA) fp16
//!    autocast: latency per stage (medians), and parity of the head outputs and final boxes with
//!    the same weights on the CPU (eval-mode modules as loaded, then the
//!    node's folded channels-last graph, against the CPU's eval-mode modules);
//! 2. `config/train_full.yaml` for a few steps on simulated frames, with
//!    mixed precision and (on CUDA) again without: steps/s, frames/s,
//!    data-wait share, finite losses.
//!
//! It also writes the frame's pillar input with the CPU's head outputs
//! (`pillars_dump.safetensors`) and the random weights
//! (`full_random.safetensors`), so scripts/bench_detector_torch.py --cuda
//! runs PyTorch on the same input and weights on the same device.
//!
//! Writes `OUT/gpu_check.json` and prints it.
use anyhow::Context as _;
use eloss_perception::dataset::sim::dataset_writer::{simulate, SimulateOptions};
use eloss_perception::dataset::sim::{Lidar, LidarConfig, SceneConfig};
use eloss_perception::detect::checkpoint;
use eloss_perception::cloud::Points;
use eloss_perception::detect::detector::{Detector, DetectorConfig, FrameOutput, INFERENCE_FORMAT};
use eloss_perception::detect::pillars::pillarize;
use eloss_perception::numeric::median;
use eloss_perception::train::trainer::{TrainConfig, Trainer};
use std::path::PathBuf;
use std::time::Instant;
use tch::Device;

#[derive(clap::Args)]
pub struct GpuCheckArgs {
    /// Folder for gpu_check.json, the simulated frames and the training run
    #[arg(long)]
    out: PathBuf,
    /// Inference iterations to time
    #[arg(long, default_value_t = 30)]
    iters: usize,
    /// Training steps to time (the first two are left out of the rates)
    #[arg(long, default_value_t = 30)]
    train_steps: usize,
    /// Frames per training step (train_full.yaml: 4)
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Simulated training frames
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Refuse (before any work) unless libtorch sees a CUDA device: what the
    /// device machine's run wants, so a broken CUDA set-up is not measured as
    /// a slow GPU
    #[arg(long)]
    require_cuda: bool,
}

fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    let (a, b) = (a.to_device(Device::Cpu).to_kind(tch::Kind::Double), b.to_device(Device::Cpu).to_kind(tch::Kind::Double));
    (a - b).abs().max().double_value(&[])
}

/// The libtorch this binary runs on, from its build-version file or the
/// torch package beside torch/lib (LD_LIBRARY_PATH decides which one loads).
fn torch_version() -> String {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| maps.lines().find(|l| l.ends_with("/libtorch_cpu.so")).and_then(|l| l.split_whitespace().last()).map(std::path::PathBuf::from))
        .and_then(|lib| {
            let torch = lib.parent()?.parent()?.to_path_buf();
            if let Ok(text) = std::fs::read_to_string(torch.join("version.py")) {
                let line = text.lines().find(|l| l.starts_with("__version__"))?;
                return Some(line.rsplit('=').next()?.trim().trim_matches(|c| c == '\'' || c == '"').to_string());
            }
            Some(std::fs::read_to_string(torch.join("build-version")).ok()?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Median latency per stage of `det` on `points` over `iters` runs (after a
/// warm-up: cuDNN autotuning, the allocator) and its parity with the CPU's
/// output; also the network median alone.
fn time_and_compare(det: &Detector, cpu_out: &FrameOutput, points: &Points, iters: usize) -> anyhow::Result<(serde_json::Value, f64)> {
    let _ = det.detect(points)?;
    let (mut pil, mut net, mut post, mut total) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..iters {
        let t = Instant::now();
        let out = det.detect(points)?; // detections are read back to the host: the device is synchronised
        total.push(t.elapsed().as_secs_f64() * 1e3);
        pil.push(out.timings.pillarize.as_secs_f64() * 1e3);
        net.push(out.timings.network.as_secs_f64() * 1e3);
        post.push(out.timings.postprocess.as_secs_f64() * 1e3);
        last = Some(out);
    }
    let out = last.context("no iteration")?;
    // final boxes: near-equal scores may swap places or the last places of the
    // top-k between devices, so each box is matched to the nearest CPU box of
    // its class; a match is a centre within 5 cm and a score within 0.01
    let nearest = |d: &eloss_perception::detect::postprocess::Detection| {
        cpu_out
            .detections
            .iter()
            .filter(|c| c.class == d.class)
            .map(|c| ((0..3).map(|k| (d.bbox.center[k] - c.bbox.center[k]).powi(2)).sum::<f64>().sqrt(), (d.score - c.score).abs()))
            .min_by(|x, y| x.0.total_cmp(&y.0))
    };
    let matches: Vec<_> = out.detections.iter().filter_map(nearest).filter(|&(dist, ds)| dist <= 0.05 && ds <= 0.01).collect();
    let box_diff = matches.iter().map(|m| m.0).fold(0.0, f64::max);
    let row = serde_json::json!({
        "median_ms": { "pillarize": median(&pil), "network": median(&net), "postprocess": median(&post), "total": median(&total) },
        "parity_with_cpu": {
            "cls_max_abs_diff": max_abs_diff(&out.head.cls, &cpu_out.head.cls),
            "box_max_abs_diff": max_abs_diff(&out.head.boxes, &cpu_out.head.boxes),
            "dir_max_abs_diff": max_abs_diff(&out.head.dir, &cpu_out.head.dir),
            "detections": [out.detections.len(), cpu_out.detections.len()],
            "same_labels_in_order": out.detections.iter().map(|d| d.class).eq(cpu_out.detections.iter().map(|d| d.class)),
            "boxes_matched": matches.len(),
            "matched_box_centre_max_diff_m": box_diff,
        },
    });
    Ok((row, median(&net)))
}

/// `config/train_full.yaml` (batch size from the arguments, mixed precision
/// as asked: it only takes effect on CUDA) for `--train-steps` steps on the
/// simulated frames in `sim`; rates leave the first two steps out.
fn train_rate(a: &GpuCheckArgs, sim: &std::path::Path, device: Device, mixed_precision: bool) -> anyhow::Result<serde_json::Value> {
    let mut cfg = TrainConfig::from_yaml(include_str!("../../../config/train_full.yaml"))?;
    cfg.batch_size = a.batch_size;
    cfg.val_frames = 0;
    cfg.mixed_precision = mixed_precision;
    let cfg = TrainConfig::from_yaml(&serde_yaml::to_string(&cfg)?)?;
    let run = a.out.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let mut trainer = Trainer::open(cfg, sim, &run, device)?;
    let mixed = trainer.mixed_precision();
    let (mut seconds, mut waits, mut frames, mut finite) = (vec![], vec![], vec![], true);
    let steps = a.train_steps;
    let count = std::cell::Cell::new(0usize);
    trainer.run(
        |e| {
            count.set(count.get() + 1);
            finite &= e.detection.is_finite() && e.eloss.is_finite();
            seconds.push(e.seconds);
            waits.push(e.data_wait_seconds);
            frames.push(e.frames as f64);
        },
        |_| {},
        || count.get() >= steps,
    )?;
    let timed = seconds.len().saturating_sub(2);
    let sum = |v: &[f64]| v.iter().skip(2).sum::<f64>();
    Ok(serde_json::json!({
        "model": "full",
        "batch_size": a.batch_size,
        "mixed_precision": mixed,
        "steps": seconds.len(),
        "losses_finite": finite,
        "steps_per_s": timed as f64 / sum(&seconds).max(1e-9),
        "frames_per_s": sum(&frames) / sum(&seconds).max(1e-9),
        "median_step_s": median(&seconds[2.min(seconds.len())..]),
        "data_wait_fraction": sum(&waits) / sum(&seconds).max(1e-9),
    }))
}

pub fn gpu_check(a: GpuCheckArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.iters > 0 && a.iters <= 10_000 && a.train_steps <= 100_000, "--iters 1..=10000, --train-steps <= 100000");
    anyhow::ensure!((1..=64).contains(&a.batch_size) && (1..=100_000).contains(&a.frames), "--batch-size 1..=64, --frames 1..=100000");
    let torch_cuda = eloss_perception::torch_cuda::load();
    let device = eloss_perception::torch_cuda::cuda_if_available();
    let cuda = tch::Cuda::is_available();
    tracing::info!(?device, cuda, devices = tch::Cuda::device_count(), cudnn = tch::Cuda::cudnn_is_available(), libtorch_cuda = %torch_cuda.describe(), "gpu check");
    anyhow::ensure!(
        cuda || !a.require_cuda,
        "--require-cuda: libtorch sees no CUDA device (libtorch_cuda {}; CUDA devices {}); nothing was measured",
        torch_cuda.describe(),
        tch::Cuda::device_count()
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;

    // 1. inference: the same weights on the device and on the CPU
    let scene = SceneConfig::default().generate(7).context("scene")?;
    let points = Lidar::new(LidarConfig::hdl64e())?.scan(&scene, &scene.snapshot(0.0), 7).points;
    let mut inference = serde_json::Map::new();
    inference.insert("points".into(), points.len().into());
    inference.insert("iterations".into(), a.iters.into());
    // the shipped compact model (trained: real score gaps, its own threshold,
    // realistic post-processing) and the full config with random weights (no
    // trained full model exists; every candidate kept)
    tch::manual_seed(0);
    let full_path = a.out.join("full_random.safetensors");
    checkpoint::save(&full_path, &Detector::new(DetectorConfig::full(), Device::Cpu)?, &serde_json::json!({}), &[])?; // cpu: weights are made on the host, then loaded on both
    let embedded = std::path::Path::new("<embedded>");
    for name in ["compact_shipped", "full_random"] {
        let load = |dev: Device| match name {
            "compact_shipped" => checkpoint::load_bytes(eloss_perception::perception::EMBEDDED_MODEL, embedded, dev),
            _ => checkpoint::load(&full_path, dev),
        };
        let (mut on_device, _) = load(device)?;
        let (mut on_cpu, _) = load(Device::Cpu)?; // cpu: the parity reference
        if name == "full_random" {
            on_device.set_score_threshold(1e-3)?;
            on_cpu.set_score_threshold(1e-3)?;
        }
        let cpu_out = on_cpu.detect(&points)?;
        let precisions: &[bool] = if cuda { &[false, true] } else { &[false] };
        // the eval-mode modules (what PyTorch eager runs), then the graph the
        // node runs (batch-norms folded, channels-last: Detector::fold_for_inference)
        for folded in [false, true] {
            if folded {
                on_device.fold_for_inference(INFERENCE_FORMAT);
            }
            for &fp16 in precisions {
                on_device.set_fp16_autocast(fp16)?;
                let (row, net_ms) = time_and_compare(&on_device, &cpu_out, &points, a.iters)?;
                inference.insert(format!("{name}_{}{}", if fp16 { "fp16" } else { "fp32" }, if folded { "_folded" } else { "" }), row);
                if name == "full_random" && !fp16 && !folded {
                    // the pillar input, the CPU's head outputs and our device median,
                    // for the PyTorch peers on the same device (bench_detector_torch.py --cuda)
                    let pillars = pillarize(&points, &on_cpu.config.pillars)?;
                    crate::bench_detector::write_pillar_dump(&a.out.join("pillars_dump.safetensors"), &pillars, &cpu_out.head, net_ms)?;
                }
            }
        }
    }
    let inference = serde_json::Value::Object(inference);

    // 2. training: train_full.yaml on simulated frames
    let sim = a.out.join("sim");
    if !sim.join("ImageSets").join("train.txt").is_file() {
        simulate(&SimulateOptions { seed: 1, ..SimulateOptions::new(a.frames, &sim) }, |_, _, _| {})?;
    }
    let training = train_rate(&a, &sim, device, true)?;
    // on CUDA also without mixed precision: what autocast buys
    let training_fp32 = if cuda { Some(train_rate(&a, &sim, device, false)?) } else { None };
    let report = serde_json::json!({
        "device": format!("{device:?}"),
        "cuda_available": cuda,
        "libtorch_cuda": torch_cuda.describe(),
        "torch_version": torch_version(),
        "cuda_devices": tch::Cuda::device_count(),
        "cudnn_available": tch::Cuda::cudnn_is_available(),
        "threads": tch::get_num_threads(),
        "inference": inference,
        "training": training,
        "training_fp32": training_fp32,
    });
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(a.out.join("gpu_check.json"), &text)?;
    println!("{text}");
    Ok(())
}
