//! `eloss gpu-check`: the prepared check for a session with a GPU (issue 14
//! item 7, issue 15 item 6; scripts/gpu_check.sh, docs/gpu_check.md). On
//! whatever device libtorch sees (CUDA when there is one, else the CPU):
//! 1. the full-size detector (`DetectorConfig::full`, random weights, seed 0)
//!    on a simulated 64-beam sweep: latency per stage (medians), and parity
//!    of its head outputs and final boxes with the same weights on the CPU;
//! 2. `config/train_full.yaml` (mixed precision on CUDA) for a few steps on
//!    simulated frames: steps/s, frames/s, data-wait share, finite losses,
//!    the loss scale.
//!
//! Writes `OUT/gpu_check.json` and prints it.
use anyhow::Context as _;
use eloss_perception::dataset::sim::dataset_writer::{simulate, SimulateOptions};
use eloss_perception::dataset::sim::{Lidar, LidarConfig, SceneConfig};
use eloss_perception::detect::checkpoint;
use eloss_perception::detect::detector::{Detector, DetectorConfig};
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

    // 1. inference: the same random weights on the device and on the CPU
    let scene = SceneConfig::default().generate(7).context("scene")?;
    let points = Lidar::new(LidarConfig::hdl64e())?.scan(&scene, &scene.snapshot(0.0), 7).points;
    tch::manual_seed(0);
    let model_path = a.out.join("full_random.safetensors");
    checkpoint::save(&model_path, &Detector::new(DetectorConfig::full(), Device::Cpu)?, &serde_json::json!({}), &[])?;
    let (mut on_device, _) = checkpoint::load(&model_path, device)?;
    let (mut on_cpu, _) = checkpoint::load(&model_path, Device::Cpu)?;
    // random weights score low: keep every candidate so the final boxes can be compared
    on_device.set_score_threshold(1e-3)?;
    on_cpu.set_score_threshold(1e-3)?;
    let _ = on_device.detect(&points)?; // warm-up (cuDNN autotuning, allocator)
    let (mut pil, mut net, mut post, mut total) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..a.iters {
        let t = Instant::now();
        let out = on_device.detect(&points)?; // detections are read back to the host: the device is synchronised
        total.push(t.elapsed().as_secs_f64() * 1e3);
        pil.push(out.timings.pillarize.as_secs_f64() * 1e3);
        net.push(out.timings.network.as_secs_f64() * 1e3);
        post.push(out.timings.postprocess.as_secs_f64() * 1e3);
        last = Some(out);
    }
    let dev_out = last.context("no iteration")?;
    let cpu_out = on_cpu.detect(&points)?;
    let box_diff = dev_out
        .detections
        .iter()
        .zip(&cpu_out.detections)
        .map(|(d, c)| (0..3).map(|k| (d.bbox.center[k] - c.bbox.center[k]).abs()).fold(0.0, f64::max))
        .fold(0.0, f64::max);
    let inference = serde_json::json!({
        "points": points.len(),
        "iterations": a.iters,
        "median_ms": { "pillarize": median(&pil), "network": median(&net), "postprocess": median(&post), "total": median(&total) },
        "parity_with_cpu": {
            "cls_max_abs_diff": max_abs_diff(&dev_out.head.cls, &cpu_out.head.cls),
            "box_max_abs_diff": max_abs_diff(&dev_out.head.boxes, &cpu_out.head.boxes),
            "dir_max_abs_diff": max_abs_diff(&dev_out.head.dir, &cpu_out.head.dir),
            "detections": [dev_out.detections.len(), cpu_out.detections.len()],
            "same_labels_in_order": dev_out.detections.iter().map(|d| d.class).eq(cpu_out.detections.iter().map(|d| d.class)),
            "box_centre_max_abs_diff_m": box_diff,
        },
    });

    // 2. training: train_full.yaml on simulated frames
    let sim = a.out.join("sim");
    if !sim.join("ImageSets").join("train.txt").is_file() {
        simulate(&SimulateOptions { seed: 1, ..SimulateOptions::new(a.frames, &sim) }, |_, _, _| {})?;
    }
    let mut cfg = TrainConfig::from_yaml(include_str!("../../../config/train_full.yaml"))?;
    cfg.batch_size = a.batch_size;
    cfg.val_frames = 0;
    let cfg = TrainConfig::from_yaml(&serde_yaml::to_string(&cfg)?)?;
    let run = a.out.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let mut trainer = Trainer::open(cfg, &sim, &run, device)?;
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
    let training = serde_json::json!({
        "model": "full",
        "batch_size": a.batch_size,
        "mixed_precision": mixed,
        "steps": seconds.len(),
        "losses_finite": finite,
        "steps_per_s": timed as f64 / sum(&seconds).max(1e-9),
        "frames_per_s": sum(&frames) / sum(&seconds).max(1e-9),
        "median_step_s": median(&seconds[2.min(seconds.len())..]),
        "data_wait_fraction": sum(&waits) / sum(&seconds).max(1e-9),
    });
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
    });
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(a.out.join("gpu_check.json"), &text)?;
    println!("{text}");
    Ok(())
}
