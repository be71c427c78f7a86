//! GDC — zero-shot classification with Gaussian Diffusion Classifiers
//! (arXiv 2412.12594; ../shared/PAPERS.md §1): reference images per class are
//! embedded once, each class becomes a Gaussian over the embeddings, and a
//! query embedding is classified by Bayes' rule over the class likelihoods.
//!
//! - [`bank`]: the Gaussian class bank (fit, classify, incremental update, file format).
//! - [`backbone`]: image encoders producing the embeddings (feature `torch`).

#[cfg(feature = "torch")]
pub mod backbone;
pub mod bank;
