//! `eloss`: the project's command-line tool (bags, simulation, rendering,
//! KITTI evaluation, replay, the Eloss monitor's calibrate / eloss-eval).
//! Thin: parses arguments, calls the library. The detector's commands live in
//! `eloss/detector_cmds.rs`, the GDC ones (`eloss gdc ...`) in `eloss/gdc_cmds.rs`.
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[cfg(feature = "torch")]
#[path = "eloss/bench_detector.rs"]
mod bench_detector;
#[cfg(feature = "ros")]
#[path = "eloss/bench_frame.rs"]
mod bench_frame;
#[cfg(feature = "torch")]
#[path = "eloss/demo_cmds.rs"]
mod demo_cmds;
#[cfg(feature = "torch")]
#[path = "eloss/detector_cmds.rs"]
mod detector_cmds;
#[cfg(feature = "torch")]
#[path = "eloss/gdc_cmds.rs"]
mod gdc_cmds;
#[cfg(feature = "torch")]
#[path = "eloss/gpu_check.rs"]
mod gpu_check;
#[cfg(feature = "torch")]
#[path = "eloss/monitor_cmds.rs"]
mod monitor_cmds;
#[path = "eloss/realism_cmd.rs"]
mod realism_cmd;

#[derive(Parser)]
#[command(name = "eloss", version, about = "eloss_perception command-line tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inspect and create rosbag2 MCAP files
    #[command(subcommand)]
    Bag(BagCmd),
    /// Generate a simulated KITTI-format dataset (and/or a rosbag2 drive)
    Simulate(SimulateArgs),
    /// Draw a KITTI-format frame: bird's-eye view and camera image with boxes
    Render(RenderArgs),
    /// How close simulated frames are to a real KITTI frame: points, range, intensity, elevation, ground, points per car (table + plots)
    SimRealism(realism_cmd::RealismArgs),
    /// Calibrate the Eloss anomaly monitor of a detector on normal frames (docs/eloss_monitor.md)
    #[cfg(feature = "torch")]
    Calibrate(CalibrateArgs),
    /// Evaluate a calibrated Eloss monitor on frames with injected anomalies: table + PNG plots
    #[cfg(feature = "torch")]
    #[command(name = "eloss-eval")]
    ElossEval(ElossEvalArgs),
    /// The monitor's signals against the severity of each LiDAR anomaly, applied to normal clouds (tables + plots)
    #[cfg(feature = "torch")]
    DoseResponse(monitor_cmds::DoseArgs),
    /// KITTI object evaluation (AP R11/R40; 2D, BEV, 3D; Easy/Moderate/Hard) of
    /// label_2-format detections against label_2 ground truth
    Eval {
        /// Ground-truth label_2 folder
        #[arg(long)]
        gt: PathBuf,
        /// Detection folder: one label_2-format file per frame, with the score column
        #[arg(long)]
        dt: PathBuf,
        /// Print one markdown table instead of OpenPCDet's layout
        #[arg(long)]
        markdown: bool,
    },
    /// Train the 3D detector (detection loss + Entropy Loss) on a KITTI-format folder; resumable
    #[cfg(feature = "torch")]
    Train(detector_cmds::TrainArgs),
    /// Run a detector checkpoint over KITTI-format frames: label_2 files, timings, AP
    #[cfg(feature = "torch")]
    Detect(detector_cmds::DetectArgs),
    /// Detector checkpoints on one labelled real frame: cars found at BEV IoU 0.5 / 0.7, car boxes on nothing
    #[cfg(feature = "torch")]
    RealFrame(detector_cmds::RealFrameArgs),
    /// Paired seed study of runs with / without the Entropy Loss: mean differences, 95 % intervals, AP curves
    #[cfg(feature = "torch")]
    SeedStudy(detector_cmds::SeedStudyArgs),
    /// The prepared device check: full-size detector latency and CPU parity, train_full.yaml steps (mixed precision on CUDA)
    #[cfg(feature = "torch")]
    GpuCheck(gpu_check::GpuCheckArgs),
    /// Per-stage CPU latency of the detector on one cloud, the inference graphs side by side (+ a dump for the PyTorch comparison)
    #[cfg(feature = "torch")]
    BenchDetector(bench_detector::BenchArgs),
    /// The node's whole frame per stage, PointCloud2 bytes to the published messages, Eloss monitor on and off (+ JSON for scripts/bench_frame_python.py)
    #[cfg(feature = "ros")]
    BenchFrame(bench_frame::BenchFrameArgs),
    /// Build the ground-truth sampling database of a KITTI-format folder (objects with their points; `eloss train` builds it itself when missing)
    #[cfg(feature = "torch")]
    GtDatabase(detector_cmds::GtDatabaseArgs),
    /// Strip a training checkpoint to a deployable model (weights + metadata)
    #[cfg(feature = "torch")]
    ExportModel(detector_cmds::ExportArgs),
    /// Convert an OpenPCDet PointPillars checkpoint (.pth) into our model format (docs/model_card.md)
    #[cfg(feature = "torch")]
    ImportOpenpcdet(detector_cmds::ImportOpenPcdetArgs),
    /// Training curves of several runs in one picture (e.g. with and without Entropy Loss)
    #[cfg(feature = "torch")]
    PlotRuns(detector_cmds::PlotRunsArgs),
    /// Zero-shot GDC: build Gaussian class banks and classify images
    #[cfg(feature = "torch")]
    #[command(subcommand)]
    Gdc(gdc_cmds::GdcCmd),
    /// The demo's drive with a story, default GDC bank, summary and figure (scripts/demo.sh)
    #[cfg(feature = "torch")]
    #[command(subcommand)]
    Demo(demo_cmds::DemoCmd),
    /// Publish a bag's messages through ROS 2 with their recorded timing and QoS
    #[cfg(feature = "ros")]
    Replay {
        bag: PathBuf,
        /// Playback speed relative to the recording (0.001 to 1000)
        #[arg(long, default_value_t = 1.0, conflicts_with = "fast")]
        rate: f64,
        /// Publish as fast as possible, ignoring the recorded timing
        #[arg(long)]
        fast: bool,
        /// Replay only this topic (repeatable; default: all)
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Seconds to wait for a subscriber on every topic before publishing
        #[arg(long, default_value_t = 0.0)]
        wait_subscribers: f64,
        /// Number of times to play the bag (with --clock, time jumps back to the start each loop)
        #[arg(long, default_value_t = 1)]
        loops: u32,
        /// Publish the bag's time on /clock (rosgraph_msgs/Clock), for nodes with use_sim_time
        #[arg(long)]
        clock: bool,
        /// Steady /clock rate with --clock (besides one before every message), Hz
        #[arg(long, default_value_t = eloss_perception::ros::replay::DEFAULT_CLOCK_HZ, requires = "clock")]
        clock_hz: f64,
    },
}

