//! Training curves as PNG from a run folder's CSV logs: the detection loss
//! and the Entropy Loss (moving averages over steps) and the validation AP
//! per epoch; and the same curves of several runs side by side (with and
//! without the Entropy Loss).

use crate::plot::{line_chart, PlotError, Series};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {reason}")]
    Csv { path: PathBuf, line: usize, reason: String },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Rows of a CSV file with a header, as named numeric columns (text cells
/// are kept in `text`).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn read(path: &Path) -> Result<Self, CurvesError> {
        let text = std::fs::read_to_string(path).map_err(|source| CurvesError::Io { path: path.to_path_buf(), source })?;
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap_or_default().split(',').map(str::to_owned).collect();
        let rows = lines.filter(|l| !l.trim().is_empty()).map(|l| l.split(',').map(str::to_owned).collect()).collect();
        Ok(Self { header, rows })
    }

    fn column(&self, path: &Path, name: &str) -> Result<usize, CurvesError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| CurvesError::Csv { path: path.to_path_buf(), line: 1, reason: format!("no column {name}") })
    }

    fn num(&self, path: &Path, row: usize, col: usize) -> Result<f64, CurvesError> {
        let cell = self.rows[row].get(col).map(String::as_str).unwrap_or("");
        cell.parse().map_err(|_| CurvesError::Csv { path: path.to_path_buf(), line: row + 2, reason: format!("`{cell}` is not a number") })
    }
}

/// Trailing moving average over `window` points.
pub fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= w {
                sum -= points[i - w].1;
            }
            (x, sum / (i + 1).min(w) as f64)
        })
        .collect()
}

/// (step, detection loss) and (step, Entropy Loss) of a run.
fn losses(run: &Path) -> Result<(Vec<(f64, f64)>, Vec<(f64, f64)>), CurvesError> {
    let path = run.join("steps.csv");
    let t = Table::read(&path)?;
    let (s, d, e) = (t.column(&path, "step")?, t.column(&path, "detection")?, t.column(&path, "eloss")?);
    let mut det = Vec::new();
    let mut el = Vec::new();
    for r in 0..t.rows.len() {
        let step = t.num(&path, r, s)?;
        det.push((step, t.num(&path, r, d)?));
        el.push((step, t.num(&path, r, e)?));
    }
    Ok((det, el))
}

/// (epoch + 1, AP) per class of a run's `epochs.csv`, for `metric` (`bev_mod_r40` or `3d_mod_r40`).
pub(crate) fn aps(run: &Path, metric: &str) -> Result<Vec<(String, Vec<(f64, f64)>)>, CurvesError> {
    let path = run.join("epochs.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let t = Table::read(&path)?;
    let (e, c, m) = (t.column(&path, "epoch")?, t.column(&path, "class")?, t.column(&path, metric)?);
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in 0..t.rows.len() {
        let class = t.rows[r][c].clone();
        let point = (t.num(&path, r, e)? + 1.0, t.num(&path, r, m)?);
        match out.iter_mut().find(|(n, _)| *n == class) {
            Some((_, v)) => v.push(point),
            None => out.push((class, vec![point])),
        }
    }
    Ok(out)
}

/// Writes `loss.png`, `eloss.png` and (after an epoch) `ap.png` into the run folder.
pub fn plot_run(run: &Path) -> Result<(), CurvesError> {
    let (det, el) = losses(run)?;
    line_chart(&run.join("loss.png"), "detection loss (moving average, 200 steps)", "step", "loss", &[Series::new("detection", moving_average(&det, 200))], &[])?;
    line_chart(&run.join("eloss.png"), "Entropy Loss Σ Var(ΔH) (moving average, 200 steps)", "step", "Eloss", &[Series::new("eloss", moving_average(&el, 200))], &[])?;
    let series: Vec<Series> = aps(run, "bev_mod_r40")?
        .into_iter()
        .map(|(c, v)| Series::new(format!("{c} BEV"), v))
        .chain(aps(run, "3d_mod_r40")?.into_iter().map(|(c, v)| Series::new(format!("{c} 3D"), v)))
        .collect();
    if !series.is_empty() {
        line_chart(&run.join("ap.png"), "validation AP_R40, moderate", "epoch", "AP [%]", &series, &[])?;
    }
    Ok(())
}

/// Loss and AP curves of several runs in one picture each (`<out>_loss.png`, `<out>_ap.png`).
pub fn plot_comparison(runs: &[(String, PathBuf)], out_prefix: &Path) -> Result<(), CurvesError> {
    let mut loss = Vec::new();
    let mut ap = Vec::new();
    for (name, dir) in runs {
        let (det, _) = losses(dir)?;
        loss.push(Series::new(name.clone(), moving_average(&det, 200)));
        for (class, v) in aps(dir, "3d_mod_r40")? {
            ap.push(Series::new(format!("{name}: {class} 3D"), v));
        }
    }
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", out_prefix.display()));
    line_chart(&with("_loss.png"), "detection loss (moving average, 200 steps)", "step", "loss", &loss, &[])?;
    if !ap.is_empty() {
        line_chart(&with("_ap.png"), "validation AP_R40 3D, moderate", "epoch", "AP [%]", &ap, &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing() {
        let p: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, i as f64)).collect();
        let m = moving_average(&p, 2);
        assert_eq!(m.iter().map(|q| q.1).collect::<Vec<_>>(), [0.0, 0.5, 1.5, 2.5, 3.5]);
    }

    #[test]
    fn plots_a_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut steps = String::from("step,epoch,lr,detection,eloss,eloss_weight,positives,seconds\n");
        for i in 0..300 {
            steps.push_str(&format!("{i},0,1e-3,{},{},1.0,5,0.3\n", 3.0 / (1.0 + i as f64 * 0.01), 0.05));
        }
        std::fs::write(dir.path().join("steps.csv"), steps).unwrap();
        std::fs::write(dir.path().join("epochs.csv"), "epoch,step,class,bev_mod_r40,3d_mod_r40\n0,300,Car,40.0,30.0\n1,600,Car,55.0,41.0\n").unwrap();
        plot_run(dir.path()).unwrap();
        for f in ["loss.png", "eloss.png", "ap.png"] {
            let img = image::open(dir.path().join(f)).unwrap();
            assert!(img.width() > 100, "{f}");
        }
        std::fs::write(dir.path().join("steps.csv"), "step,epoch\n1,x\n").unwrap();
        assert!(matches!(plot_run(dir.path()), Err(CurvesError::Csv { .. })));
    }
}
