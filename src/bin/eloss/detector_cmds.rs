//! `eloss train` and `eloss detect`: the detector's commands.

use anyhow::Context as _;
use eloss_perception::dataset::kitti::{ImageSet, KittiDataset};
use eloss_perception::detect::checkpoint;
use eloss_perception::eval::EvalConfig;
use eloss_perception::train::trainer::{TrainConfig, Trainer};
use eloss_perception::train::validate::predict;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training configuration (YAML; see config/train_compact.yaml). Defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// KITTI-format folder (ImageSets/train.txt and val.txt when present)
    #[arg(long)]
    data: PathBuf,
    /// Run folder: checkpoints, logs, curves. An existing run is resumed.
    #[arg(long)]
    run: PathBuf,
    /// Override the config's Entropy Loss weight (0 = plain detection training)
    #[arg(long)]
    eloss_weight: Option<f64>,
    /// Override the config's number of epochs
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the config's frames per step (a run keeps the size it started with)
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override the config's background loader threads (0: load on the training thread)
    #[arg(long)]
    loader_threads: Option<usize>,
    /// libtorch intra-op threads (default: libtorch's choice)
    #[arg(long)]
    threads: Option<i32>,
    /// Stop (with a checkpoint) after this many minutes; run again to resume
    #[arg(long)]
    minutes: Option<f64>,
    /// Override the config's ground-truth sampling switch (augment.gt_sampling.enabled)
    #[arg(long)]
    gt_sampling: Option<bool>,
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => TrainConfig::from_yaml(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)?,
        None => TrainConfig::default(),
    };
    if let Some(w) = a.eloss_weight {
        cfg.eloss_weight = w;
    }
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if let Some(b) = a.batch_size {
        cfg.batch_size = b;
    }
    if let Some(t) = a.loader_threads {
        cfg.loader_threads = t;
    }
    if let Some(on) = a.gt_sampling {
        cfg.augment.gt_sampling.enabled = on;
    }
    // the overrides go through the same bounds as the file's values
    let cfg = TrainConfig::from_yaml(&serde_yaml::to_string(&cfg)?)?;
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let device = eloss_perception::torch_cuda::cuda_if_available();
    let mut trainer = Trainer::open(cfg, &a.data, &a.run, device)?;
    tracing::info!(
        device = ?device,
        run = %a.run.display(),
        position = ?trainer.position,
        steps = trainer.total_steps(),
        batch_size = trainer.config.batch_size,
        loader_threads = trainer.config.loader_threads,
        mixed_precision = trainer.mixed_precision(),
        "training"
    );
    let bar = indicatif::ProgressBar::new(trainer.total_steps() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.position.global_step as u64);
    let interrupted = Arc::new(AtomicBool::new(false));
    let deadline = a.minutes.map(|m| std::time::Instant::now() + std::time::Duration::from_secs_f64(m * 60.0));
    let run_dir = a.run.clone();
    let (mut det_avg, mut el_avg) = (None::<f64>, None::<f64>);
    let ema = |avg: &mut Option<f64>, v: f64| *avg = Some(avg.map_or(v, |a| 0.98 * a + 0.02 * v));
    trainer.run(
        |e| {
            ema(&mut det_avg, e.detection);
            ema(&mut el_avg, e.eloss);
            bar.set_prefix(format!("{}", e.position.epoch));
            bar.set_position(e.position.global_step as u64);
            bar.set_message(format!(
                "det {:.3} eloss {:.4} lr {:.1e} wait {:.0}%",
                det_avg.unwrap_or(0.0),
                el_avg.unwrap_or(0.0),
                e.lr,
                100.0 * e.data_wait_seconds / e.seconds.max(1e-9)
            ));
        },
        |s| {
            let fmt = |v: &[(String, f64)]| v.iter().map(|(n, ap)| format!("{n} {ap:.1}")).collect::<Vec<_>>().join(", ");
            bar.println(format!("epoch {}: moderate AP_R40 BEV [{}] 3D [{}]", s.epoch, fmt(&s.bev), fmt(&s.ap3d)));
            if let Err(e) = eloss_perception::train::curves::plot_run(&run_dir) {
                tracing::warn!(error = %e, "could not draw the training curves");
            }
        },
        || interrupted.load(Ordering::Relaxed) || deadline.is_some_and(|d| std::time::Instant::now() >= d),
    )?;
    bar.finish();
    eloss_perception::train::curves::plot_run(&a.run).context("drawing the training curves")?;
    println!("run {} at epoch {} step {}", a.run.display(), trainer.position.epoch, trainer.position.global_step);
    Ok(())
}

#[derive(clap::Args)]
pub struct DetectArgs {
    /// Detector checkpoint (safetensors written by `eloss train`)
    #[arg(long)]
    model: PathBuf,
    /// KITTI-format folder
    #[arg(long)]
    data: PathBuf,
    /// ImageSets list to run on: train, val or all (every training frame)
    #[arg(long, default_value = "val")]
    set: String,
    /// At most this many frames (0 = all)
    #[arg(long, default_value_t = 0)]
    frames: usize,
    /// Write one label_2-format file per frame here
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the KITTI AP table against the folder's labels
    #[arg(long)]
    eval: bool,
    /// Keep detections scoring at least this (KITTI evaluation: 0.1, as OpenPCDet)
    #[arg(long, default_value_t = 0.1)]
    score_threshold: f32,
    #[arg(long)]
    threads: Option<i32>,
}

