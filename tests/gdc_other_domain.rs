//! GDC banks of simulated classes against images from another domain
//! (issue 16): real photos of things no bank class shows (Debian darknet's
//! photos, set-up unpacks them) must be answered `unknown`, and the real
//! KITTI cars of frame 000008 `Car` or `unknown`, never another class.
//! Needs the converted EfficientNet-Lite0 weights, the darknet photos and
//! ../shared/data/kitti_000008 (a missing one fails, see tests/common).
#![cfg(feature = "torch")]
mod common;

use eloss_perception::gdc::backbone::EmbeddingRecipe;
use eloss_perception::gdc::bank::{CovarianceKind, GaussianBank};
use eloss_perception::gdc::classifier::{Answer, GdcClassifier};
use eloss_perception::gdc::encoder::load_encoder;
use eloss_perception::gdc::evaluate::{Evaluation, OtherAnswer};
use eloss_perception::gdc::other_domain::{darknet_images, kitti_crops, OtherImage, DARKNET_DATA};
use std::path::PathBuf;

fn darknet_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("ELOSS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/eloss_perception"));
    let d = cache.join(DARKNET_DATA);
    if d.join("dog.jpg").is_file() {
        Some(d)
    } else {
        common::missing(&format!("{} is missing", d.display()), "run scripts/setup.sh (it unpacks Debian's darknet photos)")
    }
}

fn other_answer(o: &OtherImage, a: &Answer) -> OtherAnswer {
    let (best, confidence) = a.distribution.first().cloned().unwrap_or_default();
    OtherAnswer {
        name: o.name.clone(),
        source: o.source.to_string(),
        expected: o.expected.clone(),
        label: a.label.clone(),
        best,
        confidence,
        doubt: a.nearest.as_ref().map_or(f64::NAN, |n| n.distance / n.threshold),
        unknown: a.is_unknown(),
    }
}

fn l2_normalised(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / n).collect()
        })
        .collect()
}

