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
