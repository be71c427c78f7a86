//! GDC — zero-shot classification with Gaussian Diffusion Classifiers
//! (arXiv 2412.12594; ../shared/PAPERS.md §1): reference images per class are
//! embedded once, each class becomes a Gaussian over the embeddings, and a
//! query embedding is classified by Bayes' rule over the class likelihoods.
//!
//! - [`augment`]: random photometric / geometric copies of bank images (transfer to real images).
//! - [`bank`]: the Gaussian class bank (fit, classify, incremental update, file format).
//! - [`backbone`]: image encoders producing the embeddings (feature `torch`).
//! - [`encoder`], [`bank_builder`]: backbones behind one interface; banks from image folders.
//! - [`classifier`]: encoder + bank → per-crop class probabilities (what the node serves).
//! - [`crop_dataset`], [`evaluate`]: labelled object crops from KITTI frames; accuracy on crop folders.
//! - [`other_domain`]: real photos and real KITTI crops, to judge a bank built on simulated crops.
//! - [`reliability`]: expected calibration error, reliability diagrams, accuracy-coverage.
//! - [`bench`]: CPU latency per crop (preprocess, embed, score).
//! - [`crops`]: camera crops of 3D boxes, image ↔ cloud stamp matching.
//! - [`frame_history`]: the node's recent frames and images, looked up by stamp and detection id.
//! - [`preprocess`]: image → normalised input tensor, as the reference processors.
//! - [`generator`]: text-to-image diffusion (SD, SDXL, turbo) for banks from class names.

pub mod augment;
#[cfg(feature = "torch")]
pub mod backbone;
#[cfg(feature = "torch")]
pub mod bank_builder;
#[cfg(feature = "torch")]
pub mod bench;
#[cfg(feature = "torch")]
pub mod classifier;
#[cfg(feature = "torch")]
pub mod encoder;
#[cfg(feature = "torch")]
pub mod generator;
#[cfg(feature = "torch")]
pub mod other_domain;
#[cfg(feature = "torch")]
pub mod preprocess;
pub mod bank;
pub mod crop_dataset;
pub mod crops;
pub mod evaluate;
pub mod frame_history;
pub mod reliability;
