//! The GDC classifier the node serves: an image encoder plus a Gaussian bank
//! built with that same encoder. Crops are embedded in batches and scored by
//! Bayes' rule over the bank's classes (or a requested subset).
//!
//! Every answer also carries the open-set verdict of a calibrated bank
//! (bank/open_set.rs): a crop outside every class at the target
//! false-rejection rate `unknown_rate` is labelled [`UNKNOWN_LABEL`], with
//! its nearest class and that class's Mahalanobis distance; its posterior
//! over the classes is still given (how it would be split if it were one).
//! The temperature is the bank's fitted one unless overridden.

use super::bank::{bayes_posterior, BankError, BatchScorer, GaussianBank, DEFAULT_FOLDS, DEFAULT_UNKNOWN_RATE, UNKNOWN_LABEL};
use super::crops::{Crop, CropSkip};
use super::encoder::{EncoderError, ImageEncoder};
use crate::image::RgbImage;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error("the bank was built with backbone {bank:?} / recipe {bank_recipe:?}, but the encoder is {encoder:?} / {encoder_recipe:?}")]
    Mismatch { bank: String, bank_recipe: String, encoder: String, encoder_recipe: String },
}

/// Most boxes one relabel request may name (explicit 2D and 3D boxes
/// together, or distinct detection ids): a bound on the request's work and
/// on its answer, whatever the sender asks for (docs/reliability.md).
pub const MAX_BOXES_PER_REQUEST: usize = 256;
/// Most candidate class names one request may list (as many as a bank holds).
pub const MAX_CANDIDATES_PER_REQUEST: usize = super::bank::MAX_CLASSES;

/// Refuses a request naming more boxes or candidate classes than the limits,
/// with a reason the sender can act on.
pub fn check_request_size(boxes: usize, candidates: usize) -> Result<(), String> {
    if boxes > MAX_BOXES_PER_REQUEST {
        return Err(format!("the request names {boxes} boxes; at most {MAX_BOXES_PER_REQUEST} per request (split it into several requests)"));
    }
    if candidates > MAX_CANDIDATES_PER_REQUEST {
        return Err(format!("the request lists {candidates} candidate classes; at most {MAX_CANDIDATES_PER_REQUEST}"));
    }
    Ok(())
}

/// Posterior over class names, most probable first.
pub type Distribution = Vec<(String, f64)>;

/// The nearest class of a crop, as the open-set test measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearest {
    pub class: String,
    /// Mahalanobis distance √m to the class.
    pub distance: f64,
    /// The class's distance threshold at the rate asked (∞: cannot reject).
    pub threshold: f64,
}

/// One crop's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The most probable class, or [`UNKNOWN_LABEL`] when the crop is
    /// outside every class considered.
    pub label: String,
    pub distribution: Distribution,
    /// `None` for a bank without calibration data (never unknown).
    pub nearest: Option<Nearest>,
}

impl Answer {
    pub fn is_unknown(&self) -> bool {
        self.nearest.is_some() && self.label == UNKNOWN_LABEL
    }
}

/// The temperature used with a bank: `requested` when > 0, else the bank's
/// fitted one, else 1 (plain Bayes). `gdc.temperature` = 0 (the default)
/// means "the bank's".
pub fn effective_temperature(requested: f64, bank: &GaussianBank) -> f64 {
    if requested > 0.0 {
        requested
    } else {
        bank.fitted_temperature().unwrap_or(1.0)
    }
}

/// Precision of the batched scoring ([`BatchScorer`]): f64, the bank's own;
/// f32 is ~2x faster but moves log-likelihoods by up to ~0.1 at d = 1280
/// (docs/benchmarks.md, "GDC scoring").
pub const SCORING_KIND: tch::Kind = tch::Kind::Double;

