//! The KITTI object-detection benchmark: average precision per class,
//! metric (2D image box, bird's-eye view, 3D) and difficulty (Easy, Moderate,
//! Hard), at 40 recall points (`AP_R40`, the official metric since 2019) and
//! 11 (`AP_R11`), with the devkit's rules for DontCare regions, neighbouring
//! classes, ignored ground truths and small detections, and the average
//! orientation similarity (AOS) of the 2D boxes. See docs/kitti_eval.md.
//!
//! ```no_run
//! use eloss_perception::eval::{evaluate_folders, EvalConfig, ids_in_dir};
//! let ids = ids_in_dir("results/data").unwrap();
//! let report = evaluate_folders("kitti/training/label_2", "results/data", &ids, &EvalConfig::default()).unwrap();
//! println!("{report}");
//! ```

mod iou;
mod kitti_ap;
#[cfg(test)]
mod aos_tests;
#[cfg(test)]
mod openpcdet_parity;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::dataset::kitti::{
    read_labels, Difficulty, KittiError, ObjectClass, ObjectLabel, DIFFICULTY_RULES,
};
use kitti_ap::{clean, curve, metric_overlaps, FrameCase, FrameOverlaps};

/// Recall sample points of the devkit: 0, 1/40, ..., 1.
pub const N_SAMPLE_PTS: usize = 41;

/// The three overlap measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// 2D boxes in the image.
    Bbox = 0,
    /// Rotated boxes in the ground plane (camera x/z, rotation_y).
    Bev = 1,
    /// BEV times the overlap along camera y.
    ThreeD = 2,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Bbox, Metric::Bev, Metric::ThreeD];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Bbox => "bbox",
            Metric::Bev => "bev",
            Metric::ThreeD => "3d",
        }
    }
}

pub const DIFFICULTIES: [Difficulty; 3] =
    [Difficulty::Easy, Difficulty::Moderate, Difficulty::Hard];

/// How precision is sampled along recall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApMode {
    /// The devkit's: score thresholds from the true positives whose recall is
    /// nearest 0, 1/40, ..., 1 (`getThresholds`), precision at each, then the
    /// running maximum from the right. Matches published numbers; with few
    /// ground truths (under 40) it undercounts, because there are fewer
    /// thresholds than sample points (one perfect detection scores R40 = 0).
    #[default]
    Devkit,
    /// Textbook interpolation: precision/recall at every true-positive score,
    /// precision at sample `r` = the maximum precision at recall ≥ r. Equals
    /// the devkit for large sets; one pass over the data per distinct score,
    /// so meant for small sets and tests.
    Exact,
}

/// One evaluated class with its IoU thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassConfig {
    pub class: ObjectClass,
    /// Minimum overlap for a match, per [`Metric`] (bbox, bev, 3d); a match
    /// needs strictly more.
    pub min_overlap: [f64; 3],
}

impl ClassConfig {
    /// The official thresholds: 0.7 for Car, Van, Truck, Tram; 0.5 for
    /// Pedestrian, Person_sitting, Cyclist, Misc (all three metrics).
    pub fn official(class: ObjectClass) -> Self {
        let t = match class {
            ObjectClass::Car | ObjectClass::Van | ObjectClass::Truck | ObjectClass::Tram => 0.7,
            _ => 0.5,
        };
        Self {
            class,
            min_overlap: [t; 3],
        }
    }

