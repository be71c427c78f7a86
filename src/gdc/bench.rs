//! CPU latency of GDC per crop (`eloss gdc bench`): preprocessing, embedding
//! and scoring against a bank, timed separately over random crops, batch
//! `batch`, median of `iters` runs after one warm-up. The bank is fitted to
//! random embeddings of the backbone's dimension (5 classes, full
//! covariance): scoring cost depends only on the dimension and class count.
//! [`bench_scoring`] times scoring alone, per query against batched
//! (`eloss gdc bench-scoring`).
//! [`bench_generator`] times a text-to-image pipeline per image
//! (`eloss gdc bench-generator`).

use super::bank::{bayes_posterior, BankError, CovarianceKind, EmbeddingSpec, GaussianBank, Samples};
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
    /// Batched scoring, as the classifier does it ([`crate::gdc::classifier::SCORING_KIND`]).
    pub score_ms: f64,
}

/// Median milliseconds per crop of scoring a batch against a bank, by path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoringLatency {
    /// One query and one class at a time, f64 forward substitution (the path before issue 15).
    pub per_query_ms: f64,
    /// [`super::bank::BatchScorer`] in f64.
    pub batched_f64_ms: f64,
    /// [`super::bank::BatchScorer`] in f32.
    pub batched_f32_ms: f64,
}

/// A bank of `classes` full-covariance classes fitted to 20 fixed
/// pseudo-random embeddings each of dimension `dim`: scoring cost depends
/// only on dimension and class count.
pub fn fixture_bank(spec: EmbeddingSpec, dim: usize, classes: usize) -> Result<GaussianBank, BankError> {
    let rows: Vec<Vec<Vec<f32>>> = (0..classes)
        .map(|c| (0..20).map(|s| (0..dim).map(|j| ((c * 31 + s * 7 + j * 13) % 17) as f32 / 17.0 + c as f32).collect()).collect())
        .collect();
    let named: Vec<(String, Samples)> = rows.iter().enumerate().map(|(c, r)| (format!("c{c}"), Samples::from(r))).collect();
    let refs: Vec<(&str, Samples)> = named.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    GaussianBank::fit(spec, &refs, CovarianceKind::default())
}

/// `batch` queries of dimension `dim` against [`fixture_bank`]: the three
/// scoring paths take turns within every iteration (median of `iters`
/// after one warm-up, ms per crop). Also returns the largest relative
/// difference of the batched f64 and f32 distances from the per-query ones.
pub fn bench_scoring(dim: usize, classes: usize, batch: usize, iters: usize) -> Result<(ScoringLatency, f64, f64), BankError> {
    let bank = fixture_bank(EmbeddingSpec::new("bench", "bench"), dim, classes)?;
    let names = bank.class_names();
    let all: Vec<usize> = (0..bank.len()).collect();
    let batch = batch.max(1);
    let queries: Vec<f32> = (0..batch * dim).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 12) as f32 / 1_048_576.0 + (i % 5) as f32).collect();
    let (f64s, f32s) = (bank.batch_scorer(tch::Kind::Double)?, bank.batch_scorer(tch::Kind::Float)?);
    let n = batch as f64;
    let (mut per_query, mut b64, mut b32) = (Vec::new(), Vec::new(), Vec::new());
    let mut reference: Vec<f64> = Vec::new();
    for it in 0..iters.max(1) + 1 {
        let t = Instant::now();
        for row in queries.chunks(dim) {
            bank.posterior_among(row, &names, None, 1.0)?;
        }
        let t_per_query = t.elapsed().as_secs_f64() * 1e3 / n;
        let t = Instant::now();
        let m64 = f64s.mahalanobis_sq(&queries)?;
        let t_b64 = t.elapsed().as_secs_f64() * 1e3 / n;
        let t = Instant::now();
        let m32 = f32s.mahalanobis_sq(&queries)?;
        let t_b32 = t.elapsed().as_secs_f64() * 1e3 / n;
        if it == 0 {
            let rel = |m: &[Vec<f64>]| -> Result<f64, BankError> {
                let mut worst = 0.0f64;
                for (q, row) in queries.chunks(dim).zip(m) {
                    let want = bank.mahalanobis_sq(q, &all)?;
                    for (g, w) in row.iter().zip(&want) {
                        worst = worst.max((g - w).abs() / w.abs().max(f64::MIN_POSITIVE));
                    }
                }
                Ok(worst)
            };
            reference.push(rel(&m64)?);
            reference.push(rel(&m32)?);
        } else {
            per_query.push(t_per_query);
            b64.push(t_b64);
            b32.push(t_b32);
        }
    }
    let latency = ScoringLatency { per_query_ms: median(per_query), batched_f64_ms: median(b64), batched_f32_ms: median(b32) };
    Ok((latency, reference[0], reference[1]))
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
    let bank = fixture_bank(EmbeddingSpec::new(encoder.backbone_id(), encoder.recipe().id()), dim, 5)?;
    let scorer = bank.batch_scorer(crate::gdc::classifier::SCORING_KIND)?;
    let n = crops.len() as f64;
    let (mut pre, mut emb, mut score) = (Vec::new(), Vec::new(), Vec::new());
    for it in 0..iters.max(1) + 1 {
        let t0 = Instant::now();
        let pixels = encoder.preprocess().batch(&crops)?;
        let t1 = Instant::now();
        let e = encoder.embed_pixels(&pixels)?;
        let flat: Vec<f32> = Vec::try_from(e.flatten(0, -1)).unwrap_or_default();
        let t2 = Instant::now();
        for m in scorer.mahalanobis_sq(&flat)? {
            bayes_posterior(&scorer.log_likelihoods_from_sq(&m), None, 1.0)?;
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
