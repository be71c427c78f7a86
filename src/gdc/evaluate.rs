//! Accuracy of a GDC classifier on labelled image folders `ROOT/<class>/*`:
//! per-class and overall accuracy, the mean probability given to the true
//! class, and a confusion matrix (rows: true class, columns: predicted),
//! printed as markdown by `eloss gdc eval`; with a calibrated bank also the
//! "unknown" answers, the expected calibration error (15 bins) and the
//! accuracy-coverage curve (module [`super::reliability`]).

use std::fmt::Write;

use super::reliability::{accuracy_coverage, expected_calibration_error, Scored, ECE_BINS};

/// Counts over evaluated images. Classes are the bank's, plus any true
/// class the bank lacks (its images are then always wrong).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    pub classes: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Sum over each true class's images of p(true class).
    pub true_prob_sum: Vec<f64>,
    /// Per image: confidence of the most probable class and whether it is the true one.
    pub scored: Vec<Scored>,
    /// Per image: the doubt score (nearest class's distance / its threshold;
    /// NaN without calibration) and whether the answer was `unknown`.
    pub open_set: Vec<(f64, bool)>,
    /// Per image: the index of its true class.
    pub truth: Vec<usize>,
    /// The first `in_bank` classes are the bank's; images of the others
    /// (held-out classes) should be answered `unknown`.
    pub in_bank: usize,
    /// Answers to images from another domain (real photos and crops against
    /// a simulated bank, [`super::other_domain`]).
    pub other_domain: Vec<OtherAnswer>,
}

/// The answer to one image from another domain.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherAnswer {
    pub name: String,
    pub source: String,
    /// The bank class it shows (`None`: none, only `unknown` is right).
    pub expected: Option<String>,
    /// The answer: a class or `unknown`.
    pub label: String,
    /// The most probable class and its probability.
    pub best: String,
    pub confidence: f64,
    /// Distance / threshold of the nearest class.
    pub doubt: f64,
    pub unknown: bool,
}

impl OtherAnswer {
    /// Answered a class that is not the one it shows.
    pub fn is_wrong(&self) -> bool {
        !self.unknown && self.expected.as_deref() != Some(self.label.as_str())
    }
}

/// Counts over the other-domain answers of one source.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OtherCounts {
    pub images: usize,
    pub unknown: usize,
    /// Answered the bank class they show.
    pub right_class: usize,
    /// Answered another class; `wrong_confident` of them with p ≥ 0.5.
    pub wrong: usize,
    pub wrong_confident: usize,
}

/// Probability from which a wrong class answer counts as confident.
pub const CONFIDENT: f64 = 0.5;

impl Evaluation {
    pub fn new(classes: &[&str]) -> Self {
        let n = classes.len();
        Self {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            confusion: vec![vec![0; n]; n],
            true_prob_sum: vec![0.0; n],
            in_bank: n,
            ..Default::default()
        }
    }

    fn index(&mut self, class: &str) -> usize {
        if let Some(i) = self.classes.iter().position(|c| c == class) {
            return i;
        }
        self.classes.push(class.to_string());
        self.confusion.iter_mut().for_each(|r| r.push(0));
        self.confusion.push(vec![0; self.classes.len()]);
        self.true_prob_sum.push(0.0);
        self.classes.len() - 1
    }