/// `Sync`: threads may classify with one classifier at the same time.
#[derive(Clone)]
pub struct GdcClassifier {
    encoder: Arc<dyn ImageEncoder + Send + Sync>,
    /// Shared between copies (a copy with other settings costs two `Arc`s);
    /// [`Self::add_class`] copies it first when it is shared.
    bank: Arc<GaussianBank>,
    /// The bank's factors stacked for batched scoring, rebuilt whenever the bank changes.
    scorer: Arc<BatchScorer>,
    /// Requested temperature: > 0 divides the log-likelihoods before
    /// normalising (1 = plain Bayes); 0 = the bank's fitted one
    /// ([`effective_temperature`]).
    pub temperature: f64,
    /// Target false-rejection rate of the open-set answer, in [0, 1); 0 = never unknown.
    pub unknown_rate: f64,
    pub batch: usize,
}

impl GdcClassifier {
    /// Refuses a bank made with another backbone or embedding recipe.
    pub fn new(encoder: Box<dyn ImageEncoder + Send + Sync>, bank: GaussianBank) -> Result<Self, ClassifierError> {
        let spec = bank.spec();
        if spec.backbone != encoder.backbone_id() || spec.recipe != encoder.recipe().id() {
            return Err(ClassifierError::Mismatch {
                bank: spec.backbone.clone(),
                bank_recipe: spec.recipe.clone(),
                encoder: encoder.backbone_id().to_string(),
                encoder_recipe: encoder.recipe().id().to_string(),
            });
        }
        if bank.calibration().is_none() && !bank.is_empty() {
            tracing::warn!("the GDC bank has no calibration data (built before open-set answers, or without held-out images): every crop gets a class, none is answered {UNKNOWN_LABEL:?}, and the temperature is 1 unless set; rebuild it with `eloss gdc bank`");
        }
        let scorer = Arc::new(bank.batch_scorer(SCORING_KIND)?);
        Ok(Self { encoder: Arc::from(encoder), bank: Arc::new(bank), scorer, temperature: 0.0, unknown_rate: DEFAULT_UNKNOWN_RATE, batch: 16 })
    }

    pub fn bank(&self) -> &GaussianBank {
        &self.bank
    }

