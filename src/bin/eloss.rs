//! `eloss`: the project's command-line tool (bags, replay; later training,
//! evaluation and calibration). Thin: parses arguments, calls the library.
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

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
    /// Zero-shot GDC: build Gaussian class banks and classify images
    #[cfg(feature = "torch")]
    #[command(subcommand)]
    Gdc(GdcCmd),
    /// Publish a bag's messages through ROS 2 with their recorded timing
    #[cfg(feature = "ros")]
    Replay {
        bag: PathBuf,
        /// Playback speed relative to the recording
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
        /// Number of times to play the bag
        #[arg(long, default_value_t = 1)]
        loops: u32,
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
        #[arg(long, default_value = "velodyne")]
        lidar_frame: String,
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

#[cfg(feature = "torch")]
#[derive(Subcommand)]
enum GdcCmd {
    /// Fit a Gaussian class bank from image folders IMAGES/<class>/*.png|jpg
    Bank {
        #[arg(long)]
        images: PathBuf,
        /// Hugging Face DINOv2 folder, or EfficientNet-Lite0 .safetensors
        /// (set-up converts one to $ELOSS_CACHE/weights/efficientnet_lite0.safetensors)
        #[arg(long)]
        backbone: PathBuf,
        /// Embedding recipe: cls or cls+meanpatch (DINOv2), pooled (EfficientNet)
        #[arg(long, default_value = "cls")]
        recipe: String,
        /// Covariance model: full, diagonal or shared
        #[arg(long, default_value = "full")]
        covariance: String,
        /// Ridge relative to the mean eigenvalue of each covariance
        #[arg(long, default_value_t = eloss_perception::gdc::bank::DEFAULT_RIDGE_REL)]
        ridge: f64,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Classify images with a bank; prints the top classes with probabilities
    Classify {
        #[arg(long)]
        bank: PathBuf,
        #[arg(long)]
        backbone: PathBuf,
        #[arg(long, default_value_t = 3)]
        top: usize,
        images: Vec<PathBuf>,
    },
}

#[cfg(feature = "torch")]
fn gdc(cmd: GdcCmd) -> anyhow::Result<()> {
    use eloss_perception::gdc::backbone::EmbeddingRecipe;
    use eloss_perception::gdc::bank::{CovarianceKind, GaussianBank};
    use eloss_perception::gdc::{bank_builder, classifier::GdcClassifier, encoder};
    let device = tch::Device::cuda_if_available();
    match cmd {
        GdcCmd::Bank { images, backbone, recipe, covariance, ridge, batch, out } => {
            let recipe = EmbeddingRecipe::from_id(&recipe).with_context(|| format!("unknown recipe {recipe:?}"))?;
            let kind = match covariance.as_str() {
                "full" => CovarianceKind::Full { ridge_rel: ridge },
                "diagonal" => CovarianceKind::Diagonal { ridge_rel: ridge },
                "shared" => CovarianceKind::Shared { ridge_rel: ridge },
                other => anyhow::bail!("unknown covariance {other:?} (full, diagonal, shared)"),
            };
            let enc = encoder::load_encoder(&backbone, recipe, device)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("embedding [{bar:40}] {pos}/{len} images, {per_sec}, eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let bank = bank_builder::build_bank(&images, enc.as_ref(), kind.into(), batch, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish();
            bank.save(&out)?;
            println!("bank of {} classes ({}-d, {}) written to {}", bank.len(), bank.dim(), bank.spec().backbone, out.display());
            Ok(())
        }
        GdcCmd::Classify { bank, backbone, top, images } => {
            let bank = GaussianBank::load(&bank)?;
            let recipe = EmbeddingRecipe::from_id(&bank.spec().recipe).context("bank has an unknown embedding recipe")?;
            let classifier = GdcClassifier::new(encoder::load_encoder(&backbone, recipe, device)?, bank)?;
            for path in images {
                let img = bank_builder::read_rgb(&path)?;
                let dist = classifier.classify(std::slice::from_ref(&img), &[])?;
                let best: Vec<String> =
                    dist.first().into_iter().flatten().take(top).map(|(n, p)| format!("{n} {:.1}%", 100.0 * p)).collect();
                println!("{}: {}", path.display(), best.join(", "));
            }
            Ok(())
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Bag(BagCmd::Info { bag }) => {
            let r = eloss_perception::bag::BagReader::open(&bag).with_context(|| format!("opening {}", bag.display()))?;
            for t in r.topics()? {
                println!("{:<32} {:<40} {:>8} msgs", t.topic, t.type_name, t.message_count);
            }
            Ok(())
        }
        Cmd::Bag(BagCmd::FromKitti { bin, image, calib, frames, hz, lidar_frame, camera_frame, out }) => {
            let spec = eloss_perception::bag::kitti_drive::DriveSpec { frames, hz, lidar_frame, camera_frame };
            let n = eloss_perception::bag::kitti_drive::write(&bin, image.as_deref(), calib.as_deref(), &spec, &out)?;
            println!("wrote {n} messages to {}", out.display());
            Ok(())
        }
        Cmd::Simulate(a) => simulate(a),
        Cmd::Render(a) => render(a),
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
        Cmd::Gdc(c) => gdc(c),
        #[cfg(feature = "ros")]
        Cmd::Replay { bag, rate, fast, topics, wait_subscribers, loops } => {
            if !(wait_subscribers.is_finite() && wait_subscribers >= 0.0) {
                anyhow::bail!("--wait-subscribers must be >= 0");
            }
            let opts = eloss_perception::ros::replay::ReplayOptions {
                rate: if fast { None } else { Some(rate) },
                topics,
                wait_for_subscribers: std::time::Duration::from_secs_f64(wait_subscribers),
                loops,
            };
            let report = eloss_perception::ros::replay::replay(&bag, &opts)?;
            println!("published {} messages in {:.3} s", report.published, report.wall_time.as_secs_f64());
            Ok(())
        }
    }
}