    /// Adds one image of class `truth` with posterior `dist` (any order).
    pub fn add(&mut self, truth: &str, dist: &[(String, f64)]) {
        let t = self.index(truth);
        let Some((best, _)) = dist.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else { return };
        let p = self.index(best);
        self.confusion[t][p] += 1;
        self.true_prob_sum[t] += dist.iter().find(|(n, _)| n == truth).map_or(0.0, |(_, p)| *p);
        if let Some((best, confidence)) = dist.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            self.scored.push(Scored { confidence: *confidence, correct: best == truth });
            self.truth.push(t);
        }
    }

    /// The records of images of bank classes (`true`) or of other classes (`false`).
    fn of_bank_classes(&self, in_bank: bool) -> impl Iterator<Item = (&Scored, Option<&(f64, bool)>)> {
        let open_set = &self.open_set;
        self.scored
            .iter()
            .zip(&self.truth)
            .enumerate()
            .filter(move |(_, (_, t))| (**t < self.in_bank) == in_bank)
            .map(move |(i, (s, _))| (s, open_set.get(i)))
    }

    /// AUROC of the doubt score separating images of classes outside the
    /// bank (positives) from images of bank classes (`None` without both, or
    /// without open-set data).
    pub fn unknown_auroc(&self) -> Option<f64> {
        let doubts = |inside: bool| -> Option<Vec<f64>> { self.of_bank_classes(inside).map(|(_, o)| o.map(|o| o.0)).collect() };
        let (neg, pos) = (doubts(true)?, doubts(false)?);
        let a = crate::numeric::auroc(&neg, &pos);
        a.is_finite().then_some(a)
    }

    /// Fraction of the images of classes outside the bank answered `unknown`.
    pub fn unknown_fraction_outside(&self) -> Option<f64> {
        let flags: Option<Vec<bool>> = self.of_bank_classes(false).map(|(_, o)| o.map(|o| o.1)).collect();
        let flags = flags?;
        (!flags.is_empty()).then(|| flags.iter().filter(|f| **f).count() as f64 / flags.len() as f64)
    }

    /// [`Self::add`] plus the open-set answer: `doubt` (distance / threshold
    /// of the nearest class) and whether the image was answered `unknown`.
    pub fn add_open_set(&mut self, truth: &str, dist: &[(String, f64)], doubt: f64, unknown: bool) {
        self.add(truth, dist);
        self.open_set.push((doubt, unknown));
    }

    /// The forced answers (most probable class) of images of bank classes.
    pub fn scored_in_bank(&self) -> Vec<Scored> {
        self.of_bank_classes(true).map(|(s, _)| *s).collect()
    }

    /// Expected calibration error over 15 bins of the forced answers to
    /// images of bank classes.
    pub fn ece(&self) -> Option<f64> {
        expected_calibration_error(&self.scored_in_bank(), ECE_BINS)
    }

    /// Fraction of the images of bank classes answered `unknown` (`None`
    /// without open-set data).
    pub fn unknown_fraction(&self) -> Option<f64> {
        let flags: Option<Vec<bool>> = self.of_bank_classes(true).map(|(_, o)| o.map(|o| o.1)).collect();
        let flags = flags?;
        (!flags.is_empty()).then(|| flags.iter().filter(|f| **f).count() as f64 / flags.len() as f64)
    }

    /// Accuracy of the images of bank classes not answered `unknown`.
    pub fn accuracy_of_answered(&self) -> Option<f64> {
        let mut answered = Vec::new();
        for (s, o) in self.of_bank_classes(true) {
            if !o?.1 {
                answered.push(s.correct);
            }
        }
        (!answered.is_empty()).then(|| answered.iter().filter(|c| **c).count() as f64 / answered.len() as f64)
    }

    /// Accuracy on images of bank classes when keeping the least doubtful
    /// fraction, at coverages 100, 95, 90, 80, 50 % (by the open-set doubt).
    pub fn accuracy_at_coverage(&self) -> Vec<(f64, f64)> {
        let pairs: Option<Vec<(f64, bool)>> = self.of_bank_classes(true).map(|(s, o)| o.map(|o| (o.0, s.correct))).collect();
        let Some(pairs) = pairs.filter(|p| !p.is_empty() && p.iter().all(|(d, _)| !d.is_nan())) else {
            return Vec::new();
        };
        let doubt: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let correct: Vec<bool> = pairs.iter().map(|p| p.1).collect();
        let curve = accuracy_coverage(&doubt, &correct);
        [1.0, 0.95, 0.9, 0.8, 0.5]
            .iter()
            .filter_map(|&c| curve.iter().find(|(cov, _)| *cov >= c - 1e-12).copied())
            .collect()
    }

    /// Adds the answer to an image from another domain.
    pub fn add_other(&mut self, answer: OtherAnswer) {
        self.other_domain.push(answer);
    }

    /// Counts over the other-domain answers of `source` (all when `None`),
    /// split into images that show no bank class (`expected_none` = true) or
    /// one (false), or all of them (`None`).
    pub fn other_counts(&self, source: Option<&str>, expected_none: Option<bool>) -> OtherCounts {
        let mut c = OtherCounts::default();
        for a in self.others(source).filter(|a| expected_none.is_none_or(|e| a.expected.is_none() == e)) {
            c.images += 1;
            c.unknown += usize::from(a.unknown);
            c.right_class += usize::from(!a.unknown && a.expected.as_deref() == Some(a.label.as_str()));
            c.wrong += usize::from(a.is_wrong());
            c.wrong_confident += usize::from(a.is_wrong() && a.confidence >= CONFIDENT);
        }
        c
    }

    fn others<'a>(&'a self, source: Option<&'a str>) -> impl Iterator<Item = &'a OtherAnswer> + 'a {
        self.other_domain.iter().filter(move |a| source.is_none_or(|s| a.source == s))
    }

    /// AUROC of the doubt score separating the other-domain images of
    /// `source` (all when `None`; positives) from the images of bank
    /// classes (negatives, the folder's own domain).
    pub fn other_domain_auroc(&self, source: Option<&str>) -> Option<f64> {
        let neg: Option<Vec<f64>> = self.of_bank_classes(true).map(|(_, o)| o.map(|o| o.0)).collect();
        let pos: Vec<f64> = self.others(source).map(|a| a.doubt).collect();
        let neg = neg?;
        if neg.is_empty() || pos.is_empty() {
            return None;
        }
        let a = crate::numeric::auroc(&neg, &pos);
        a.is_finite().then_some(a)
    }

    fn other_markdown(&self, s: &mut String) {
        if self.other_domain.is_empty() {
            return;
        }
        let mut sources: Vec<&str> = self.other_domain.iter().map(|a| a.source.as_str()).collect();
        sources.dedup();
        let _ = writeln!(s, "\nImages from another domain (doubt = distance / threshold of the nearest class; AUROC against the bank-class images above):\n");
        let _ = writeln!(s, "| source | images | shown class | unknown | right class | wrong class (p ≥ {CONFIDENT}) | AUROC |\n|---|---:|---|---:|---:|---:|---:|");
        for src in sources {
            for (none, what) in [(true, "none"), (false, "a bank class")] {
                let c = self.other_counts(Some(src), Some(none));
                if c.images > 0 {
                    let auroc = self.other_domain_auroc(Some(src)).map_or("–".into(), |a| format!("{a:.3}"));
                    let _ = writeln!(s, "| {src} | {} | {what} | {} | {} | {} ({}) | {auroc} |", c.images, c.unknown, c.right_class, c.wrong, c.wrong_confident);
                }
            }
        }
        let _ = writeln!(s, "\n| image | shows | answer | most probable | doubt |\n|---|---|---|---|---:|");
        for a in &self.other_domain {
            let shows = a.expected.as_deref().unwrap_or("–");
            let _ = writeln!(s, "| {} | {shows} | {} | {} {:.1}% | {:.2} |", a.name, a.label, a.best, 100.0 * a.confidence, a.doubt);
        }
    }

    pub fn count(&self, class: usize) -> usize {
        self.confusion.get(class).map_or(0, |r| r.iter().sum())
    }

    /// Fraction of class `class`'s images predicted as it (`None` without images).
    pub fn accuracy(&self, class: usize) -> Option<f64> {
        let n = self.count(class);
        (n > 0).then(|| self.confusion[class][class] as f64 / n as f64)
    }

    pub fn overall(&self) -> Option<f64> {
        let n: usize = (0..self.classes.len()).map(|c| self.count(c)).sum();
        let hit: usize = (0..self.classes.len()).map(|c| self.confusion[c][c]).sum();
        (n > 0).then(|| hit as f64 / n as f64)
    }

    pub fn mean_true_prob(&self, class: usize) -> Option<f64> {
        let n = self.count(class);
        (n > 0).then(|| self.true_prob_sum[class] / n as f64)
    }

    pub fn mean_true_prob_overall(&self) -> Option<f64> {
        let n: usize = (0..self.classes.len()).map(|c| self.count(c)).sum();
        (n > 0).then(|| self.true_prob_sum.iter().sum::<f64>() / n as f64)
    }

    /// Per-class table, overall line and confusion matrix in markdown.
    pub fn markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}%", 100.0 * v));
        let prob = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
        let mut s = String::from("| class | images | accuracy | mean p(true) |\n|---|---:|---:|---:|\n");
        for (c, name) in self.classes.iter().enumerate() {
            let _ = writeln!(s, "| {name} | {} | {} | {} |", self.count(c), pct(self.accuracy(c)), prob(self.mean_true_prob(c)));
        }
        let n: usize = (0..self.classes.len()).map(|c| self.count(c)).sum();
        let _ = writeln!(s, "| **all** | {n} | {} | {} |", pct(self.overall()), prob(self.mean_true_prob_overall()));
        let _ = write!(s, "\n| true \\ predicted |");
        self.classes.iter().for_each(|c| {
            let _ = write!(s, " {c} |");
        });
        let _ = write!(s, "\n|---|{}\n", "---:|".repeat(self.classes.len()));
        for (c, name) in self.classes.iter().enumerate() {
            let _ = write!(s, "| {name} |");
            self.confusion[c].iter().for_each(|v| {
                let _ = write!(s, " {v} |");
            });
            s.push('\n');
        }
        let pct1 = |v: f64| format!("{:.1}%", 100.0 * v);
        if let Some(ece) = self.ece() {
            let _ = writeln!(s, "\nExpected calibration error ({ECE_BINS} bins, most probable class, images of bank classes): {ece:.4}");
        }
        if let (Some(u), Some(a)) = (self.unknown_fraction(), self.accuracy_of_answered()) {
            let _ = writeln!(s, "Answered unknown: {} of images; accuracy of the others: {}", pct1(u), pct1(a));
        }
        let curve = self.accuracy_at_coverage();
        if !curve.is_empty() {
            let cells: Vec<String> = curve.iter().map(|(c, a)| format!("{} → {}", pct1(*c), pct1(*a))).collect();
            let _ = writeln!(s, "Accuracy at coverage (least doubtful first): {}", cells.join(", "));
        }
        if let (Some(u), Some(a)) = (self.unknown_fraction_outside(), self.unknown_auroc()) {
            let _ = writeln!(s, "Images of classes outside the bank answered unknown: {}; AUROC of the doubt score, outside vs bank classes: {a:.3}", pct1(u));
        }
        self.other_markdown(&mut s);
        s
    }
}

