//! The GDC classifier the node serves: an image encoder plus a Gaussian bank
//! built with that same encoder. Crops are embedded in batches and scored by
//! Bayes' rule over the bank's classes (or a requested subset).

use super::bank::{BankError, GaussianBank};
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

/// Posterior over class names, most probable first.
pub type Distribution = Vec<(String, f64)>;

/// `Sync`: threads may classify with one classifier at the same time.
pub struct GdcClassifier {
    encoder: Arc<dyn ImageEncoder + Send + Sync>,
    bank: GaussianBank,
    /// Divides the log-likelihoods before normalising (1 = plain Bayes).
    pub temperature: f64,
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
        Ok(Self { encoder: Arc::from(encoder), bank, temperature: 1.0, batch: 16 })
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
    pub fn add_class(&mut self, name: &str, embeddings: &[Vec<f32>], prompts: Vec<String>) -> Result<(), ClassifierError> {
        self.bank.add_class(name, embeddings.into())?;
        self.bank.set_prompts(name, prompts)?;
        Ok(())
    }

    /// A classifier with one class more, sharing this one's encoder (the
    /// bank is copied; `self` is unchanged and stays usable meanwhile).
    pub fn with_class(&self, name: &str, embeddings: &[Vec<f32>], prompts: Vec<String>) -> Result<Self, ClassifierError> {
        let mut next = Self { encoder: self.encoder.clone(), bank: self.bank.clone(), temperature: self.temperature, batch: self.batch };
        next.add_class(name, embeddings, prompts)?;
        Ok(next)
    }

    /// One distribution per crop, over `candidates` (all bank classes when empty).
    /// Unknown candidate names fail the whole call, naming them.
    pub fn classify(&self, crops: &[RgbImage], candidates: &[String]) -> Result<Vec<Distribution>, ClassifierError> {
        if self.bank.is_empty() {
            return Err(BankError::Empty.into());
        }
        let names: Vec<&str> = if candidates.is_empty() {
            self.bank.class_names()
        } else {
            candidates.iter().map(String::as_str).collect()
        };
        self.bank.class_indices(&names)?;
        let embeddings = self.encoder.embed_images(crops, self.batch)?;
        embeddings
            .iter()
            .map(|e| {
                let p = self.bank.posterior_among(e, &names, None, self.temperature)?;
                let mut d: Distribution = names.iter().map(|n| n.to_string()).zip(p).collect();
                d.sort_by(|a, b| b.1.total_cmp(&a.1));
                Ok(d)
            })
            .collect()
    }

    /// Classifies the crops that exist in one batch; boxes without a crop
    /// keep their reason. One entry per input, in input order; unknown
    /// candidate names fail the call even when no box has a crop.
    pub fn classify_some(&self, crops: Vec<Result<Crop, CropSkip>>, candidates: &[String]) -> Result<Vec<Result<Distribution, CropSkip>>, ClassifierError> {
        let mut images = Vec::new();
        let slots: Vec<Result<usize, CropSkip>> = crops
            .into_iter()
            .map(|c| {
                c.map(|c| {
                    images.push(c.image);
                    images.len() - 1
                })
            })
            .collect();
        let mut dists: Vec<Option<Distribution>> = self.classify(&images, candidates)?.into_iter().map(Some).collect();
        Ok(slots.into_iter().map(|s| s.map(|k| dists[k].take().unwrap_or_default())).collect())
    }
}
