//! The paired seed study of issue 14 item 6: runs with and without the
//! Entropy Loss, paired by seed (same data, schedule, initialisation, frame
//! order and augmentation; only λ differs), compared on each run's last
//! validation (`epochs.csv`): per class and metric, the mean of each arm,
//! the mean paired difference (with − without) and its 95 % t interval
//! (n − 1 degrees of freedom), plus AP-vs-epoch curves of both arms' means.
//! `eloss seed-study`; the results are in docs/model_card.md.

use super::curves::{aps, CurvesError};
use crate::numeric::mean_std;
use crate::plot::{line_chart, Series};
use std::path::{Path, PathBuf};

/// The metrics of `epochs.csv` the study reads, with their names in tables.
pub const METRICS: [(&str, &str); 2] = [("bev_mod_r40", "BEV"), ("3d_mod_r40", "3D")];

/// One class and metric of the study.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDifference {
    pub class: String,
    pub metric: &'static str,
    /// The arms' final APs, in pair order.
    pub with: Vec<f64>,
    pub without: Vec<f64>,
    pub mean_difference: f64,
    /// Sample standard deviation of the paired differences.
    pub sd_difference: f64,
    /// 95 % t interval of the mean difference.
    pub interval: (f64, f64),
}

impl PairedDifference {
    pub fn differences(&self) -> Vec<f64> {
        self.with.iter().zip(&self.without).map(|(a, b)| a - b).collect()
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (tables to
/// 30, the normal's 1.960 beyond); NaN for df 0.
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => T[d - 1],
        _ => 1.960,
    }
}

fn mean(v: &[f64]) -> f64 {
    mean_std(v).0
}

/// Mean, sample SD and 95 % t interval of the mean of `v`.
pub fn mean_interval(v: &[f64]) -> (f64, f64, (f64, f64)) {
    let n = v.len();
    let (m, sd) = mean_std(v);
    let sd = if n < 2 { f64::NAN } else { sd };
    let half = t_975(n.saturating_sub(1)) * sd / (n as f64).sqrt();
    (m, sd, (m - half, m + half))
}

/// The last validation's AP of every class and metric of a run.
fn final_aps(run: &Path, metric: &str) -> Result<Vec<(String, f64)>, CurvesError> {
    Ok(aps(run, metric)?.into_iter().filter_map(|(c, v)| v.last().map(|p| (c, p.1))).collect())
}

/// The study over `with[i]` / `without[i]` pairs (same length, ≥ 2 pairs).
pub fn paired_study(with: &[PathBuf], without: &[PathBuf]) -> Result<Vec<PairedDifference>, CurvesError> {
    let bad = |reason: String| CurvesError::Csv { path: PathBuf::from("<seed study>"), line: 0, reason };
    if with.len() != without.len() || with.len() < 2 {
        return Err(bad(format!("need the same number (≥ 2) of runs per arm, got {} and {}", with.len(), without.len())));
    }
    let mut out = Vec::new();
    for (metric, name) in METRICS {
        let arm = |runs: &[PathBuf]| runs.iter().map(|r| final_aps(r, metric)).collect::<Result<Vec<_>, _>>();
        let (w, wo) = (arm(with)?, arm(without)?);
        for (class, _) in &w[0] {
            let pick = |runs: &[Vec<(String, f64)>], dirs: &[PathBuf]| {
                runs.iter()
                    .zip(dirs)
                    .map(|(r, d)| r.iter().find(|(c, _)| c == class).map(|p| p.1).ok_or_else(|| bad(format!("{}: no {class} in epochs.csv", d.display()))))
                    .collect::<Result<Vec<f64>, _>>()
            };
            let (a, b) = (pick(&w, with)?, pick(&wo, without)?);
            let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            let (m, sd, interval) = mean_interval(&d);
            out.push(PairedDifference { class: class.clone(), metric: name, with: a, without: b, mean_difference: m, sd_difference: sd, interval });
        }
    }
    Ok(out)
}

/// The study as a markdown table.
pub fn markdown(rows: &[PairedDifference]) -> String {
    let mut s = String::from(
        "| class | metric | with the loss, per seed | without, per seed | mean with | mean without | mean difference | 95 % interval | seeds ahead with |\n|---|---|---|---|---:|---:|---:|---|---:|\n",
    );
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" / ");
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:+.2} | [{:+.2}, {:+.2}] | {}/{} |\n",
            r.class,
            r.metric,
            list(&r.with),
            list(&r.without),
            mean(&r.with),
            mean(&r.without),
            r.mean_difference,
            r.interval.0,
            r.interval.1,
            r.differences().iter().filter(|d| **d > 0.0).count(),
            r.with.len()
        );
    }
    s
}

