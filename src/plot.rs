//! PNG charts for reports (Eloss evaluation, training curves): line charts
//! with point markers, and overlaid histograms. Built on `plotters` with its
//! bitmap backend only; text is drawn with `ab_glyph` from a TrueType font
//! read at run time (DejaVu Sans, Debian `fonts-dejavu-core`, installed by
//! scripts/setup.sh), so there is no fontconfig or system font lookup and a
//! missing font is one clear error. `ELOSS_PLOT_FONT` overrides the path.
//!
//! ```no_run
//! use eloss_perception::plot::{line_chart, Series};
//! let loss = Series::new("loss", (0..100).map(|i| (i as f64, 1.0 / (1.0 + i as f64))).collect());
//! line_chart("loss.png".as_ref(), "training", "step", "loss", &[loss], &[]).unwrap();
//! ```

use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
pub const FONT_ENV: &str = "ELOSS_PLOT_FONT";
const SIZE: (u32, u32) = (1200, 600);
const FAMILY: &str = "sans-serif";
/// The family name text is drawn with after [`register_font`].
pub const FONT_FAMILY: &str = FAMILY;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PlotError {
    #[error("font {path}: {reason} (install Debian's fonts-dejavu-core, or set {FONT_ENV} to a .ttf)")]
    Font { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Draw { path: PathBuf, reason: String },
    #[error("{0}: nothing finite to plot")]
    NoData(PathBuf),
}

/// A named polyline (x, y).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points }
    }
}

/// Named sample values for one histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub name: String,
    pub values: Vec<f64>,
}

/// A labelled vertical line (a threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct VLine {
    pub name: String,
    pub x: f64,
}

/// Registers the font for drawings outside this module (e.g. the demo's
/// figure); the same once-per-process registration as the charts'.
pub fn register_font() -> Result<(), PlotError> {
    ensure_font()
}

/// Registers the font once per process; later calls return the first outcome.
fn ensure_font() -> Result<(), PlotError> {
    static FONT: OnceLock<Result<(), PlotError>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = std::env::var_os(FONT_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
        let bytes = std::fs::read(&path).map_err(|e| PlotError::Font { path: path.clone(), reason: e.to_string() })?;
        // plotters keeps fonts for the whole process: leak this one copy
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| PlotError::Font { path: path.clone(), reason: "not a TrueType/OpenType font".into() })
    })
    .clone()
}

/// Distinct colours (Tableau 10, then its light variants: 20 before a
/// colour repeats, e.g. 4 runs × 3 classes in one chart), cycled.
pub fn color(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 20] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
        (174, 199, 232),
        (255, 187, 120),
        (152, 223, 138),
        (255, 152, 150),
        (197, 176, 213),
        (196, 156, 148),
        (247, 182, 210),
        (199, 199, 199),
        (219, 219, 141),
        (158, 218, 229),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// (min, max) of the finite values, widened when degenerate and padded by 5 %.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 * lo.abs().max(1.0) };
    Some((lo - pad, hi + pad))
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError::Draw { path: path.to_path_buf(), reason }
}

/// A white canvas with the title, labelled axes over the given ranges and a
/// grid: the frame every chart draws into, in one style.
fn axes<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    path: &Path,
    title: &str,
    (x, x_label): (std::ops::Range<f64>, &str),
    (y, y_label): (std::ops::Range<f64>, &str),
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>, PlotError> {
    let err = draw_err(path);
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(|e| err(e.to_string()))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style((FAMILY, 14)).draw().map_err(|e| err(e.to_string()))?;
    Ok(chart)
}

/// The legend of every chart, in one style; only its corner differs.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>, position: SeriesLabelPosition, path: &Path) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|e| draw_err(path)(e.to_string()))
}

