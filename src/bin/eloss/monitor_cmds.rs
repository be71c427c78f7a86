//! `eloss dose-response`: the Eloss monitor's signals against the strength
//! of each LiDAR anomaly (src/eloss/dose_response.rs).

use anyhow::Context as _;
use eloss_perception::dataset::sim::dataset_writer::{parse_anomaly_list, AnomalySpec};
use eloss_perception::dataset::sim::Anomaly;
use eloss_perception::eloss::dose_response::{markdown, plots, sweep};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DoseArgs {
    /// Detector checkpoint (.safetensors)
    #[arg(long)]
    model: PathBuf,
    /// Calibration file (default: <model stem>.calibration.json beside the model)
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// KITTI-format folder of normal frames (the anomalies are applied to their clouds)
    #[arg(long)]
    data: PathBuf,
    /// Which frames: all, train, val or trainval
    #[arg(long, default_value = "val")]
    split: String,
    /// Use the first N frames of the split
    #[arg(long, default_value_t = 40)]
    frames: usize,
    /// LiDAR anomaly kinds (the simulator's, e.g. noise,fog,snow,rain,beam_dropout,sector_dropout)
    #[arg(long, default_value = "noise,fog,snow,rain,beam_dropout,sector_dropout")]
    kinds: String,
    /// Severities of the sweep, in [0, 1]
    #[arg(long, default_value = "0.1,0.25,0.5,0.75,1.0")]
    severities: String,
    /// Largest fraction of the cloud's point count added as noise (severity 1);
    /// the simulator's own default is 0.05, the sweep defaults to the whole cloud
    #[arg(long, default_value_t = 1.0)]
    noise_max_fraction: f64,
    /// Output folder: dose_response.md, dose_response.csv, dose_factor.png, dose_auroc.png
    #[arg(long)]
    out: PathBuf,
}

pub fn dose_response(a: DoseArgs) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let (det, info, cal) = super::load_calibrated_model(&a.model, a.calibration.as_deref())?;
    let severities: Vec<f64> = a.severities.split(',').map(|s| s.trim().parse::<f64>().with_context(|| format!("severity `{s}`"))).collect::<anyhow::Result<_>>()?;
    let anomalies = parse_anomaly_list(&a.kinds)?
        .into_iter()
        .map(|s| match s {
            AnomalySpec::Lidar(Anomaly::Noise { .. }, _) => Ok(Anomaly::Noise { max_fraction: a.noise_max_fraction }),
            AnomalySpec::Lidar(anomaly, _) => Ok(anomaly),
            AnomalySpec::Camera(..) => anyhow::bail!("camera anomalies do not change the cloud: use LiDAR kinds"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ds = super::open_frames(&a.data, &a.split)?;
    let ids: Vec<String> = ds.ids().iter().take(a.frames).cloned().collect();
    let clouds = ids.iter().map(|id| ds.points(id)).collect::<Result<Vec<_>, _>>()?;
    let bar = super::frame_bar(clouds.len() * (1 + anomalies.len() * severities.len()), "passes");
    let s = sweep(&det, &info.model_id, &cal, &clouds, &anomalies, &severities, |d, _| bar.set_position(d as u64))?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let table = markdown(&s);
    let md = a.out.join("dose_response.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    let mut csv = String::from("kind,severity,frames,factor_median,factor_mean,baseline_factor_median,auroc_eloss,auroc_baseline,auroc_mahalanobis,auroc_score,detection_rate\n");
    for p in &s.points {
        let _ = writeln!(
            csv,
            "{},{},{},{:e},{:e},{:e},{:.4},{:.4},{:.4},{:.4},{:.4}",
            p.kind, p.severity, p.frames, p.factor_median, p.factor_mean, p.baseline_factor_median, p.auroc_eloss, p.auroc_baseline, p.auroc_mahalanobis, p.auroc_score, p.detection_rate
        );
    }
    let csv_path = a.out.join("dose_response.csv");
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    print!("{table}");
    for p in plots(&a.out, &s)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}