/// `<prefix>_bev.png` and `<prefix>_3d.png`: validation AP against epoch,
/// each arm's mean over its runs, one line per class and arm.
pub fn plot_curves(with: &[PathBuf], without: &[PathBuf], prefix: &Path) -> Result<Vec<PathBuf>, CurvesError> {
    let mut written = Vec::new();
    for (metric, name) in METRICS {
        let mut series = Vec::new();
        for (arm, runs) in [("with the loss", with), ("without", without)] {
            let curves = runs.iter().map(|r| aps(r, metric)).collect::<Result<Vec<_>, _>>()?;
            let Some(first) = curves.first() else { continue };
            for (class, points) in first {
                let mean_curve: Vec<(f64, f64)> = points
                    .iter()
                    .enumerate()
                    .map(|(i, &(epoch, _))| {
                        let ys: Vec<f64> =
                            curves.iter().filter_map(|c| c.iter().find(|(n, _)| n == class).and_then(|(_, v)| v.get(i)).map(|p| p.1)).collect();
                        (epoch, mean(&ys))
                    })
                    .collect();
                series.push(Series::new(format!("{class}, {arm}"), mean_curve));
            }
        }
        let path = PathBuf::from(format!("{}_{}.png", prefix.display(), name.to_lowercase()));
        line_chart(&path, &format!("validation AP_R40 {name}, moderate: mean over {} seeds", with.len()), "epoch", "AP [%]", &series, &[])?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, name: &str, car_bev: &[f64]) -> PathBuf {
        let r = dir.join(name);
        std::fs::create_dir_all(&r).unwrap();
        let mut csv = String::from("epoch,step,class,bev_mod_r40,3d_mod_r40\n");
        for (e, ap) in car_bev.iter().enumerate() {
            csv += &format!("{e},{},Car,{ap},{}\n{e},{},Pedestrian,1.0,0.5\n", (e + 1) * 10, ap / 2.0, (e + 1) * 10);
        }
        std::fs::write(r.join("epochs.csv"), csv).unwrap();
        r
    }

    #[test]
    fn paired_differences_and_their_interval_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        // final Car BEV: with 11, 12, 13; without 10, 10, 10 → differences 1, 2, 3
        let with: Vec<PathBuf> = [11.0, 12.0, 13.0].iter().enumerate().map(|(i, &f)| run(dir.path(), &format!("w{i}"), &[0.0, f])).collect();
        let without: Vec<PathBuf> = (0..3).map(|i| run(dir.path(), &format!("o{i}"), &[5.0, 10.0])).collect();
        let rows = paired_study(&with, &without).unwrap();
        let car_bev = rows.iter().find(|r| r.class == "Car" && r.metric == "BEV").unwrap();
        assert_eq!(car_bev.differences(), vec![1.0, 2.0, 3.0]);
        assert!((car_bev.mean_difference - 2.0).abs() < 1e-12 && (car_bev.sd_difference - 1.0).abs() < 1e-12);
        // t(0.975, 2) = 4.303: half width 4.303 / √3
        let half = 4.303 / 3f64.sqrt();
        assert!((car_bev.interval.0 - (2.0 - half)).abs() < 1e-9 && (car_bev.interval.1 - (2.0 + half)).abs() < 1e-9);
        let car_3d = rows.iter().find(|r| r.class == "Car" && r.metric == "3D").unwrap();
        assert!((car_3d.mean_difference - 1.0).abs() < 1e-12);
        let ped = rows.iter().find(|r| r.class == "Pedestrian" && r.metric == "BEV").unwrap();
        assert_eq!((ped.mean_difference, ped.sd_difference), (0.0, 0.0));
        let md = markdown(&rows);
        assert!(md.contains("| Car | BEV | 11.00 / 12.00 / 13.00 | 10.00 / 10.00 / 10.00 | 12.00 | 10.00 | +2.00 |"), "{md}");
        assert!(md.contains("| 3/3 |"));
        let pngs = plot_curves(&with, &without, &dir.path().join("study")).unwrap();
        assert!(pngs.iter().all(|p| p.is_file()));
        assert!(paired_study(&with[..2], &without).is_err());
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t_975(4), 2.776);
        assert_eq!(t_975(100), 1.96);
        assert!(t_975(0).is_nan());
    }
}