/// Lines (one per series) plus point markers (one colour per marker set,
/// after the lines'), with a legend. Non-finite points are skipped.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], markers: &[Series]) -> Result<(), PlotError> {
    ensure_font()?;
    let all = || series.iter().chain(markers).flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let ((x0, x1), (y0, y1)) = match (range(all().map(|p| p.0)), range(all().map(|p| p.1))) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(PlotError::NoData(path.to_path_buf())),
    };
    let err = draw_err(path);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    let mut chart = axes(&root, path, title, (x0..x1, x_label), (y0..y1, y_label))?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    for (j, m) in markers.iter().enumerate() {
        let c = color(series.len() + j);
        let pts = m.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
        chart
            .draw_series(pts.map(|p| Circle::new(p, 4, c.filled())))
            .map_err(|e| err(e.to_string()))?
            .label(m.name.as_str())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
    }
    if series.len() + markers.len() > 0 {
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, path)?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// Overlaid histograms over shared bins, each normalised to fractions of
/// its own sample count (so sets of different sizes compare), drawn as
/// step outlines; optional vertical lines (thresholds).
pub fn histograms(path: &Path, title: &str, x_label: &str, hists: &[Histogram], bins: usize, vlines: &[VLine]) -> Result<(), PlotError> {
    ensure_font()?;
    let bins = bins.max(1);
    let values = || hists.iter().flat_map(|h| h.values.iter().copied()).chain(vlines.iter().map(|v| v.x));
    let Some((x0, x1)) = range(values()) else { return Err(PlotError::NoData(path.to_path_buf())) };
    let width = (x1 - x0) / bins as f64;
    let fractions: Vec<Vec<f64>> = hists
        .iter()
        .map(|h| {
            let finite: Vec<f64> = h.values.iter().copied().filter(|v| v.is_finite()).collect();
            let mut counts = vec![0.0; bins];
            for v in &finite {
                let b = (((v - x0) / width) as usize).min(bins - 1);
                counts[b] += 1.0 / finite.len() as f64;
            }
            counts
        })
        .collect();
    let y1 = fractions.iter().flatten().copied().fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let err = draw_err(path);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    let mut chart = axes(&root, path, title, (x0..x1, x_label), (0.0..y1, "fraction of frames"))?;
    for (i, (h, f)) in hists.iter().zip(&fractions).enumerate() {
        let c = color(i);
        // a step outline: up, across and down each bin
        let mut pts = vec![(x0, 0.0)];
        for (b, v) in f.iter().enumerate() {
            let (a, e) = (x0 + b as f64 * width, x0 + (b + 1) as f64 * width);
            pts.extend([(a, *v), (e, *v)]);
        }
        pts.push((x1, 0.0));
        let label = format!("{} (n={})", h.name, h.values.iter().filter(|v| v.is_finite()).count());
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    for v in vlines {
        let x = v.x;
        chart
            .draw_series(LineSeries::new(vec![(x, 0.0), (x, y1)], BLACK.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(format!("{} = {:.3}", v.name, x))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_as_png() {
        if !Path::new(DEFAULT_FONT).exists() && std::env::var_os(FONT_ENV).is_none() {
            eprintln!("skipping: no font at {DEFAULT_FONT}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let line = dir.path().join("line.png");
        let s = Series::new("y = x²", (0..50).map(|i| (i as f64, (i * i) as f64)).collect());
        let m = Series::new("marked", vec![(10.0, 100.0), (20.0, f64::NAN)]);
        line_chart(&line, "test", "x", "y", &[s], &[m]).unwrap();
        let hist = dir.path().join("hist.png");
        let h = [Histogram { name: "a".into(), values: vec![1.0, 2.0, 2.5] }, Histogram { name: "b".into(), values: vec![3.0, 4.0] }];
        histograms(&hist, "test", "score", &h, 10, &[VLine { name: "threshold".into(), x: 2.8 }]).unwrap();
        for p in [line, hist] {
            let img = ::image::open(&p).unwrap();
            assert_eq!((img.width(), img.height()), SIZE);
        }
        let empty = dir.path().join("empty.png");
        assert!(matches!(line_chart(&empty, "t", "x", "y", &[], &[]), Err(PlotError::NoData(_))));
    }
}
