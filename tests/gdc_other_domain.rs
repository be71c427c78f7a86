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

/// Issue 16, "Done when": with the demo's default bank (simulated Car, Van,
/// Truck, Pedestrian, Cyclist; built here as `eloss demo bank` builds it),
/// - real photos and photo crops of things no bank class shows (darknet's
///   dogs, horses, giraffe, zebra, kite, eagle, whole scenes) are answered
///   `unknown` (measured 16 of 16 at `gdc.unknown_rate` 0.05);
/// - real people (darknet) are `Pedestrian` or `unknown`, and the 6 real
///   KITTI 000008 cars (ground-truth boxes projected through the frame's
///   calibration and cropped as `~/relabel` crops) `Car` or `unknown`, none
///   another class (measured: all 6 unknown, 0 Car, 0 other);
/// - simulated crops of frames the bank never saw are still mostly right and
///   rarely `unknown`. This small bank (30 crops per class, no augmented
///   copies, so that it builds in under a minute) is 91.1 % right on 440
///   held-out crops with the former renderer and 92.5 % with the photo-like
///   one (camera_look; docs/gdc_bank.md); 60 crops here had measured 95.0 %
///   and then 88.3 %, i.e. ±4 % is the noise of 60 crops. So 200 crops
///   (SE ≈ 2 %) and a bound 3 SE below the 440-crop rate. The issue's
///   "≥ 95 % right" is for the default `eloss gdc bank` (97.7 %, measured).
/// 28–100 s on 2 shared cores, depending on the load (the bank: 47
/// simulated frames).
/// With `gdc.unknown_rate` 0 (no open-set answer, as before issue 16) it
/// fails (checked): all 16 non-bank images get a class (8 with p ≥ 0.5),
/// the 3 people a wrong one, and one KITTI car a class other than Car.
#[test]
fn simulated_bank_answers_real_photos_unknown_and_real_cars_car_or_unknown() {
    use eloss_perception::demo::bank::{build, simulated_crops, BankConfig};
    let (Some(weights), Some(kitti), Some(darknet)) = (common::efficientnet_weights(), common::kitti_dir(), darknet_dir()) else { return };
    let t = std::time::Instant::now();
    let encoder = load_encoder(&weights, EmbeddingRecipe::Pooled, tch::Device::Cpu).unwrap();
    let (bank, report) = build(&BankConfig::default(), encoder.as_ref(), |_, _| {}).unwrap();
    eprintln!("bank from {} frames, T = {:.1}, {:.1} s", report.frames, report.temperature.unwrap_or(f64::NAN), t.elapsed().as_secs_f64());
    let classifier = GdcClassifier::new(encoder, bank).unwrap();
    assert_eq!(classifier.unknown_rate, 0.05);
    let mut eval = Evaluation::new(&classifier.bank().class_names());

    // simulated crops from other seeds than the bank's
    let val_cfg = BankConfig { seed: 9_100_000, per_class: 40, ..BankConfig::default() };
    let (val, _) = simulated_crops(&val_cfg, |_, _| {}).unwrap();
    let (mut right, mut total) = (0, 0);
    for (class, crops) in &val {
        for a in classifier.classify(crops, &[]).unwrap() {
            right += usize::from(&a.label == class);
            total += 1;
            eval.add_open_set(class, &a.distribution, a.nearest.as_ref().map_or(f64::NAN, |n| n.distance / n.threshold), a.is_unknown());
        }
    }
    let mut others = darknet_images(&darknet).unwrap();
    others.extend(kitti_crops(&kitti, "000008.png").unwrap());
    let crops: Vec<_> = others.iter().map(|o| o.image.clone()).collect();
    for (o, a) in others.iter().zip(classifier.classify(&crops, &[]).unwrap()) {
        eval.add_other(other_answer(o, &a));
    }
    eprintln!("{}\n{:.1} s", eval.markdown(), t.elapsed().as_secs_f64());

    let none = eval.other_counts(Some("darknet"), Some(true));
    let people = eval.other_counts(Some("darknet"), Some(false));
    let cars = eval.other_counts(Some("kitti"), None);
    assert_eq!((none.images, people.images, cars.images), (16, 3, 6));
    // at least 1 − α of the things outside the bank are unknown; none is a confident class
    assert!(none.unknown as f64 >= 0.95 * none.images as f64 && none.wrong_confident == 0, "{none:?}");
    assert_eq!((people.wrong, cars.wrong), (0, 0), "people {people:?}, KITTI cars {cars:?}");
    let doubt_auroc = eval.other_domain_auroc(None).unwrap();
    assert!(doubt_auroc > 0.95, "AUROC of the doubt score, real vs simulated: {doubt_auroc}");
    // simulated crops: about α unknown, most right
    let (unknown, right) = (eval.unknown_fraction().unwrap(), right as f64 / total as f64);
    assert!(unknown <= 0.10 && right >= 0.86, "simulated crops: {:.1} % unknown, {:.1} % right", 100.0 * unknown, 100.0 * right);
}

/// Embeddings of the sweep's images, cached in a file (little-endian f32
/// rows after a JSON header line) so reruns skip the slow embedding.
#[derive(serde::Serialize, serde::Deserialize)]
struct SweepSets {
    /// Per train class: name and number of rows (runs of 1 + copies).
    train: Vec<(String, usize)>,
    val: Vec<(String, usize)>,
    others: usize,
    dim: usize,
    copies: usize,
}

fn save_rows(path: &std::path::Path, header: &SweepSets, rows: &[Vec<f32>]) {
    let mut out = serde_json::to_vec(header).unwrap();
    out.push(b'\n');
    rows.iter().flatten().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, out).unwrap();
}