pub fn detect(a: DetectArgs) -> anyhow::Result<()> {
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let (mut det, info) = checkpoint::load(&a.model, eloss_perception::torch_cuda::cuda_if_available())?;
    det.set_score_threshold(a.score_threshold)?;
    let ds = match a.set.as_str() {
        "train" => KittiDataset::open_image_set(&a.data, ImageSet::Train)?,
        "val" => KittiDataset::open_image_set(&a.data, ImageSet::Val)?,
        "all" => KittiDataset::open(&a.data, eloss_perception::dataset::kitti::Split::Training)?,
        other => anyhow::bail!("--set must be train, val or all, not {other}"),
    };
    let mut ids = ds.ids().to_vec();
    if a.frames > 0 {
        ids.truncate(a.frames);
    }
    let bar = indicatif::ProgressBar::new(ids.len() as u64);
    let preds = predict(&det, &ds, &ids, |i| bar.set_position(i as u64))?;
    bar.finish_and_clear();
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out)?;
        for (id, labels) in preds.ids.iter().zip(&preds.detections) {
            let text: String = labels.iter().map(|l| format!("{}\n", l.to_kitti_line())).collect();
            std::fs::write(out.join(format!("{id}.txt")), text)?;
        }
    }
    let n = preds.timings.len().max(1) as f64;
    let ms = |f: fn(&eloss_perception::detect::detector::StageTimings) -> std::time::Duration| preds.timings.iter().map(|t| f(t).as_secs_f64() * 1e3).sum::<f64>() / n;
    println!(
        "model {} on {} frames: mean pillarize {:.1} ms, network {:.1} ms, postprocess {:.1} ms",
        info.model_id,
        preds.timings.len(),
        ms(|t| t.pillarize),
        ms(|t| t.network),
        ms(|t| t.postprocess)
    );
    if a.eval {
        print!("{}", preds.evaluate(&EvalConfig::default())?.markdown_table());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Training checkpoint (e.g. RUN/last.safetensors)
    #[arg(long)]
    model: PathBuf,
    /// Deployable model: weights + metadata, without the optimizer state
    #[arg(long)]
    out: PathBuf,
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let (det, info) = checkpoint::load(&a.model, tch::Device::Cpu)?;
    let id = checkpoint::save(&a.out, &det, &info.training, &[])?;
    println!("wrote {} (model id {id})", a.out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct ImportOpenPcdetArgs {
    /// OpenPCDet checkpoint (torch.save of {'model_state': ...}, e.g. pointpillar_7728.pth)
    #[arg(long)]
    ckpt: PathBuf,
    /// OpenPCDet model config (e.g. tools/cfgs/kitti_models/pointpillar.yaml); default: KITTI PointPillars
    #[arg(long)]
    cfg: Option<PathBuf>,
    /// Our model file (safetensors + metadata), for the node, `eloss detect` and `eloss train` (init)
    #[arg(long)]
    out: PathBuf,
}

pub fn import_openpcdet(a: ImportOpenPcdetArgs) -> anyhow::Result<()> {
    use eloss_perception::detect::openpcdet;
    let cfg = match &a.cfg {
        Some(p) => {
            let len = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?.len();
            anyhow::ensure!(len <= openpcdet::config::MAX_CONFIG_BYTES as u64, "{}: {len} bytes, more than the {} accepted for a config", p.display(), openpcdet::config::MAX_CONFIG_BYTES);
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let report = openpcdet::import(&a.ckpt, cfg.as_deref(), &a.out)?;
    println!(
        "wrote {} (model id {}): {} tensors imported, skipped {:?}; OpenPCDet checkpoint {}",
        a.out.display(),
        report.model_id,
        report.tensors,
        report.skipped,
        report.source
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct PlotRunsArgs {
    /// NAME=RUN_DIR, repeated: the runs to compare
    #[arg(long = "run", required = true)]
    runs: Vec<String>,
    /// Output prefix: writes PREFIX_loss.png and PREFIX_ap.png
    #[arg(long)]
    out: PathBuf,
}

pub fn plot_runs(a: PlotRunsArgs) -> anyhow::Result<()> {
    let runs = a
        .runs
        .iter()
        .map(|r| r.split_once('=').map(|(n, d)| (n.to_string(), PathBuf::from(d))).context("--run takes NAME=RUN_DIR"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    eloss_perception::train::curves::plot_comparison(&runs, &a.out)?;
    println!("wrote {}_loss.png and {}_ap.png", a.out.display(), a.out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct GtDatabaseArgs {
    /// KITTI-format folder
    #[arg(long)]
    data: PathBuf,
    /// Frames: train (ImageSets/train.txt, what `eloss train` uses) or all (every training frame)
    #[arg(long, default_value = "train")]
    set: String,
    /// Use at most this many frames (0 = all; `eloss train` keys its database by its frames: match max_train_frames)
    #[arg(long, default_value_t = 0)]
    frames: usize,
    /// Folder of the databases (default: $ELOSS_CACHE/gt_database, where `eloss train` looks)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Object classes, in the model's order
    #[arg(long, value_delimiter = ',', default_value = "Car,Pedestrian,Cyclist")]
    classes: Vec<String>,
}

/// `eloss gt-database`: builds (or finds) the ground-truth sampling database of a dataset.
pub fn gt_database(a: GtDatabaseArgs) -> anyhow::Result<()> {
    use eloss_perception::train::gt_database::{cache_dir, GtDatabase};
    let ds = match a.set.as_str() {
        "train" => KittiDataset::open_image_set(&a.data, ImageSet::Train)?,
        "all" => KittiDataset::open(&a.data, eloss_perception::dataset::kitti::Split::Training)?,
        other => anyhow::bail!("--set must be train or all, not {other}"),
    };
    let mut ids = ds.ids().to_vec();
    if a.frames > 0 {
        ids.truncate(a.frames);
    }
    let dir = match &a.out {
        Some(d) => d.clone(),
        None => cache_dir("", std::path::Path::new(".")),
    };
    let t0 = std::time::Instant::now();
    let (db, path, built) = GtDatabase::open_or_build(&dir, &ds, &ids, &a.classes)?;
    println!("{} {} ({} frames) in {:.1} s", if built { "built" } else { "found" }, path.display(), db.frames, t0.elapsed().as_secs_f64());
    for (name, n) in db.classes.iter().zip(db.counts()) {
        let k = db.classes.iter().position(|c| c == name).unwrap_or(0);
        let with5 = db.objects.iter().filter(|o| o.class == k && o.num_points >= 5).count();
        let known = db.objects.iter().filter(|o| o.class == k && o.num_points >= 5 && o.difficulty >= 0).count();
        println!("{name}: {n} objects, {with5} with >= 5 points, {known} of them with a KITTI difficulty");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RealFrameArgs {
    /// Detector checkpoint(s) (a model, or a run's last/final.safetensors); one line each
    #[arg(long, required = true, num_args = 1..)]
    model: Vec<PathBuf>,
    /// Real frame folder: one velodyne .bin and mmdetection3d's info.json (as ../shared/data/kitti_000008)
    #[arg(long, default_value = "../shared/data/kitti_000008")]
    real: PathBuf,
    /// Count boxes scoring at least this (the node's default publish threshold)
    #[arg(long, default_value_t = 0.3)]
    score_threshold: f32,
}

/// `eloss real-frame`: labelled cars found at BEV IoU 0.5 / 0.7 and car
/// boxes on no labelled object, per model, on one real labelled frame.
pub fn real_frame(a: RealFrameArgs) -> anyhow::Result<()> {
    use eloss_perception::detect::real_frame::count_cars;
    let (info, points) = crate::read_real_frame(&a.real)?;
    let labelled: Vec<_> = info.labels.iter().map(|l| l.to_lidar_box(&info.calib)).collect();
    let cars = crate::car_boxes(&info.labels, &info.calib);
    println!("| model | detections | car boxes | cars found at BEV IoU 0.5 | at 0.7 | car boxes on no labelled object |");
    println!("|---|---:|---:|---:|---:|---:|");
    for path in &a.model {
        let (mut det, info) = checkpoint::load(path, tch::Device::Cpu)?;
        det.set_score_threshold(a.score_threshold)?;
        let car = det.config.class_names().iter().position(|n| n == "Car").context("the model has no Car class")?;
        let out = det.detect(&points)?;
        let boxes: Vec<_> = out.detections.iter().filter(|d| d.class == car).map(|d| d.bbox).collect();
        let c = count_cars(&boxes, &cars, &labelled);
        println!(
            "| {} ({}) | {} | {} | {}/{} | {}/{} | {} |",
            path.display(),
            info.model_id,
            out.detections.len(),
            c.car_boxes,
            c.found_05,
            c.cars,
            c.found_07,
            c.cars,
            c.false_boxes
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct SeedStudyArgs {
    /// Run folders trained with the Entropy Loss, one per seed
    #[arg(long, required = true, num_args = 2..)]
    with: Vec<PathBuf>,
    /// Their pairs without it (same seeds, same order)
    #[arg(long, required = true, num_args = 2..)]
    without: Vec<PathBuf>,
    /// Writes PREFIX.md, PREFIX_bev.png and PREFIX_3d.png
    #[arg(long)]
    out: PathBuf,
}

/// `eloss seed-study`: paired differences with 95 % intervals and the curves.
pub fn seed_study(a: SeedStudyArgs) -> anyhow::Result<()> {
    use eloss_perception::train::seed_study::{markdown, paired_study, plot_curves};
    let rows = paired_study(&a.with, &a.without)?;
    let table = markdown(&rows);
    print!("{table}");
    let md = PathBuf::from(format!("{}.md", a.out.display()));
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    for p in plot_curves(&a.with, &a.without, &a.out)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}
