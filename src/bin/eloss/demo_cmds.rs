//! `eloss demo ...`: the pieces of `./scripts/demo.sh` (src/demo/): the
//! drive with a story, the default GDC bank, and the summary + figure.

use anyhow::Context as _;
use clap::Subcommand;
use eloss_perception::demo::story::{cached_story, KittiInput, Story, StoryConfig};
use eloss_perception::demo::{figure, summary};
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DemoCmd {
    /// Write (or reuse from CACHE) the drive with a story: the KITTI frame, then a
    /// simulated drive with a LiDAR fault that comes and goes; prints the story folder
    Drive {
        /// Folder holding KITTI frame 000008 (.bin, .png, .txt)
        #[arg(long)]
        kitti: PathBuf,
        /// Cache folder; the story goes to CACHE/story-<content hash>/
        #[arg(long)]
        cache: PathBuf,
        /// The short drive of the DDS test instead of the demo's
        #[arg(long)]
        small: bool,
    },
    /// Fit (or reuse from CACHE) the default GDC bank on simulated crops; prints its path
    Bank {
        /// EfficientNet-Lite0 weights (.safetensors; set-up converts them)
        #[arg(long)]
        backbone: PathBuf,
        #[arg(long)]
        cache: PathBuf,
    },
    /// Print the summary of a watched replay and write the figure
    Report {
        /// The story folder (`eloss demo drive` prints it)
        #[arg(long)]
        story: PathBuf,
        /// The watcher's JSON (scripts/demo_watch.py)
        #[arg(long)]
        record: PathBuf,
        /// The PNG to write
        #[arg(long)]
        png: PathBuf,
    },
}

pub fn demo(cmd: DemoCmd) -> anyhow::Result<()> {
    match cmd {
        DemoCmd::Drive { kitti, cache, small } => {
            let input = KittiInput { bin: kitti.join("000008.bin"), image: kitti.join("000008.png"), calib: kitti.join("000008.txt") };
            let cfg = if small { StoryConfig::small() } else { StoryConfig::demo() };
            std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
            let t = std::time::Instant::now();
            let (dir, reused) = cached_story(&cfg, &input, &cache, |done, total| {
                eprint!("\rwriting the drive: frame {done}/{total}");
                let _ = std::io::stderr().flush();
            })?;
            if !reused {
                eprintln!(" ({:.1} s)", t.elapsed().as_secs_f64());
            }
            println!("{}", dir.display());
            Ok(())
        }
        DemoCmd::Bank { backbone, cache } => {
            use eloss_perception::demo::bank::{build, cached_path, BankConfig};
            use eloss_perception::gdc::backbone::EmbeddingRecipe;
            let cfg = BankConfig::default();
            std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
            let path = cached_path(&cfg, &backbone, &cache)?;
            if !path.exists() {
                let t = std::time::Instant::now();
                let encoder = eloss_perception::gdc::encoder::load_encoder(&backbone, EmbeddingRecipe::default_for(&backbone), tch::Device::Cpu)?;
                let (bank, report) = build(&cfg, encoder.as_ref(), |frames, counts| {
                    eprint!("\rdefault GDC bank: {frames} simulated frames, crops {counts:?}   ");
                    let _ = std::io::stderr().flush();
                })?;
                bank.save(&path)?;
                eprintln!(
                    "\ndefault GDC bank: {} classes from {} frames ({:?}), fitted temperature {:.1}, held-out accuracy {:.1} % ({:.1} s)",
                    bank.len(),
                    report.frames,
                    report.crops,
                    report.temperature.unwrap_or(f64::NAN),
                    100.0 * report.heldout_accuracy.unwrap_or(f64::NAN),
                    t.elapsed().as_secs_f64()
                );
            }
            println!("{}", path.display());
            Ok(())
        }
        DemoCmd::Report { story, record, png } => {
            let s = Story::load(&story)?;
            let r = summary::Record::load(&record)?;
            print!("{}", summary::summary(&s, &r));
            figure::write_figure(&s, &story, &r, &png)?;
            println!("picture: {}", png.display());
            Ok(())
        }
    }
}