fn load_rows(path: &std::path::Path) -> Option<(SweepSets, Vec<Vec<f32>>)> {
    let bytes = std::fs::read(path).ok()?;
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let header: SweepSets = serde_json::from_slice(&bytes[..nl]).ok()?;
    let floats: Vec<f32> = bytes[nl + 1..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let rows = floats.chunks_exact(header.dim.max(1)).map(|r| r.to_vec()).collect();
    Some((header, rows))
}

/// Measurement, not a check (`--ignored`): which bank choices make a bank
/// of simulated crops right on simulated val crops and transfer to real
/// images. Crop folders from `eloss gdc crops` in GDC_SWEEP_TRAIN and
/// GDC_SWEEP_VAL; GDC_SWEEP_COPIES augmented copies per train crop;
/// embeddings cached in GDC_SWEEP_CACHE; GDC_SWEEP_CONFIGS lists
/// `covariance:ridge:l2|raw:copies` separated by commas.
#[test]
#[ignore]
fn sweep_bank_choices_on_simulated_and_real_images() {
    use eloss_perception::gdc::augment::augmented_copies;
    use eloss_perception::gdc::bank::Samples;
    use eloss_perception::gdc::bank_builder::{images_by_class, read_rgb};
    let (Some(weights), Some(kitti), Some(darknet)) = (common::efficientnet_weights(), common::kitti_dir(), darknet_dir()) else { return };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("set {k}"));
    let (train, val, cache) = (PathBuf::from(var("GDC_SWEEP_TRAIN")), PathBuf::from(var("GDC_SWEEP_VAL")), PathBuf::from(var("GDC_SWEEP_CACHE")));
    let copies: usize = std::env::var("GDC_SWEEP_COPIES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let load = || load_encoder(&weights, EmbeddingRecipe::Pooled, tch::Device::Cpu).unwrap();
    let encoder = load();
    let embed = |images: &[eloss_perception::image::RgbImage]| -> Vec<Vec<f32>> { images.chunks(32).flat_map(|c| encoder.embed_images(c, 32).unwrap()).collect() };
    let mut others = darknet_images(&darknet).unwrap();
    others.extend(kitti_crops(&kitti, "000008.png").unwrap());
    let (sets, rows) = match load_rows(&cache).filter(|(h, _)| h.copies == copies) {
        Some(cached) => cached,
        None => {
            let t = std::time::Instant::now();
            let mut sets = SweepSets { train: Vec::new(), val: Vec::new(), others: others.len(), dim: 0, copies };
            let mut rows = Vec::new();
            for (class, paths) in images_by_class(&train).unwrap() {
                for (i, p) in paths.iter().enumerate() {
                    let img = read_rgb(p).unwrap();
                    let mut run = vec![img.clone()];
                    run.extend(augmented_copies(&img, copies, 16, i as u64));
                    rows.extend(embed(&run));
                }
                sets.train.push((class, paths.len() * (1 + copies)));
            }
            for (class, paths) in images_by_class(&val).unwrap() {
                let imgs: Vec<_> = paths.iter().map(|p| read_rgb(p).unwrap()).collect();
                rows.extend(embed(&imgs));
                sets.val.push((class, paths.len()));
            }
            rows.extend(embed(&others.iter().map(|o| o.image.clone()).collect::<Vec<_>>()));
            sets.dim = rows[0].len();
            save_rows(&cache, &sets, &rows);
            eprintln!("embedded in {:.0} s", t.elapsed().as_secs_f64());
            (sets, rows)
        }
    };
    let mut at = 0;
    let mut take = |n: usize| {
        at += n;
        rows[at - n..at].to_vec()
    };
    let train_emb: Vec<(String, Vec<Vec<f32>>)> = sets.train.iter().map(|(c, n)| (c.clone(), take(*n))).collect();
    let val_emb: Vec<(String, Vec<Vec<f32>>)> = sets.val.iter().map(|(c, n)| (c.clone(), take(*n))).collect();
    let other_emb = take(sets.others);
    let configs = std::env::var("GDC_SWEEP_CONFIGS").unwrap_or_else(|_| "shared:1e-3:raw:0".into());
    println!("| covariance | ridge | features | copies | T | val right | val unknown | right of answered | ECE | darknet none→unknown | darknet ped: ped/unk/wrong | KITTI Car/unknown/wrong | AUROC darknet | AUROC KITTI |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for config in configs.split(',') {
        let parts: Vec<&str> = config.split(':').collect();
        let (kind, ridge, l2, aug) = (parts[0], parts[1].parse::<f64>().unwrap(), parts[2] == "l2", parts[3].parse::<usize>().unwrap());
        assert!(aug == 0 || aug == copies, "{config}: copies must be 0 or {copies}");
        let norm = |rows: &[Vec<f32>]| if l2 { l2_normalised(rows) } else { rows.to_vec() };
        let cov = match kind {
            "shared" => CovarianceKind::Shared { ridge_rel: ridge },
            "diagonal" => CovarianceKind::Diagonal { ridge_rel: ridge },
            _ => CovarianceKind::Full { ridge_rel: ridge },
        };
        let fit_rows: Vec<Vec<Vec<f32>>> = train_emb.iter().map(|(_, r)| norm(&r.iter().step_by(if aug == 0 { 1 + copies } else { 1 }).cloned().collect::<Vec<_>>())).collect();
        let samples: Vec<(&str, Samples)> = train_emb.iter().zip(&fit_rows).map(|((n, _), r)| (n.as_str(), Samples::from(r.as_slice()))).collect();
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
            "| {kind} | {ridge:e} | {} | {aug} | {:.3e} | {:.1}% | {:.1}% | {:.1}% | {} | {}/{} | {}/{}/{} | {}/{}/{} ({} conf.) | {} | {} |",
            if l2 { "L2" } else { "raw" },
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