/// Measurement, not a check (`--ignored`): which bank choices make a bank
/// of simulated crops right on simulated val crops and transfer to real
/// images. Crop folders from `eloss gdc crops` in GDC_SWEEP_TRAIN and
/// GDC_SWEEP_VAL; GDC_SWEEP_COPIES augmented copies per train crop.
#[test]
#[ignore]
fn sweep_bank_choices_on_simulated_and_real_images() {
    use eloss_perception::gdc::augment::augmented_copies;
    use eloss_perception::gdc::bank::Samples;
    use eloss_perception::gdc::bank_builder::{images_by_class, read_rgb};
    let (Some(weights), Some(kitti), Some(darknet)) = (common::efficientnet_weights(), common::kitti_dir(), darknet_dir()) else { return };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("set {k}"));
    let (train, val) = (PathBuf::from(var("GDC_SWEEP_TRAIN")), PathBuf::from(var("GDC_SWEEP_VAL")));
    let copies: usize = std::env::var("GDC_SWEEP_COPIES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let load = || load_encoder(&weights, EmbeddingRecipe::Pooled, tch::Device::Cpu).unwrap();
    let encoder = load();
    let embed = |images: &[eloss_perception::image::RgbImage]| -> Vec<Vec<f32>> { images.chunks(32).flat_map(|c| encoder.embed_images(c, 32).unwrap()).collect() };
    let t = std::time::Instant::now();
    let mut train_emb: Vec<(String, Vec<Vec<f32>>, Vec<Vec<f32>>)> = Vec::new(); // class, originals, with copies (runs of 1 + copies)
    for (class, paths) in images_by_class(&train).unwrap() {
        let (mut orig, mut aug) = (Vec::new(), Vec::new());
        for (i, p) in paths.iter().enumerate() {
            let img = read_rgb(p).unwrap();
            let mut run = vec![img.clone()];
            run.extend(augmented_copies(&img, copies, 16, i as u64));
            let e = embed(&run);
            orig.push(e[0].clone());
            aug.extend(e);
        }
        train_emb.push((class, orig, aug));
    }
    let mut val_emb: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    for (class, paths) in images_by_class(&val).unwrap() {
        let imgs: Vec<_> = paths.iter().map(|p| read_rgb(p).unwrap()).collect();
        val_emb.push((class, embed(&imgs)));
    }
    let mut others = darknet_images(&darknet).unwrap();
    others.extend(kitti_crops(&kitti, "000008.png").unwrap());
    let other_emb = embed(&others.iter().map(|o| o.image.clone()).collect::<Vec<_>>());
    eprintln!("embedded in {:.0} s", t.elapsed().as_secs_f64());
    println!("| covariance | ridge | l2 | copies | T | val right | val unknown | right of answered | ECE | darknet none→unknown | darknet ped: ped/unk/wrong | KITTI Car/unknown/wrong | AUROC darknet | AUROC KITTI |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for kind in ["shared", "full"] {
        for ridge in [1e-3, 1e-2, 1e-1, 1.0] {
            for l2 in [false, true] {
                for aug in [0, copies] {
                    let norm = |rows: &[Vec<f32>]| if l2 { l2_normalised(rows) } else { rows.to_vec() };
                    let cov = if kind == "shared" { CovarianceKind::Shared { ridge_rel: ridge } } else { CovarianceKind::Full { ridge_rel: ridge } };
                    let rows: Vec<Vec<Vec<f32>>> = train_emb.iter().map(|(_, o, a)| norm(if aug == 0 { o } else { a })).collect();
                    let samples: Vec<(&str, Samples)> = train_emb.iter().zip(&rows).map(|((n, _, _), r)| (n.as_str(), Samples::from(r.as_slice()))).collect();
                    let spec = eloss_perception::gdc::bank::EmbeddingSpec::new(encoder.backbone_id(), encoder.recipe().id());
                    let mut bank = GaussianBank::fit(spec, &samples, cov).unwrap();
                    let report = bank.calibrate_grouped(&samples, 10, 1 + aug).unwrap();
                    let classifier = GdcClassifier::new(load(), bank).unwrap();
                    let names = classifier.bank().class_names().iter().map(|s| s.to_string()).collect::<Vec<_>>();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    let mut eval = Evaluation::new(&names);
                    let (mut right, mut total) = (0, 0);
                    for (class, e) in &val_emb {
                        for a in classifier.answers(&norm(e), &names).unwrap() {
                            let doubt = a.nearest.as_ref().map_or(f64::NAN, |n| n.distance / n.threshold);
                            eval.add_open_set(class, &a.distribution, doubt, a.is_unknown());
                            right += usize::from(&a.label == class);
                            total += 1;
                        }
                    }
                    for (o, a) in others.iter().zip(classifier.answers(&norm(&other_emb), &names).unwrap()) {
                        eval.add_other(other_answer(o, &a));
                    }
                    let none = eval.other_counts(Some("darknet"), Some(true));
                    let ped = eval.other_counts(Some("darknet"), Some(false));
                    let k = eval.other_counts(Some("kitti"), None);
                    let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.3}"));
                    println!(
                        "| {kind} | {ridge:e} | {l2} | {aug} | {:.3e} | {:.1}% | {:.1}% | {:.1}% | {} | {}/{} | {}/{}/{} | {}/{}/{} ({} conf.) | {} | {} |",
                        report.temperature,
                        100.0 * right as f64 / total as f64,
                        100.0 * eval.unknown_fraction().unwrap_or(f64::NAN),
                        100.0 * eval.accuracy_of_answered().unwrap_or(f64::NAN),
                        f(eval.ece()),
                        none.unknown,
                        none.images,
                        ped.right_class,
                        ped.unknown,
                        ped.wrong,
                        k.right_class,
                        k.unknown,
                        k.wrong,
                        k.wrong_confident,
                        f(eval.other_domain_auroc(Some("darknet"))),
                        f(eval.other_domain_auroc(Some("kitti"))),
                    );
                }
            }
        }
    }
}
