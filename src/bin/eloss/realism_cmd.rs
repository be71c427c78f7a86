//! `eloss sim-realism`: a simulated KITTI folder against a real KITTI frame
//! (eloss_perception::dataset::realism; docs/simulator.md).
use crate::{car_boxes, read_real_frame};
use anyhow::Context as _;
use eloss_perception::dataset::kitti::{KittiDataset, Split};
use eloss_perception::dataset::realism::{self, CloudStats};
use eloss_perception::plot::{line_chart, Series};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RealismArgs {
    /// Real frame folder: one velodyne .bin and mmdetection3d's info.json (as ../shared/data/kitti_000008)
    #[arg(long)]
    real: PathBuf,
    /// Simulated KITTI object folder (`eloss simulate --out`)
    #[arg(long)]
    data: PathBuf,
    /// Simulated frames to use (the folder's first ones)
    #[arg(long, default_value_t = 50)]
    frames: usize,
    /// Folder for realism.md and the plots (PNG)
    #[arg(long)]
    out: Option<PathBuf>,
}

fn real_stats(dir: &Path) -> anyhow::Result<CloudStats> {
    let (info, points) = read_real_frame(dir)?;
    let mut s = CloudStats::default();
    s.add_frame(&points, &car_boxes(&info.labels, &info.calib));
    Ok(s)
}

pub fn run(a: RealismArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.frames > 0 && a.frames <= 100_000, "--frames {} not in 1..=100000", a.frames);
    let real = real_stats(&a.real)?;
    let ds = KittiDataset::open(&a.data, Split::Training)?;
    let mut sim = CloudStats::default();
    let ids: Vec<String> = ds.ids().iter().take(a.frames).cloned().collect();
    let bar = indicatif::ProgressBar::new(ids.len() as u64);
    for id in &ids {
        let f = ds.frame(id)?;
        sim.add_frame(&f.points, &car_boxes(&f.labels, &f.calib));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rows = realism::compare(&real, &sim);
    let table = realism::markdown(&rows);
    println!("{} simulated frames of {} against {}\n\n{table}", sim.frames, a.data.display(), a.real.display());
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("realism.md"), &table)?;
        plots(out, &real, &sim)?;
        println!("wrote {}/realism.md and the plots realism_{{range,intensity,elevation,car_points}}.png", out.display());
    }
    Ok(())
}

fn plots(out: &Path, real: &CloudStats, sim: &CloudStats) -> anyhow::Result<()> {
    let series = |hist: &[u64], start: f64, width: f64| -> Vec<(f64, f64)> {
        realism::fractions(hist).into_iter().enumerate().map(|(i, f)| (start + (i as f64 + 0.5) * width, f)).collect()
    };
    let pair = |hist: fn(&CloudStats) -> &[u64], start: f64, width: f64| {
        vec![Series::new("real", series(hist(real), start, width)), Series::new("simulated", series(hist(sim), start, width))]
    };
    let charts: [(&str, &str, &str, Vec<Series>); 3] = [
        ("range", "Range distribution", "range in the ground plane (m)", pair(|s| &s.range_hist, 0.0, realism::RANGE_BIN_M)),
        ("intensity", "Intensity distribution", "intensity", pair(|s| &s.intensity_hist, 0.0, 1.0 / realism::INTENSITY_BINS as f64)),
        (
            "elevation",
            "Elevation (ring) distribution",
            "elevation (degrees)",
            pair(|s| &s.elevation_hist, realism::ELEVATION_MIN_DEG, realism::ELEVATION_BIN_DEG),
        ),
    ];
    for (name, title, x, s) in charts {
        line_chart(&out.join(format!("realism_{name}.png")), title, x, "fraction of points", &s, &[])?;
    }
    let markers = |s: &CloudStats| s.cars.iter().map(|c| (c.distance_m, c.points as f64)).collect::<Vec<_>>();
    let law: Vec<Series> = match sim.car_power_law() {
        Some((a, b)) => vec![Series::new(format!("simulated fit {a:.0}·d^{b:.2}"), (4..=60).map(|d| (d as f64, a * (d as f64).powf(b))).collect())],
        None => Vec::new(),
    };
    line_chart(
        &out.join("realism_car_points.png"),
        "Points on a car against its distance",
        "distance (m)",
        "points in the label box",
        &law,
        &[Series::new("simulated cars", markers(sim)), Series::new("real cars", markers(real))],
    )?;
    Ok(())
}