    /// Embeddings of whole images with the classifier's encoder (for new classes).
    pub fn embed(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>, ClassifierError> {
        Ok(self.encoder.embed_images(images, self.batch)?)
    }

    /// Fits a class from embeddings made by [`Self::embed`] and adds it to the
    /// bank, recording the prompts it came from. Duplicate names are refused.
    /// With a calibrated bank the class is calibrated on its own embeddings
    /// ([`GaussianBank::add_class_calibrated`], [`DEFAULT_FOLDS`] folds), so
    /// a crop far from it can be answered `unknown`.
    pub fn add_class(&mut self, name: &str, embeddings: &[Vec<f32>], prompts: Vec<String>) -> Result<(), ClassifierError> {
        let bank = Arc::make_mut(&mut self.bank);
        let heldout = bank.add_class_calibrated(name, embeddings.into(), DEFAULT_FOLDS)?;
        tracing::debug!(class = name, heldout, "GDC class added with its held-out distances");
        bank.set_prompts(name, prompts)?;
        self.scorer = Arc::new(bank.batch_scorer(SCORING_KIND)?);
        Ok(())
    }

    /// A classifier with one class more, sharing this one's encoder (the
    /// bank is copied; `self` is unchanged and stays usable meanwhile).
    pub fn with_class(&self, name: &str, embeddings: &[Vec<f32>], prompts: Vec<String>) -> Result<Self, ClassifierError> {
        let mut next = self.clone();
        next.add_class(name, embeddings, prompts)?;
        Ok(next)
    }

    /// The class names a query is scored over: `candidates`, or every bank
    /// class when empty. Unknown names (or an empty bank) fail, naming them.
    fn query_names<'a>(&'a self, candidates: &'a [String]) -> Result<Vec<&'a str>, ClassifierError> {
        if self.bank.is_empty() {
            return Err(BankError::Empty.into());
        }
        let names: Vec<&str> = if candidates.is_empty() {
            self.bank.class_names()
        } else {
            candidates.iter().map(String::as_str).collect()
        };
        self.bank.class_indices(&names)?;
        Ok(names)
    }

    /// One embedding's answer over `names`: the distribution most probable
    /// first, and the open-set verdict when the bank is calibrated.
    pub fn answer(&self, embedding: &[f32], names: &[&str]) -> Result<Answer, ClassifierError> {
        Ok(self.answers(&[embedding], names)?.pop().ok_or(BankError::Empty)?)
    }

    /// The answers of a batch of embeddings over `names`, scored together:
    /// one batched triangular solve per class for the whole batch
    /// ([`BatchScorer`]) gives each embedding's distances, from which its
    /// posterior and open-set verdict follow.
    pub fn answers(&self, embeddings: &[impl AsRef<[f32]>], names: &[&str]) -> Result<Vec<Answer>, ClassifierError> {
        let indices = self.bank.class_indices(names)?;
        let dim = self.bank.dim();
        let mut flat = Vec::with_capacity(embeddings.len() * dim);
        for e in embeddings {
            let e = e.as_ref();
            if e.len() != dim {
                return Err(BankError::DimensionMismatch { what: "query".into(), expected: dim, got: e.len() }.into());
            }
            flat.extend_from_slice(e);
        }
        let temperature = effective_temperature(self.temperature, &self.bank);
        let distances = self.scorer.mahalanobis_sq(&flat)?;
        distances
            .iter()
            .map(|m_all| {
                let ll_all = self.scorer.log_likelihoods_from_sq(m_all);
                let ll: Vec<f64> = indices.iter().map(|&c| ll_all[c]).collect();
                let p = bayes_posterior(&ll, None, temperature)?;
                let mut distribution: Distribution = names.iter().map(|n| n.to_string()).zip(p).collect();
                distribution.sort_by(|a, b| b.1.total_cmp(&a.1));
                let mut label = distribution.first().map(|(n, _)| n.clone()).unwrap_or_default();
                let nearest = match self.bank.calibration() {
                    None => None,
                    Some(_) => {
                        let m: Vec<f64> = indices.iter().map(|&c| m_all[c]).collect();
                        let verdict = self.bank.open_set_from_sq(&m, &indices, self.unknown_rate)?;
                        if verdict.unknown {
                            label = UNKNOWN_LABEL.to_string();
                        }
                        let class = self.bank.classes()[verdict.nearest].name().to_string();
                        Some(Nearest { class, distance: verdict.distance, threshold: verdict.threshold })
                    }
                };
                Ok(Answer { label, distribution, nearest })
            })
            .collect()
    }

    /// One answer per crop, over `candidates` (all bank classes when empty).
    /// Unknown candidate names fail the whole call, naming them.
    pub fn classify(&self, crops: &[RgbImage], candidates: &[String]) -> Result<Vec<Answer>, ClassifierError> {
        let names = self.query_names(candidates)?;
        let embeddings = self.encoder.embed_images(crops, self.batch)?;
        let mut out = Vec::with_capacity(embeddings.len());
        for chunk in embeddings.chunks(self.batch.max(1)) {
            out.extend(self.answers(chunk, &names)?);
        }
        Ok(out)
    }

    /// Classifies `count` boxes whose crops `crop(i)` cuts on demand, one
    /// batch (`self.batch` crops) at a time: at most one batch of crops is
    /// alive, however many boxes a request names (a whole-image crop of a
    /// 640x480 image is ~1.5 MB). Boxes without a crop keep their reason.
    /// One entry per box, in box order; unknown candidate names fail the call
    /// before any crop is cut, even when no box has one.
    pub fn classify_lazily(
        &self,
        count: usize,
        mut crop: impl FnMut(usize) -> Result<Crop, CropSkip>,
        candidates: &[String],
    ) -> Result<Vec<Result<Answer, CropSkip>>, ClassifierError> {
        let names = self.query_names(candidates)?;
        let batch = self.batch.max(1);
        let mut out = Vec::with_capacity(count);
        for start in (0..count).step_by(batch) {
            let mut images = Vec::with_capacity(batch);
            let slots: Vec<Result<(), CropSkip>> = (start..(start + batch).min(count))
                .map(|i| crop(i).map(|c| images.push(c.image)))
                .collect();
            let embeddings = self.encoder.embed_images(&images, batch)?;
            drop(images);
            let mut answers = self.answers(&embeddings, &names)?.into_iter();
            for slot in slots {
                out.push(match slot {
                    Ok(()) => Ok(answers.next().ok_or(BankError::Empty)?),
                    Err(skip) => Err(skip),
                });
            }
        }
        Ok(out)
    }
}

/// A classifier without weights for tests of the request paths: its
/// "embedding" is an image's mean colour, its bank knows `dark` and `bright`.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::gdc::backbone::EmbeddingRecipe;
    use crate::gdc::bank::{CovarianceKind, EmbeddingSpec};
    use crate::gdc::preprocess::Preprocess;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tch::Tensor;

