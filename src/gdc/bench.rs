//! CPU latency of GDC per crop (`eloss gdc bench`): preprocessing, embedding
//! and scoring against a bank, timed separately over random crops, batch
//! `batch`, median of `iters` runs after one warm-up. The bank is fitted to
//! random embeddings of the backbone's dimension (5 classes, full
//! covariance): scoring cost depends only on the dimension and class count.
//! [`bench_generator`] times a text-to-image pipeline per image
//! (`eloss gdc bench-generator`).

use super::bank::{BankError, CovarianceKind, EmbeddingSpec, GaussianBank, Samples};
use super::encoder::{EncoderError, ImageEncoder};
use crate::image::RgbImage;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Preprocess(#[from] super::preprocess::PreprocessError),
}

/// Median milliseconds per crop of each stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub preprocess_ms: f64,
    pub embed_ms: f64,
    pub score_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A crop of `side`×`side` pixels with a fixed pseudo-random pattern.
pub fn pattern_crop(side: u32, seed: u32) -> RgbImage {
    let data = (0..side * side * 3).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97)) >> 13) as u8).collect();
    RgbImage { width: side, height: side, data }
}

/// Times `encoder` + a 5-class bank on `batch` crops of `side` px.
pub fn bench(encoder: &dyn ImageEncoder, batch: usize, iters: usize, side: u32) -> Result<Latency, BenchError> {
    let crops: Vec<RgbImage> = (0..batch.max(1) as u32).map(|k| pattern_crop(side, k)).collect();
    let pixels = encoder.preprocess().batch(&crops)?;
    let dim = encoder.embed_pixels(&pixels)?.size().last().copied().unwrap_or(1) as usize;
    let classes: Vec<Vec<Vec<f32>>> = (0..5)
        .map(|c| (0..20).map(|s| (0..dim).map(|j| ((c * 31 + s * 7 + j * 13) % 17) as f32 / 17.0 + c as f32).collect()).collect())
        .collect();
    let named: Vec<(String, Samples)> = classes.iter().enumerate().map(|(c, rows)| (format!("c{c}"), Samples::from(rows))).collect();
    let refs: Vec<(&str, Samples)> = named.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let spec = EmbeddingSpec::new(encoder.backbone_id(), encoder.recipe().id());
    let bank = GaussianBank::fit(spec, &refs, CovarianceKind::default())?;
    let names = bank.class_names();
    let n = crops.len() as f64;
    let (mut pre, mut emb, mut score) = (Vec::new(), Vec::new(), Vec::new());
    for it in 0..iters.max(1) + 1 {
        let t0 = Instant::now();
        let pixels = encoder.preprocess().batch(&crops)?;
        let t1 = Instant::now();
        let e = encoder.embed_pixels(&pixels)?;
        let flat: Vec<f32> = Vec::try_from(e.flatten(0, -1)).unwrap_or_default();
        let t2 = Instant::now();
        for row in flat.chunks(dim.max(1)) {
            bank.posterior_among(row, &names, None, 1.0)?;
        }
        let t3 = Instant::now();
        if it > 0 {
            pre.push((t1 - t0).as_secs_f64() * 1e3 / n);
            emb.push((t2 - t1).as_secs_f64() * 1e3 / n);
            score.push((t3 - t2).as_secs_f64() * 1e3 / n);
        }
    }
    Ok(Latency { preprocess_ms: median(pre), embed_ms: median(emb), score_ms: median(score) })
}

/// Median milliseconds per image of `pipe` from fixed `latents` (one
/// per prompt), after one warm-up, and the last image batch [b, 3, H, W].
pub fn bench_generator(
    pipe: &super::generator::pipeline::Pipeline,
    prompts: &[String],
    latents: &tch::Tensor,
    opts: &super::generator::pipeline::GenerateOptions,
    iters: usize,
) -> Result<(f64, tch::Tensor), super::generator::GeneratorError> {
    let mut times = Vec::new();
    let mut image = None;
    for it in 0..iters.max(1) + 1 {
        let t = Instant::now();
        image = Some(pipe.generate_from_latents(prompts, latents, None, opts)?);
        if it > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3 / prompts.len().max(1) as f64);
        }
    }
    let image = image.ok_or_else(|| super::generator::GeneratorError::Input("no iterations".into()))?;
    Ok((median(times), image))
}