    /// OpenPCDet's second set ("AP@0.70, 0.50, 0.50" for Car): bbox as
    /// official, BEV and 3D at 0.5 (0.25 for the 0.5 classes).
    pub fn loose(class: ObjectClass) -> Self {
        let o = Self::official(class);
        let t = if o.min_overlap[0] > 0.6 { 0.5 } else { 0.25 };
        Self {
            class,
            min_overlap: [o.min_overlap[0], t, t],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Evaluated in this order; a class may appear twice with other thresholds.
    pub classes: Vec<ClassConfig>,
    pub ap_mode: ApMode,
    /// The devkit (C++ and Python) drops detections inside DontCare regions
    /// for the 2D bbox metric only (its BEV/3D overlap with a DontCare line's
    /// sentinel box is 0). `true` applies the same 2D test to BEV and 3D.
    pub dont_care_all_metrics: bool,
}

impl Default for EvalConfig {
    /// Car 0.7, Pedestrian 0.5, Cyclist 0.5, devkit sampling.
    fn default() -> Self {
        Self {
            classes: [
                ObjectClass::Car,
                ObjectClass::Pedestrian,
                ObjectClass::Cyclist,
            ]
            .map(ClassConfig::official)
            .to_vec(),
            ap_mode: ApMode::Devkit,
            dont_care_all_metrics: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{gt} ground-truth frames but {dt} detection frames")]
    FrameCount { gt: usize, dt: usize },
    #[error("frame {frame}, detection {index}: no score (detections need the 16th column)")]
    MissingScore { frame: usize, index: usize },
    #[error("frame {frame}, detection {index}: score {score} is not finite")]
    BadScore {
        frame: usize,
        index: usize,
        score: f64,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// AP of one class, metric and difficulty.
#[derive(Debug, Clone, PartialEq)]
pub struct ApResult {
    /// Percent; `None` when there is no valid ground truth (the devkit prints 0).
    pub ap_r40: Option<f64>,
    pub ap_r11: Option<f64>,
    /// Interpolated precision at recall k/40, k = 0..=40.
    pub precision: Vec<f64>,
    /// (recall, precision) at each evaluated score threshold, highest first.
    pub pr_points: Vec<(f64, f64)>,
    /// Average orientation similarity, percent, sampled as `ap_r40`/`ap_r11`:
    /// the `bbox` metric only (as the devkit and OpenPCDet), and only when
    /// every detection carries an observation angle (alpha ≠ −10); `None`
    /// otherwise and without valid ground truth.
    pub aos_r40: Option<f64>,
    pub aos_r11: Option<f64>,
    /// Interpolated orientation similarity at recall k/40 (empty without AOS).
    pub orientation: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    pub config: ClassConfig,
    /// Valid ground truths per difficulty (the recall denominators).
    pub num_gt: [usize; 3],
    /// `[metric][difficulty]`.
    pub results: [[ApResult; 3]; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    pub classes: Vec<ClassReport>,
    pub num_frames: usize,
    pub ap_mode: ApMode,
    /// AOS was computed: every detection has an alpha (not KITTI's −10 "unknown").
    pub orientation: bool,
}

impl EvalReport {
    /// The first evaluated entry for `class`.
    pub fn class(&self, class: ObjectClass) -> Option<&ClassReport> {
        self.classes.iter().find(|c| c.config.class == class)
    }

    /// AP_R40 (or AP_R11) of the first entry for `class`, percent.
    pub fn ap(
        &self,
        class: ObjectClass,
        metric: Metric,
        difficulty: Difficulty,
        r40: bool,
    ) -> Option<f64> {
        let r = &self.class(class)?.results[metric as usize][difficulty as usize];
        if r40 {
            r.ap_r40
        } else {
            r.ap_r11
        }
    }

    /// AOS_R40 (or AOS_R11) of the first entry for `class`, percent: the
    /// orientation similarity of the 2D boxes (`None` without AOS).
    pub fn aos(&self, class: ObjectClass, difficulty: Difficulty, r40: bool) -> Option<f64> {
        let r = &self.class(class)?.results[Metric::Bbox as usize][difficulty as usize];
        if r40 {
            r.aos_r40
        } else {
            r.aos_r11
        }
    }

    /// A Markdown table: one row per class and metric (and `aos`, at the
    /// bbox threshold, when computed), R40 then R11 for Easy/Moderate/Hard.
    pub fn markdown_table(&self) -> String {
        let mut s = String::from(
            "| class @ IoU | metric | R40 Easy | R40 Mod. | R40 Hard | R11 Easy | R11 Mod. | R11 Hard |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for c in &self.classes {
            for m in Metric::ALL {
                let r = &c.results[m as usize];
                let cells: Vec<String> = r
                    .iter()
                    .map(|x| fmt_ap(x.ap_r40))
                    .chain(r.iter().map(|x| fmt_ap(x.ap_r11)))
                    .collect();
                s.push_str(&format!(
                    "| {} @ {:.2} | {} | {} |\n",
                    c.config.class,
                    c.config.min_overlap[m as usize],
                    m.as_str(),
                    cells.join(" | ")
                ));
            }
            if self.orientation {
                let r = &c.results[Metric::Bbox as usize];
                let cells: Vec<String> = r
                    .iter()
                    .map(|x| fmt_ap(x.aos_r40))
                    .chain(r.iter().map(|x| fmt_ap(x.aos_r11)))
                    .collect();
                s.push_str(&format!(
                    "| {} @ {:.2} | aos | {} |\n",
                    c.config.class,
                    c.config.min_overlap[0],
                    cells.join(" | ")
                ));
            }
        }
        s
    }
}

fn fmt_ap(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

/// OpenPCDet prints AOS with 2 decimals.
fn fmt_aos(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

impl fmt::Display for EvalReport {
    /// OpenPCDet's layout: per class, an `AP@` (R11) and an `AP_R40@` block,
    /// each with an `aos` line (2 decimals) when AOS was computed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.classes {
            let o = c.config.min_overlap;
            for (name, r40) in [("AP", false), ("AP_R40", true)] {
                writeln!(
                    f,
                    "{} {name}@{:.2}, {:.2}, {:.2}:",
                    c.config.class, o[0], o[1], o[2]
                )?;
                for m in Metric::ALL {
                    let vals: Vec<String> = c.results[m as usize]
                        .iter()
                        .map(|r| fmt_ap(if r40 { r.ap_r40 } else { r.ap_r11 }))
                        .collect();
                    writeln!(f, "{:<4} AP:{}", m.as_str(), vals.join(", "))?;
                }
                if self.orientation {
                    let vals: Vec<String> = c.results[Metric::Bbox as usize]
                        .iter()
                        .map(|r| fmt_aos(if r40 { r.aos_r40 } else { r.aos_r11 }))
                        .collect();
                    writeln!(f, "aos  AP:{}", vals.join(", "))?;
                }
            }
        }
        if self.ap_mode == ApMode::Exact {
            writeln!(
                f,
                "(exact interpolation, not the devkit's threshold sampling)"
            )?;
        }
        Ok(())
    }
}

/// Evaluates detections against ground truth, frame by frame (`gt[i]` and
/// `dt[i]` are the same frame). Ground truth as in `label_2` (DontCare lines
/// included); every detection needs a finite score.
pub fn evaluate(
    gt: &[Vec<ObjectLabel>],
    dt: &[Vec<ObjectLabel>],
    config: &EvalConfig,
) -> Result<EvalReport, EvalError> {
    if gt.len() != dt.len() {
        return Err(EvalError::FrameCount {
            gt: gt.len(),
            dt: dt.len(),
        });
    }
    for c in &config.classes {
        if c.class == ObjectClass::DontCare {
            return Err(EvalError::Config("DontCare cannot be evaluated".into()));
        }
        if c.min_overlap.iter().any(|t| !(0.0..1.0).contains(t)) {
            return Err(EvalError::Config(format!(
                "{}: min_overlap {:?} not in [0, 1)",
                c.class, c.min_overlap
            )));
        }
    }
    let mut scores: Vec<Vec<f64>> = Vec::with_capacity(dt.len());
    for (frame, dets) in dt.iter().enumerate() {
        let mut s = Vec::with_capacity(dets.len());
        for (index, d) in dets.iter().enumerate() {
            match d.score {
                None => return Err(EvalError::MissingScore { frame, index }),
                Some(score) if !score.is_finite() => {
                    return Err(EvalError::BadScore {
                        frame,
                        index,
                        score,
                    })
                }
                Some(score) => s.push(score),
            }
        }
        scores.push(s);
    }
    // AOS needs an observation angle on every detection (−10: KITTI's "unknown")
    let orientation = dt.iter().flatten().all(|d| d.alpha != -10.0 && d.alpha.is_finite());
    let alphas = |frames: &[Vec<ObjectLabel>]| -> Vec<Vec<f64>> {
        frames.iter().map(|f| f.iter().map(|o| o.alpha).collect()).collect()
    };
    let (gt_alphas, dt_alphas) = (alphas(gt), alphas(dt));
    let overlaps: Vec<FrameOverlaps> = gt
        .iter()
        .zip(dt)
        .map(|(g, d)| FrameOverlaps::new(g, d))
        .collect();

    let mut classes = Vec::with_capacity(config.classes.len());
    for cc in &config.classes {
        let mut num_gt = [0; 3];
        let mut results: [[Option<ApResult>; 3]; 3] = Default::default();
        for (di, rule) in DIFFICULTY_RULES.iter().enumerate() {
            let roles: Vec<_> = gt
                .iter()
                .zip(dt)
                .map(|(g, d)| clean(g, d, cc.class, rule))
                .collect();
            let n_valid: usize = roles.iter().map(|r| r.2).sum();
            num_gt[di] = n_valid;
            for m in Metric::ALL {
                let use_dc = m == Metric::Bbox || config.dont_care_all_metrics;
                let with_alphas = orientation && m == Metric::Bbox;
                let cases: Vec<FrameCase<'_>> = roles
                    .iter()
                    .zip(&overlaps)
                    .zip(&scores)
                    .enumerate()
                    .map(|(i, ((r, o), s))| FrameCase {
                        overlaps: metric_overlaps(o, m),
                        n_gt: o.n_gt,
                        dont_care: use_dc.then_some((o.dt_dc.as_slice(), o.n_dc)),
                        scores: s,
                        gt_roles: &r.0,
                        dt_roles: &r.1,
                        alphas: with_alphas
                            .then(|| (gt_alphas[i].as_slice(), dt_alphas[i].as_slice())),
                    })
                    .collect();
                let cv = curve(&cases, n_valid, cc.min_overlap[m as usize], config.ap_mode);
                let (r40, r11) = ap_from_precision(&cv.precision);
                let valid = n_valid > 0;
                let aos = cv
                    .orientation
                    .as_deref()
                    .filter(|_| valid)
                    .map(ap_from_precision);
                results[m as usize][di] = Some(ApResult {
                    ap_r40: valid.then_some(r40),
                    ap_r11: valid.then_some(r11),
                    precision: cv.precision,
                    pr_points: cv.points,
                    aos_r40: aos.map(|a| a.0),
                    aos_r11: aos.map(|a| a.1),
                    orientation: cv.orientation.unwrap_or_default(),
                });
            }
        }
        let results = results.map(|row| {
            row.map(|r| {
                r.unwrap_or(ApResult {
                    ap_r40: None,
                    ap_r11: None,
                    precision: vec![0.0; N_SAMPLE_PTS],
                    pr_points: vec![],
                    aos_r40: None,
                    aos_r11: None,
                    orientation: vec![],
                })
            })
        });
        classes.push(ClassReport {
            config: *cc,
            num_gt,
            results,
        });
    }
    Ok(EvalReport {
        classes,
        num_frames: gt.len(),
        ap_mode: config.ap_mode,
        orientation,
    })
}

/// (AP_R40, AP_R11) in percent from the 41 interpolated precision samples
/// (or AOS from the orientation similarity samples):
/// R40 averages samples 1..=40 (recall 1/40..1), R11 samples 0, 4, ..., 40
/// (recall 0, 0.1, ..., 1).
pub fn ap_from_precision(precision: &[f64]) -> (f64, f64) {
    let r40: f64 = precision.iter().skip(1).take(40).sum::<f64>() / 40.0 * 100.0;
    let r11: f64 = precision.iter().step_by(4).take(11).sum::<f64>() / 11.0 * 100.0;
    (r40, r11)
}

/// Reads `{id}.txt` from both folders (`label_2` format; detections with the
/// score column) and evaluates them. A missing file is an error, as in the
/// devkit: write an empty file for a frame without detections.
pub fn evaluate_folders(
    gt_label_dir: impl AsRef<Path>,
    dt_label_dir: impl AsRef<Path>,
    ids: &[String],
    config: &EvalConfig,
) -> Result<EvalReport, EvalError> {
    let (gdir, ddir) = (gt_label_dir.as_ref(), dt_label_dir.as_ref());
    let mut gt = Vec::with_capacity(ids.len());
    let mut dt = Vec::with_capacity(ids.len());
    for id in ids {
        gt.push(read_labels(gdir.join(format!("{id}.txt")))?);
        dt.push(read_labels(ddir.join(format!("{id}.txt")))?);
    }
    evaluate(&gt, &dt, config)
}

/// The frame ids of the `*.txt` files in a folder, sorted (the offline
/// devkit evaluates the result files present).
pub fn ids_in_dir(dir: impl AsRef<Path>) -> Result<Vec<String>, EvalError> {
    let dir = dir.as_ref();
    let io = |source| EvalError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                ids.push(stem.to_owned());
            }
        }
    }
    ids.sort();
    Ok(ids)
}