    /// Records the most images it was ever handed in one call.
    pub struct MeanColourEncoder {
        pub preprocess: Preprocess,
        pub largest_call: Arc<AtomicUsize>,
    }

    impl ImageEncoder for MeanColourEncoder {
        fn backbone_id(&self) -> &str {
            "test-mean-colour"
        }
        fn preprocess(&self) -> &Preprocess {
            &self.preprocess
        }
        fn recipe(&self) -> EmbeddingRecipe {
            EmbeddingRecipe::Pooled
        }
        fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor, EncoderError> {
            Ok(pixels.mean_dim(&[2i64, 3][..], false, tch::Kind::Float))
        }
        fn embed_images(&self, images: &[RgbImage], _batch: usize) -> Result<Vec<Vec<f32>>, EncoderError> {
            self.largest_call.fetch_max(images.len(), Ordering::Relaxed);
            Ok(images
                .iter()
                .map(|i| {
                    let n = (i.data.len() / 3).max(1) as f32;
                    (0..3).map(|c| i.data.iter().skip(c).step_by(3).map(|&v| v as f32).sum::<f32>() / n).collect()
                })
                .collect())
        }
    }

    /// The classifier (batch 4) and its encoder's largest-call counter.
    pub fn dark_bright_classifier() -> (GdcClassifier, Arc<AtomicUsize>) {
        let largest_call = Arc::new(AtomicUsize::new(0));
        let encoder = MeanColourEncoder { preprocess: Preprocess::efficientnet_lite0(), largest_call: largest_call.clone() };
        let samples = |base: f32| -> Vec<Vec<f32>> { (0..6).map(|k| vec![base + k as f32, base + 2.0 * k as f32 % 5.0, base - k as f32]).collect() };
        let (dark, bright) = (samples(20.0), samples(220.0));
        let bank = GaussianBank::fit(
            EmbeddingSpec::new("test-mean-colour", EmbeddingRecipe::Pooled.id()),
            &[("dark", (&dark).into()), ("bright", (&bright).into())],
            CovarianceKind::Diagonal { ridge_rel: crate::gdc::bank::DEFAULT_RIDGE_REL },
        )
        .unwrap();
        let mut classifier = GdcClassifier::new(Box::new(encoder), bank).unwrap();
        classifier.batch = 4;
        (classifier, largest_call)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::dark_bright_classifier;
    use super::*;
    use crate::gdc::crops::{crop_pixels, CropConfig};
    use std::sync::atomic::Ordering;

    fn image(value: u8) -> RgbImage {
        RgbImage { width: 64, height: 48, data: vec![value; 64 * 48 * 3] }
    }

    /// Crops are cut one batch at a time (issue 13: a request with many boxes
    /// built every crop before embedding and ran out of memory).
    #[test]
    fn crops_are_cut_and_embedded_one_batch_at_a_time() {
        let (classifier, largest_call) = dark_bright_classifier();
        let (dark, bright, cfg) = (image(15), image(230), CropConfig::default());
        let whole = [0.0, 0.0, 64.0, 48.0];
        let cut = std::cell::Cell::new(0usize);
        let results = classifier
            .classify_lazily(
                11,
                |i| {
                    cut.set(cut.get() + 1);
                    match i % 3 {
                        0 => crop_pixels(&dark, whole, &cfg),
                        1 => crop_pixels(&bright, whole, &cfg),
                        _ => Err(CropSkip::NotVisible),
                    }
                },
                &[],
            )
            .unwrap();
        assert_eq!((results.len(), cut.get()), (11, 11));
        assert!(largest_call.load(Ordering::Relaxed) <= classifier.batch, "{} crops in one call", largest_call.load(Ordering::Relaxed));
        for (i, r) in results.iter().enumerate() {
            match (i % 3, r) {
                (0, Ok(a)) => assert_eq!((a.label.as_str(), a.distribution[0].0.as_str()), ("dark", "dark")),
                (1, Ok(a)) => assert_eq!((a.label.as_str(), a.distribution[0].0.as_str()), ("bright", "bright")),
                (2, Err(CropSkip::NotVisible)) => {}
                other => panic!("box {i}: {other:?}"),
            }
        }
        // an uncalibrated bank never answers unknown
        let grey = classifier.classify(&[image(128)], &[]).unwrap();
        assert!(!grey[0].is_unknown() && grey[0].nearest.is_none());
        // unknown candidates fail before any crop is cut
        let e = classifier.classify_lazily(3, |_| unreachable!("no crop before the names are checked"), &["tram".into()]).unwrap_err();
        assert!(e.to_string().contains("tram"), "{e}");
    }

    /// Issue 16: with a calibrated bank, a crop unlike every class is
    /// answered `unknown` with its nearest class, never forced into one (it
    /// was "dark" or "bright" at 100 % before); crops like a class keep it;
    /// `unknown_rate` 0 turns the answer off.
    #[test]
    fn crops_outside_every_class_are_unknown_with_a_calibrated_bank() {
        use crate::gdc::bank::{CovarianceKind, EmbeddingSpec, UNKNOWN_LABEL};
        use crate::gdc::backbone::EmbeddingRecipe;
        use crate::gdc::preprocess::Preprocess;
        let noise = |k: usize, j: usize| ((k * (7 + 4 * j) + 3 * j) % 13) as f32 - 6.0;
        let samples = |base: f32| -> Vec<Vec<f32>> { (0..60).map(|k| (0..3).map(|j| base + noise(k, j)).collect()).collect() };
        let (dark, bright) = (samples(20.0), samples(220.0));
        let (bank, _) = GaussianBank::fit_calibrated(
            EmbeddingSpec::new("test-mean-colour", EmbeddingRecipe::Pooled.id()),
            &[("dark", (&dark).into()), ("bright", (&bright).into())],
            CovarianceKind::Diagonal { ridge_rel: crate::gdc::bank::DEFAULT_RIDGE_REL },
            crate::gdc::bank::DEFAULT_FOLDS,
        )
        .unwrap();
        let encoder = super::test_support::MeanColourEncoder { preprocess: Preprocess::efficientnet_lite0(), largest_call: Default::default() };
        let mut classifier = GdcClassifier::new(Box::new(encoder), bank).unwrap();
        let answers = classifier.classify(&[image(20), image(128), image(221)], &[]).unwrap();
        assert_eq!(answers.iter().map(|a| a.label.as_str()).collect::<Vec<_>>(), ["dark", UNKNOWN_LABEL, "bright"]);
        let n = answers[1].nearest.as_ref().unwrap();
        assert!(answers[1].is_unknown() && n.distance > n.threshold, "{n:?}");
        assert_eq!(answers[1].distribution.len(), 2);
        // among the candidate "bright" only, the grey crop is still outside it
        let among = classifier.classify(&[image(128)], &["bright".into()]).unwrap();
        assert_eq!((among[0].label.as_str(), among[0].nearest.as_ref().unwrap().class.as_str()), (UNKNOWN_LABEL, "bright"));
        classifier.unknown_rate = 0.0;
        assert_ne!(classifier.classify(&[image(128)], &[]).unwrap()[0].label, UNKNOWN_LABEL);
        // a class added at run time is calibrated on its own embeddings: a
        // crop far from it (and the others) is unknown, not forced into it
        // (with the uncalibrated add of before, 170 was answered "grey")
        classifier.unknown_rate = 0.05;
        classifier.add_class("grey", &samples(128.0), vec!["grey".into()]).unwrap();
        let answers = classifier.classify(&[image(128), image(170)], &[]).unwrap();
        assert_eq!(answers.iter().map(|a| a.label.as_str()).collect::<Vec<_>>(), ["grey", UNKNOWN_LABEL]);
        assert_eq!(answers[1].nearest.as_ref().unwrap().class, "grey");
    }
}