#[cfg(feature = "torch")]
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Build(#[from] super::bank_builder::BuildError),
    #[error(transparent)]
    Classifier(#[from] super::classifier::ClassifierError),
}

/// Classifies up to `per_class` images (sorted by name) of every class
/// folder under `root`, in batches.
#[cfg(feature = "torch")]
pub fn evaluate_folder(
    classifier: &super::classifier::GdcClassifier,
    root: &std::path::Path,
    per_class: Option<usize>,
) -> Result<Evaluation, EvalError> {
    use super::bank_builder::{images_by_class, read_rgb};
    let mut eval = Evaluation::new(&classifier.bank().class_names());
    for (class, paths) in images_by_class(root)? {
        let paths = &paths[..per_class.map_or(paths.len(), |n| n.min(paths.len()))];
        for chunk in paths.chunks(classifier.batch.max(1)) {
            let images = chunk.iter().map(|p| read_rgb(p)).collect::<Result<Vec<_>, _>>()?;
            for answer in classifier.classify(&images, &[])? {
                let doubt = answer.nearest.as_ref().map_or(f64::NAN, |n| n.distance / n.threshold);
                eval.add_open_set(&class, &answer.distribution, doubt, answer.is_unknown());
            }
        }
    }
    Ok(eval)
}

/// Classifies images from another domain and adds their answers to `eval`.
#[cfg(feature = "torch")]
pub fn evaluate_other_domain(
    classifier: &super::classifier::GdcClassifier,
    images: &[super::other_domain::OtherImage],
    eval: &mut Evaluation,
) -> Result<(), EvalError> {
    for chunk in images.chunks(classifier.batch.max(1)) {
        let crops: Vec<crate::image::RgbImage> = chunk.iter().map(|o| o.image.clone()).collect();
        for (o, answer) in chunk.iter().zip(classifier.classify(&crops, &[])?) {
            let (best, confidence) = answer.distribution.first().cloned().unwrap_or_default();
            eval.add_other(OtherAnswer {
                name: o.name.clone(),
                source: o.source.to_string(),
                expected: o.expected.clone(),
                doubt: answer.nearest.as_ref().map_or(f64::NAN, |n| n.distance / n.threshold),
                unknown: answer.is_unknown(),
                label: answer.label,
                best,
                confidence,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn counts_accuracy_probability_and_confusion() {
        let mut e = Evaluation::new(&["Car", "Van"]);
        e.add("Car", &d(&[("Car", 0.9), ("Van", 0.1)]));
        e.add("Car", &d(&[("Van", 0.6), ("Car", 0.4)]));
        e.add("Van", &d(&[("Van", 0.7), ("Car", 0.3)]));
        e.add("Tram", &d(&[("Car", 0.8), ("Van", 0.2)])); // not in the bank
        assert_eq!(e.classes, ["Car", "Van", "Tram"]);
        assert_eq!(e.confusion, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 0]]);
        assert_eq!(e.accuracy(0), Some(0.5));
        assert_eq!(e.accuracy(2), Some(0.0));
        assert_eq!(e.overall(), Some(0.5));
        assert!((e.mean_true_prob(0).unwrap() - 0.65).abs() < 1e-12);
        assert!((e.mean_true_prob_overall().unwrap() - 2.0 / 4.0).abs() < 1e-12);
        let md = e.markdown();
        assert!(md.contains("| Car | 2 | 50.0% | 0.650 |"), "{md}");
        assert!(md.contains("| **all** | 4 | 50.0% | 0.500 |"), "{md}");
        assert!(md.contains("| Tram | 1 | 0 | 0 |"), "{md}");
        assert_eq!(Evaluation::new(&["A"]).overall(), None);
        assert_eq!(e.unknown_fraction(), None); // no open-set data
    }

    /// Issue 16 item 3: images of a class left out of the bank count as
    /// "should be unknown": their unknown fraction and the AUROC of the doubt
    /// score against bank-class images; ECE and accuracy use bank classes only.
    #[test]
    fn open_set_measures_separate_bank_classes_from_held_out_ones() {
        let mut e = Evaluation::new(&["Car", "Van"]);
        e.add_open_set("Car", &d(&[("Car", 0.9), ("Van", 0.1)]), 0.5, false);
        e.add_open_set("Car", &d(&[("Van", 0.6), ("Car", 0.4)]), 1.2, true);
        e.add_open_set("Van", &d(&[("Van", 0.7), ("Car", 0.3)]), 0.8, false);
        e.add_open_set("Tram", &d(&[("Car", 0.8), ("Van", 0.2)]), 3.0, true);
        e.add_open_set("Tram", &d(&[("Van", 0.8), ("Car", 0.2)]), 0.9, false);
        assert_eq!(e.unknown_fraction(), Some(1.0 / 3.0));
        assert_eq!(e.accuracy_of_answered(), Some(1.0));
        assert_eq!(e.unknown_fraction_outside(), Some(0.5));
        // positives 3.0, 0.9 against negatives 0.5, 1.2, 0.8: 5 of 6 pairs ordered
        assert!((e.unknown_auroc().unwrap() - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(e.scored_in_bank().len(), 3);
        assert_eq!(e.accuracy_at_coverage()[0], (1.0, 2.0 / 3.0));
        let md = e.markdown();
        assert!(md.contains("Answered unknown: 33.3%") && md.contains("AUROC of the doubt score, outside vs bank classes: 0.833"), "{md}");
    }
}