#[derive(Subcommand)]
enum BagCmd {
    /// List topics, types, message counts and duration
    Info { bag: PathBuf },
    /// Write a drive from a KITTI frame: its cloud (and image + camera info when
    /// the PNG and P2 calibration are given) repeated at a fixed rate
    FromKitti {
        /// KITTI velodyne .bin (x, y, z, reflectance as little-endian f32)
        #[arg(long)]
        bin: PathBuf,
        /// Left colour image (image_2 PNG)
        #[arg(long)]
        image: Option<PathBuf>,
        /// File with the 12 numbers of P2 (3x4, row-major) or a KITTI calib file
        #[arg(long)]
        calib: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        frames: u32,
        #[arg(long, default_value_t = 10.0)]
        hz: f64,
        /// Vehicle frame on the ground below the LiDAR (parent of lidar_frame in /tf_static)
        #[arg(long, default_value = "base_link")]
        base_frame: String,
        #[arg(long, default_value = "velodyne")]
        lidar_frame: String,
        /// Rectified camera-0 optical frame of the image and CameraInfo (child of lidar_frame in /tf_static)
        #[arg(long, default_value = "camera")]
        camera_frame: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Number of frames (dataset frames, and drive frames with --bag)
    #[arg(long)]
    frames: usize,
    /// ImageSets list the new frames join: train or val
    #[arg(long, default_value = "train")]
    split: String,
    /// KITTI object folder to create or extend
    #[arg(long, required_unless_present = "bag")]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// kind:severity list, e.g. fog:0.5,noise:high,blur:low (severity low|medium|high|0..1)
    #[arg(long, default_value = "")]
    anomalies: String,
    /// Fraction of frames that get one of the anomalies (default 0.5 when --anomalies is given)
    #[arg(long)]
    anomaly_fraction: Option<f64>,
    /// LiDAR preset: hdl64e or vlp32
    #[arg(long, default_value = "hdl64e")]
    preset: String,
    /// Also write a drive (ego motion, moving objects) as a rosbag2 MCAP
    #[arg(long)]
    bag: Option<PathBuf>,
    /// Drive frame rate
    #[arg(long, default_value_t = 10.0)]
    hz: f64,
    /// Randomise the LiDAR per dataset frame (sim-to-real): all, or any of beams,fov,mount,intensity,dropout
    #[arg(long, default_value = "")]
    vary_sensor: String,
    /// Reflectance model: lambert (the presets') or kitti (fitted to a real KITTI frame; docs/simulator.md)
    #[arg(long)]
    intensity_model: Option<String>,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// KITTI object folder (with --id)
    #[arg(long, requires = "id", conflicts_with = "bin")]
    data: Option<PathBuf>,
    /// Frame id, e.g. 000123
    #[arg(long)]
    id: Option<String>,
    /// Explicit files instead of --data/--id: velodyne .bin ...
    #[arg(long, requires = "calib")]
    bin: Option<PathBuf>,
    /// ... left colour image (optional) ...
    #[arg(long)]
    image: Option<PathBuf>,
    /// ... KITTI calib file ...
    #[arg(long)]
    calib: Option<PathBuf>,
    /// ... and label_2 file (optional)
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Output folder for <id>_bev.png and <id>_camera.png
    #[arg(long)]
    out: PathBuf,
}

fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    use eloss_perception::dataset::sim::dataset_writer as dw;
    let anomalies = dw::parse_anomaly_list(&a.anomalies)?;
    let mut opts = dw::SimulateOptions::new(a.frames, PathBuf::new());
    opts.out = a.out;
    opts.split = a.split.parse()?;
    opts.seed = a.seed;
    opts.anomaly_fraction = a.anomaly_fraction.unwrap_or(if anomalies.is_empty() { 0.0 } else { 0.5 });
    opts.anomalies = anomalies;
    opts.preset = a.preset.parse()?;
    opts.sensor_variation = eloss_perception::dataset::sim::SensorVariation::parse(&a.vary_sensor)?;
    opts.intensity_model = a.intensity_model.as_deref().map(str::parse).transpose()?;
    opts.bag = a.bag.map(|path| dw::BagOptions { path, hz: a.hz });
    let bar = indicatif::ProgressBar::new(a.frames as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} frames, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = dw::simulate(&opts, |stage, done, total| {
        let msg = match stage {
            dw::Stage::Dataset => "dataset",
            dw::Stage::Bag => "bag",
        };
        if bar.message() != msg {
            bar.set_message(msg);
            bar.set_length(total as u64);
            bar.reset();
        }
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "{} frames in {:.1} s ({:.2} frames/s): {} labels ({} DontCare), {} anomalous frames, {} bag messages",
        report.frames, report.seconds, report.frames_per_s, report.labels, report.dont_care, report.anomalous_frames, report.bag_messages
    );
    if let (Some(first), Some(last)) = (report.ids.first(), report.ids.last()) {
        println!("dataset ids {first}..={last}");
    }
    Ok(())
}

/// A labelled real frame folder (as ../shared/data/kitti_000008): mmdetection3d's
/// `info.json` (calibration, labels) and its one velodyne `.bin` cloud.
fn read_real_frame(dir: &std::path::Path) -> anyhow::Result<(eloss_perception::dataset::kitti::info_json::InfoFrame, eloss_perception::cloud::Points)> {
    let info = eloss_perception::dataset::kitti::info_json::InfoFrame::read(dir)?;
    let bin = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .with_context(|| format!("no .bin cloud in {}", dir.display()))?;
    let points = eloss_perception::cloud::kitti_bin::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    Ok((info, points))
}

/// The LiDAR-frame boxes of the labelled cars.
fn car_boxes(
    labels: &[eloss_perception::dataset::kitti::ObjectLabel],
    calib: &eloss_perception::dataset::kitti::Calibration,
) -> Vec<eloss_perception::geometry::Box3D> {
    use eloss_perception::dataset::kitti::ObjectClass;
    labels.iter().filter(|l| l.class == ObjectClass::Car).map(|l| l.to_lidar_box(calib)).collect()
}

fn render(a: RenderArgs) -> anyhow::Result<()> {
    use eloss_perception::dataset::kitti::{read_labels, Calibration, KittiDataset, Split};
    use eloss_perception::dataset::render::{render_files, BevOptions};
    let opts = BevOptions::default();
    let rendered = match (a.data, a.id, a.bin, a.calib) {
        (Some(data), Some(id), _, _) => {
            let ds = KittiDataset::open(&data, Split::Training)?;
            let frame = ds.frame(&id)?;
            render_files(&frame.points, &frame.calib, &frame.labels, frame.image_path.as_deref(), &a.out, &id, &opts)?
        }
        (None, _, Some(bin), Some(calib_path)) => {
            let points = eloss_perception::cloud::kitti_bin::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
            let calib = Calibration::read(&calib_path)?;
            let labels = match &a.labels {
                Some(p) => read_labels(p)?,
                None => Vec::new(),
            };
            let name = bin.file_stem().and_then(|s| s.to_str()).unwrap_or("frame").to_owned();
            render_files(&points, &calib, &labels, a.image.as_deref(), &a.out, &name, &opts)?
        }
        _ => anyhow::bail!("give --data DIR --id ID, or --bin FILE --calib FILE [--image FILE] [--labels FILE]"),
    };
    println!("wrote {}", rendered.bev.display());
    if let Some(c) = rendered.camera {
        println!("wrote {}", c.display());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cmd = Cli::parse().cmd;
    // before anything asks libtorch about CUDA (a seed, a device), or it never will see it
    #[cfg(feature = "torch")]
    eloss_perception::torch_cuda::load();
    match cmd {
        Cmd::Bag(BagCmd::Info { bag }) => {
            let r = eloss_perception::bag::BagReader::open(&bag).with_context(|| format!("opening {}", bag.display()))?;
            for t in r.topics()? {
                println!("{:<32} {:<40} {:>8} msgs", t.topic, t.type_name, t.message_count);
            }
            Ok(())
        }
        Cmd::Bag(BagCmd::FromKitti { bin, image, calib, frames, hz, base_frame, lidar_frame, camera_frame, out }) => {
            let spec = eloss_perception::bag::kitti_drive::DriveSpec { frames, hz, base_frame, lidar_frame, camera_frame };
            let n = eloss_perception::bag::kitti_drive::write(&bin, image.as_deref(), calib.as_deref(), &spec, &out)?;
            println!("wrote {n} messages to {}", out.display());
            Ok(())
        }
        Cmd::Simulate(a) => simulate(a),
        Cmd::Render(a) => render(a),
        Cmd::SimRealism(a) => realism_cmd::run(a),
        #[cfg(feature = "torch")]
        Cmd::Calibrate(a) => calibrate(a),
        #[cfg(feature = "torch")]
        Cmd::ElossEval(a) => eloss_eval(a),
        #[cfg(feature = "torch")]
        Cmd::DoseResponse(a) => monitor_cmds::dose_response(a),
        Cmd::Eval { gt, dt, markdown } => {
            use eloss_perception::eval::{evaluate_folders, ids_in_dir, EvalConfig};
            let ids = ids_in_dir(&gt)?;
            let report = evaluate_folders(&gt, &dt, &ids, &EvalConfig::default())?;
            if markdown {
                print!("{}", report.markdown_table());
            } else {
                print!("{report}");
            }
            Ok(())
        }
        #[cfg(feature = "torch")]
        Cmd::Train(a) => detector_cmds::train(a),
        #[cfg(feature = "torch")]
        Cmd::Detect(a) => detector_cmds::detect(a),
        #[cfg(feature = "torch")]
        Cmd::RealFrame(a) => detector_cmds::real_frame(a),
        #[cfg(feature = "torch")]
        Cmd::SeedStudy(a) => detector_cmds::seed_study(a),
        #[cfg(feature = "torch")]
        Cmd::GpuCheck(a) => gpu_check::gpu_check(a),
        #[cfg(feature = "torch")]
        Cmd::BenchDetector(a) => bench_detector::bench(a),
        #[cfg(feature = "ros")]
        Cmd::BenchFrame(a) => bench_frame::bench(a),
        #[cfg(feature = "torch")]
        Cmd::GtDatabase(a) => detector_cmds::gt_database(a),
        #[cfg(feature = "torch")]
        Cmd::ExportModel(a) => detector_cmds::export(a),
        #[cfg(feature = "torch")]
        Cmd::ImportOpenpcdet(a) => detector_cmds::import_openpcdet(a),
        #[cfg(feature = "torch")]
        Cmd::PlotRuns(a) => detector_cmds::plot_runs(a),
        #[cfg(feature = "torch")]
        Cmd::Gdc(c) => gdc_cmds::gdc(c),
        #[cfg(feature = "torch")]
        Cmd::Demo(c) => demo_cmds::demo(c),
        #[cfg(feature = "ros")]
        Cmd::Replay { bag, rate, fast, topics, wait_subscribers, loops, clock, clock_hz } => {
            use eloss_perception::ros::replay;
            let wait_for_subscribers = std::time::Duration::try_from_secs_f64(wait_subscribers)
                .ok()
                .filter(|_| wait_subscribers.is_finite())
                .with_context(|| format!("--wait-subscribers must be a number of seconds >= 0 (got {wait_subscribers})"))?;
            let rate = if fast { None } else { Some(rate) };
            if let Some(r) = rate {
                replay::check_rate(r).context("--rate")?;
            }
            let clock_hz = if clock { Some(clock_hz) } else { None };
            if let Some(hz) = clock_hz {
                replay::check_clock_hz(hz).context("--clock-hz")?;
            }
            let opts = replay::ReplayOptions { rate, topics, wait_for_subscribers, loops, clock_hz };
            let report = replay::replay(&bag, &opts)?;
            println!("published {} messages in {:.3} s", report.published, report.wall_time.as_secs_f64());
            if clock {
                println!("published {} /clock messages", report.clock_published);
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- Eloss monitor: calibrate, eloss-eval

#[cfg(feature = "torch")]
#[derive(clap::Args)]
struct CalibrateArgs {
    /// Detector checkpoint (.safetensors)
    #[arg(long)]
    model: PathBuf,
    /// KITTI-format folder of normal frames (frames listed in its anomalies.json as anomalous are skipped)
    #[arg(long)]
    data: PathBuf,
    /// Frames to use: train, val, trainval (ImageSets lists) or all
    #[arg(long, default_value = "val")]
    split: String,
    /// Use at most this many frames, in list order
    #[arg(long)]
    frames: Option<usize>,
    /// Target false-alarm rate per frame (before hysteresis)
    #[arg(long, default_value_t = 0.01)]
    false_alarm: f64,
    /// Entropy estimator: gaussian, gaussian:RIDGE_REL or knn
    #[arg(long, default_value = "gaussian")]
    estimator: String,
    /// Grouping of ΔH in the Eloss: per_block or reference (default: the one the model was trained with, per_block when the checkpoint records none)
    #[arg(long)]
    grouping: Option<String>,
    /// Cells the entropies are estimated over: all, occupied (those seeing a non-empty pillar) or subsampled (every second row and column; docs/eloss_monitor.md)
    #[arg(long, default_value = "all")]
    cells: String,
    /// Score the threshold applies to: combined, eloss or mahalanobis
    #[arg(long, default_value = "combined")]
    score: String,
    /// Fraction of the frames (the last ones) held out to set the threshold
    #[arg(long, default_value_t = 0.3)]
    held_out: f64,
    /// Ridge of the entropy covariance, relative to each layer's variance
    #[arg(long, default_value_t = 0.01)]
    ridge: f64,
    /// Simulated KITTI folder with injected anomalies: one type signature per anomaly kind
    #[arg(long)]
    anomalies_data: Option<PathBuf>,
    /// Use at most this many anomalous frames of --anomalies-data
    #[arg(long)]
    signature_frames: Option<usize>,
    /// Output file (default: <model stem>.calibration.json beside the model)
    #[arg(long)]
    out: Option<PathBuf>,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
struct ElossEvalArgs {
    /// Detector checkpoint (.safetensors)
    #[arg(long)]
    model: PathBuf,
    /// Calibration file (default: <model stem>.calibration.json beside the model)
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Simulated KITTI folder with anomalies.json (clean and anomalous frames)
    #[arg(long)]
    data: PathBuf,
    /// Frames to use: train, val, trainval (ImageSets lists) or all
    #[arg(long, default_value = "all")]
    split: String,
    /// Use at most this many frames, in list order
    #[arg(long)]
    frames: Option<usize>,
    /// Output folder for eloss_eval.md, frames.csv and the PNG plots
    #[arg(long, default_value = "eloss_eval")]
    out: PathBuf,
}

#[cfg(feature = "torch")]
fn open_frames(root: &std::path::Path, split: &str) -> anyhow::Result<eloss_perception::dataset::kitti::KittiDataset> {
    use eloss_perception::dataset::kitti::{ImageSet, KittiDataset, Split};
    let set = match split {
        "all" => return Ok(KittiDataset::open(root, Split::Training)?),
        "train" => ImageSet::Train,
        "val" => ImageSet::Val,
        "trainval" => ImageSet::TrainVal,
        other => anyhow::bail!("unknown split {other:?} (train, val, trainval, all)"),
    };
    Ok(KittiDataset::open_image_set(root, set)?)
}

#[cfg(feature = "torch")]
fn frame_bar(len: usize, msg: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} frames, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar
}

#[cfg(feature = "torch")]
fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    use eloss_perception::eloss::calibration::{default_path, CalibrationOptions, EntropyCalibration};
    use eloss_perception::eloss::dataset_run::{is_anomalous, kind_name, read_anomalies, run_frames};
    use eloss_perception::eloss::profile::ProfileSpec;
    use eloss_perception::eloss::{entropy::Estimator, score::ScoreKind};
    let estimator: Estimator = a.estimator.parse()?;
    let score: ScoreKind = a.score.parse().map_err(anyhow::Error::msg)?;
    let (det, info) = eloss_perception::detect::checkpoint::load(&a.model, eloss_perception::torch_cuda::cuda_if_available())?;
    let requested = a.grouping.as_deref().map(str::parse::<eloss_perception::eloss::grouping::Grouping>).transpose()?;
    let grouping = eloss_perception::eloss::grouping::Grouping::of_checkpoint(&info.training, requested)?;
    let spec = ProfileSpec { estimator, grouping, cells: a.cells.parse()? };
    let ds = open_frames(&a.data, &a.split)?;
    let tags = read_anomalies(&a.data)?;
    let ids: Vec<String> = ds.ids().iter().filter(|id| !is_anomalous(&tags, id)).take(a.frames.unwrap_or(usize::MAX)).cloned().collect();
    let bar = frame_bar(ids.len(), "normal");
    let records = run_frames(&det, &ds, &ids, spec, false, |d, _| bar.set_position(d as u64))?;
    bar.finish_and_clear();
    let profiles: Vec<_> = records.iter().map(|r| r.profile.clone()).collect();
    let source = serde_json::json!({
        "data": a.data.display().to_string(), "split": a.split, "frames": ids.len(),
        "model": a.model.display().to_string(), "anomalies_data": a.anomalies_data.as_ref().map(|p| p.display().to_string()),
    });
    let opts = CalibrationOptions { false_alarm: a.false_alarm, held_out_fraction: a.held_out, ridge_rel: a.ridge, score };
    let mut cal = EntropyCalibration::fit(&info.model_id, &profiles, &opts, source)?;
    if let Some(dir) = &a.anomalies_data {
        let sig_ds = open_frames(dir, "all")?;
        let sig_tags = read_anomalies(dir)?;
        let lidar = |id: &String| sig_tags.get(id).and_then(Option::as_ref).is_some_and(|t| t.lidar.is_some());
        let sig_ids: Vec<String> = sig_ds.ids().iter().filter(|id| lidar(id)).take(a.signature_frames.unwrap_or(usize::MAX)).cloned().collect();
        let bar = frame_bar(sig_ids.len(), "anomalous");
        let recs = run_frames(&det, &sig_ds, &sig_ids, spec, false, |d, _| bar.set_position(d as u64))?;
        bar.finish_and_clear();
        let mut groups: std::collections::BTreeMap<String, Vec<_>> = Default::default();
        for r in recs {
            if let Some((kind, _)) = r.lidar_anomaly {
                groups.entry(kind_name(kind)).or_default().push(r.profile);
            }
        }
        cal.set_signatures(&groups.into_iter().collect::<Vec<_>>())?;
    }
    let out = a.out.unwrap_or_else(|| default_path(&a.model));
    cal.save(&out)?;
    let ms = |f: &dyn Fn(&eloss_perception::eloss::dataset_run::FrameRecord) -> std::time::Duration| {
        records.iter().map(|r| f(r).as_secs_f64() * 1e3).sum::<f64>() / records.len().max(1) as f64
    };
    let (detect_ms, profile_ms) = (ms(&|r| r.detect_time), ms(&|r| r.profile.compute_time));
    println!(
        "calibration {} for model {} ({} estimator, {} grouping): {} fit + {} held-out frames, median Eloss {:.4e}",
        cal.calibration_id, cal.model_id, estimator.name(), grouping.name(), cal.fit_frames, cal.held_out_frames, cal.normal.eloss_median
    );
    println!(
        "threshold {:.3} ({:?} score) for false-alarm rate {} (certifiable {:.4}; held-out rate {:.4})",
        cal.threshold, cal.score, cal.target_false_alarm, cal.achievable_false_alarm, cal.held_out_false_alarm
    );
    for s in &cal.signatures {
        println!("signature {:<22} {:>4} frames, median deviation factor {:.2}", s.name, s.frames, s.median_deviation_factor);
    }
    println!("per frame: detector {detect_ms:.1} ms, Eloss profile {profile_ms:.2} ms ({:.1} %)", 100.0 * profile_ms / detect_ms.max(1e-9));
    println!("wrote {}", out.display());
    Ok(())
}

/// A detector checkpoint with its Eloss calibration (`calibration`, else the
/// one beside the model), refused when the calibration is for other weights.
#[cfg(feature = "torch")]
fn load_calibrated_model(
    model: &std::path::Path,
    calibration: Option<&std::path::Path>,
) -> anyhow::Result<(eloss_perception::detect::detector::Detector, eloss_perception::detect::checkpoint::CheckpointInfo, eloss_perception::eloss::calibration::EntropyCalibration)> {
    use eloss_perception::eloss::calibration::{default_path, EntropyCalibration};
    let (det, info) = eloss_perception::detect::checkpoint::load(model, eloss_perception::torch_cuda::cuda_if_available())?;
    let cal = EntropyCalibration::load(&calibration.map_or_else(|| default_path(model), std::path::Path::to_path_buf))?;
    cal.check_model(&info.model_id)?;
    Ok((det, info, cal))
}

#[cfg(feature = "torch")]
fn eloss_eval(a: ElossEvalArgs) -> anyhow::Result<()> {
    use eloss_perception::eloss::dataset_run::{kind_name, run_frames};
    use eloss_perception::eloss::evaluation::{markdown, plots, score_frames, summarize};
    use std::fmt::Write as _;
    let (det, _, cal) = load_calibrated_model(&a.model, a.calibration.as_deref())?;
    let ds = open_frames(&a.data, &a.split)?;
    let ids: Vec<String> = ds.ids().iter().take(a.frames.unwrap_or(usize::MAX)).cloned().collect();
    let bar = frame_bar(ids.len(), "frames");
    let records = run_frames(&det, &ds, &ids, cal.profile_spec(), true, |d, _| bar.set_position(d as u64))?;
    bar.finish_and_clear();
    let scores = score_frames(&cal, &records)?;
    let summary = summarize(&cal, &records, &scores)?;
    let table = markdown(&summary);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let md = a.out.join("eloss_eval.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    let mut csv = String::from("id,kind,severity,eloss,deviation_factor,mahalanobis,z_eloss,z_mahalanobis,score,detect_ms,profile_ms\n");
    for (r, s) in records.iter().zip(&scores) {
        let (kind, sev) = r.lidar_anomaly.map_or((if r.camera_anomaly { "camera".into() } else { String::new() }, 0.0), |(k, v)| (kind_name(k), v));
        let _ = writeln!(
            csv,
            "{},{kind},{sev},{:e},{:e},{:e},{:e},{:e},{:e},{:.3},{:.3}",
            r.id, r.profile.eloss, s.deviation_factor, s.mahalanobis, s.z_eloss, s.z_mahalanobis, s.score,
            r.detect_time.as_secs_f64() * 1e3, r.profile.compute_time.as_secs_f64() * 1e3
        );
    }
    let csv_path = a.out.join("frames.csv");
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    print!("{table}");
    println!("\nwrote {} and {}", md.display(), csv_path.display());
    for p in plots(&a.out, &cal, &records, &scores)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}
