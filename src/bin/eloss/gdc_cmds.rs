//! `eloss gdc ...`: the zero-shot GDC commands (class banks from image folders
//! or a text-to-image generator, classification, crops, evaluation, benchmarks).

use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum GdcCmd {
    /// Fit a Gaussian class bank from image folders IMAGES/<class>/*.png|jpg, or
    /// zero-shot from class names with a text-to-image generator (--classes --generator)
    Bank {
        /// Image folders IMAGES/<class>/*.png|jpg (few-shot banks from real images)
        #[arg(long, required_unless_present = "generator", conflicts_with = "generator")]
        images: Option<PathBuf>,
        /// Comma-separated class names to generate images for (with --generator)
        #[arg(long, requires = "generator", value_delimiter = ',')]
        classes: Vec<String>,
        /// diffusers folder of SD / SD-Turbo / SDXL / SDXL-Turbo (docs/generators.md)
        #[arg(long, requires = "classes")]
        generator: Option<PathBuf>,
        /// Generated images per class
        #[arg(long, default_value_t = 240)]
        per_class: usize,
        /// Prompt templates: `default` (8 built in) or a file, one template with {} per line
        #[arg(long, default_value = "default")]
        templates: String,
        /// Sampling steps (turbo models: 1-4; SD 1.x/2.x: ~25 with --guidance 7.5)
        #[arg(long, default_value_t = 1)]
        steps: usize,
        /// Classifier-free guidance scale; off at <= 1 (turbo models are trained without)
        #[arg(long, default_value_t = 0.0)]
        guidance: f64,
        /// Image side in pixels (default: the model's native size)
        #[arg(long)]
        size: Option<i64>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Images per generator call
        #[arg(long, default_value_t = 4)]
        gen_batch: usize,
        /// Cache of generated images and contact sheets (default: <out>.images/ next to the bank)
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Hugging Face DINOv2 folder, or EfficientNet-Lite0 .safetensors
        /// (set-up converts one to $ELOSS_CACHE/weights/efficientnet_lite0.safetensors)
        #[arg(long)]
        backbone: PathBuf,
        /// Embedding recipe: cls or cls+meanpatch (DINOv2), pooled (EfficientNet)
        #[arg(long, default_value = "cls")]
        recipe: String,
        /// Covariance model: full, diagonal or shared (docs/gdc_bank.md, "Choices that transfer")
        #[arg(long, default_value = "shared")]
        covariance: String,
        /// Ridge relative to the mean eigenvalue of each covariance
        #[arg(long, default_value_t = eloss_perception::gdc::bank::IMAGE_BANK_RIDGE_REL)]
        ridge: f64,
        /// Augmented copies of every image (crop, flip, colour jitter, blur,
        /// noise; with --images only), embedded with it (docs/gdc_bank.md, "Choices that transfer")
        #[arg(long, default_value_t = 4)]
        augment: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Classify images with a bank; prints the top classes with probabilities
    Classify {
        #[arg(long)]
        bank: PathBuf,
        #[arg(long)]
        backbone: PathBuf,
        #[arg(long, default_value_t = 3)]
        top: usize,
        images: Vec<PathBuf>,
    },
    /// Square-padded crops of labelled objects of a KITTI-format set into OUT/<Class>/<frame>_<i>.png
    Crops {
        /// KITTI-format root (ImageSets/, training/image_2, training/label_2)
        #[arg(long)]
        data: PathBuf,
        /// Image set: train or val
        #[arg(long, default_value = "train")]
        set: String,
        #[arg(long)]
        out: PathBuf,
        /// At most this many crops per class (frames in a fixed shuffled order)
        #[arg(long)]
        per_class: Option<usize>,
        #[arg(long, default_value_t = 25.0)]
        min_height_px: f64,
        #[arg(long, default_value_t = 0.5)]
        max_truncation: f64,
        #[arg(long, default_value_t = 1)]
        max_occlusion: u8,
    },
    /// Accuracy of a bank on IMAGES/<class>/*: per class, overall, mean p(true), confusion matrix (markdown)
    Eval {
        #[arg(long)]
        bank: PathBuf,
        #[arg(long)]
        backbone: PathBuf,
        #[arg(long)]
        images: PathBuf,
        /// At most this many images per class (sorted by name)
        #[arg(long)]
        per_class: Option<usize>,
        /// Write the reliability diagram (accuracy against confidence, 15 bins) to this PNG
        #[arg(long)]
        reliability_png: Option<PathBuf>,
        /// Also answer darknet's photos and drawn objects from this folder
        /// ($ELOSS_CACHE/darknet/root/usr/share/darknet/data): another domain, classes mostly outside the bank
        #[arg(long)]
        darknet: Option<PathBuf>,
        /// Also answer the ground-truth object crops of a KITTI frame folder
        /// with info.json and 000008.png (../shared/data/kitti_000008)
        #[arg(long)]
        kitti: Option<PathBuf>,
    },
    /// CPU latency per crop: preprocess, embed, score against a 5-class bank
    Bench {
        #[arg(long)]
        backbone: PathBuf,
        /// Embedding recipe: cls or cls+meanpatch (DINOv2), pooled (EfficientNet); default cls for a folder, pooled for a file
        #[arg(long)]
        recipe: Option<String>,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// libtorch intra-op threads
        #[arg(long, default_value_t = 1)]
        threads: i32,
        /// Side of the square random crops [px] (resized by the preprocessing)
        #[arg(long, default_value_t = 128)]
        side: u32,
    },
    /// CPU time per crop of scoring alone: one query at a time (f64) against batched solves (f64, f32)
    BenchScoring {
        /// Embedding dimension (EfficientNet-Lite0 pooled: 1280, DINOv2 ViT-S/14 CLS: 384)
        #[arg(long, default_value_t = 1280)]
        dim: usize,
        /// Full-covariance classes in the bank
        #[arg(long, default_value_t = 5)]
        classes: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// libtorch intra-op threads
        #[arg(long, default_value_t = 1)]
        threads: i32,
    },
    /// CPU time per generated image (prompt encoding, sampling, VAE decode); with the
    /// bench_io.safetensors of scripts/bench_generator_torch.py, the same image as diffusers
    BenchGenerator {
        #[arg(long)]
        generator: PathBuf,
        #[arg(long, default_value_t = 1)]
        steps: usize,
        /// Image side [px] (default: the model's native size)
        #[arg(long)]
        size: Option<i64>,
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// libtorch intra-op threads
        #[arg(long, default_value_t = 2)]
        threads: i32,
    },
}

pub fn gdc(cmd: GdcCmd) -> anyhow::Result<()> {
    use eloss_perception::gdc::backbone::EmbeddingRecipe;
    use eloss_perception::gdc::bank::{CovarianceKind, GaussianBank};
    use eloss_perception::gdc::{bank_builder, classifier::GdcClassifier, encoder};
    let device = eloss_perception::torch_cuda::cuda_if_available();
    match cmd {
        GdcCmd::Bank { images, classes, generator, per_class, templates, steps, guidance, size, seed, gen_batch, cache, backbone, recipe, covariance, ridge, augment, batch, out } => {
            let recipe = EmbeddingRecipe::from_id(&recipe).with_context(|| format!("unknown recipe {recipe:?}"))?;
            let kind = match covariance.as_str() {
                "full" => CovarianceKind::Full { ridge_rel: ridge },
                "diagonal" => CovarianceKind::Diagonal { ridge_rel: ridge },
                "shared" => CovarianceKind::Shared { ridge_rel: ridge },
                other => anyhow::bail!("unknown covariance {other:?} (full, diagonal, shared)"),
            };
            // generate first (and free the generator) so both models never share the GPU
            let generated = match &generator {
                Some(dir) => {
                    let g = GenerationArgs { classes: &classes, per_class, templates: &templates, steps, guidance, size, seed, gen_batch, cache: cache.as_deref() };
                    Some(generate_classes(dir, &g, &out, device)?)
                }
                None => None,
            };
            let enc = encoder::load_encoder(&backbone, recipe, device)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("embedding [{bar:40}] {pos}/{len} images, {per_sec}, eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let progress = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let bank = match (&generated, &images) {
                (Some(sets), _) => {
                    let lists: Vec<(String, Vec<PathBuf>)> = sets.iter().map(|s| (s.class.clone(), s.paths.clone())).collect();
                    let mut bank = bank_builder::fit_bank(&lists, enc.as_ref(), kind.into(), batch, progress)?;
                    for s in sets {
                        bank.set_prompts(&s.class, s.prompts.clone())?;
                    }
                    bank
                }
                (None, Some(images)) => {
                    let augmentation = bank_builder::Augmentation { copies: augment, seed };
                    bank_builder::fit_bank_augmented(&bank_builder::images_by_class(images)?, enc.as_ref(), kind.into(), batch, augmentation, progress)?
                }
                (None, None) => anyhow::bail!("give --images DIR, or --classes and --generator"),
            };
            bar.finish();
            bank.save(&out)?;
            println!("bank of {} classes ({}-d, {}) written to {}", bank.len(), bank.dim(), bank.spec().backbone, out.display());
            Ok(())
        }
        GdcCmd::Classify { bank, backbone, top, images } => {
            let bank = GaussianBank::load(&bank)?;
            let recipe = EmbeddingRecipe::from_id(&bank.spec().recipe).context("bank has an unknown embedding recipe")?;
            let classifier = GdcClassifier::new(encoder::load_encoder(&backbone, recipe, device)?, bank)?;
            for path in images {
                let img = bank_builder::read_rgb(&path)?;
                let answers = classifier.classify(std::slice::from_ref(&img), &[])?;
                let Some(a) = answers.first() else { continue };
                let best: Vec<String> = a.distribution.iter().take(top).map(|(n, p)| format!("{n} {:.1}%", 100.0 * p)).collect();
                let open_set = match &a.nearest {
                    Some(n) => format!(" (nearest {} at distance {:.1}, threshold {:.1})", n.class, n.distance, n.threshold),
                    None => String::new(),
                };
                println!("{}: {}: {}{open_set}", path.display(), a.label, best.join(", "));
            }
            Ok(())
        }
        GdcCmd::Crops { data, set, out, per_class, min_height_px, max_truncation, max_occlusion } => {
            use eloss_perception::dataset::kitti::{ImageSet, KittiDataset};
            use eloss_perception::gdc::crop_dataset::{write_crops, CropFilter};
            let set = match set.as_str() {
                "train" => ImageSet::Train,
                "val" => ImageSet::Val,
                other => anyhow::bail!("unknown set {other:?} (train, val)"),
            };
            let ds = KittiDataset::open_image_set(&data, set)?;
            let filter = CropFilter { per_class, min_height_px, max_truncation, max_occlusion };
            let counts = write_crops(&ds, &out, &filter, &eloss_perception::gdc::crops::CropConfig::default())?;
            for (class, n) in &counts {
                println!("{class}: {n} crops");
            }
            println!("written to {}", out.display());
            Ok(())
        }
        GdcCmd::Eval { bank, backbone, images, per_class, reliability_png, darknet, kitti } => {
            use eloss_perception::gdc::other_domain;
            let bank = GaussianBank::load(&bank)?;
            let recipe = EmbeddingRecipe::from_id(&bank.spec().recipe).context("bank has an unknown embedding recipe")?;
            let classifier = GdcClassifier::new(encoder::load_encoder(&backbone, recipe, device)?, bank)?;
            let mut eval = eloss_perception::gdc::evaluate::evaluate_folder(&classifier, &images, per_class)?;
            let mut others = Vec::new();
            if let Some(dir) = &darknet {
                others.extend(other_domain::darknet_images(dir)?);
            }
            if let Some(dir) = &kitti {
                others.extend(other_domain::kitti_crops(dir, "000008.png")?);
            }
            eloss_perception::gdc::evaluate::evaluate_other_domain(&classifier, &others, &mut eval)?;
            print!("{}", eval.markdown());
            if let Some(path) = &reliability_png {
                let title = format!("GDC reliability ({} images, ECE {:.3})", eval.scored.len(), eval.ece().unwrap_or(f64::NAN));
                eloss_perception::gdc::reliability::reliability_diagram(path, &title, &eval.scored, eloss_perception::gdc::reliability::ECE_BINS)?;
                println!("reliability diagram written to {}", path.display());
            }
            Ok(())
        }
        GdcCmd::Bench { backbone, recipe, batch, iters, threads, side } => {
            let recipe = match recipe {
                Some(r) => EmbeddingRecipe::from_id(&r).with_context(|| format!("unknown recipe {r:?}"))?,
                None => EmbeddingRecipe::default_for(&backbone),
            };
            tch::set_num_threads(threads.max(1));
            let enc = encoder::load_encoder(&backbone, recipe, tch::Device::Cpu)?;
            let _guard = tch::no_grad_guard();
            let l = eloss_perception::gdc::bench::bench(enc.as_ref(), batch, iters, side)?;
            println!(
                "{} batch {batch} threads {threads}: preprocess {:.2} ms, embed {:.2} ms, score {:.3} ms, embed+score {:.2} ms per crop (median of {iters})",
                enc.backbone_id(),
                l.preprocess_ms,
                l.embed_ms,
                l.score_ms,
                l.embed_ms + l.score_ms
            );
            Ok(())
        }
        GdcCmd::BenchScoring { dim, classes, batch, iters, threads } => {
            tch::set_num_threads(threads.max(1));
            let (l, rel64, rel32) = eloss_perception::gdc::bench::bench_scoring(dim, classes, batch, iters)?;
            println!(
                "scoring d={dim} classes={classes} batch {batch} threads {threads}: per query f64 {:.3} ms, batched f64 {:.3} ms, batched f32 {:.3} ms per crop (medians of {iters}); largest relative distance difference from the per-query path: f64 {rel64:.1e}, f32 {rel32:.1e}",
                l.per_query_ms, l.batched_f64_ms, l.batched_f32_ms
            );
            Ok(())
        }
        GdcCmd::BenchGenerator { generator, steps, size, iters, threads } => bench_generator(&generator, steps, size, iters, threads),
    }
}

/// `gdc bench-generator`: our pipeline on the latents and prompts the diffusers
/// side saved (or random ones), time per image and the difference to its image.
fn bench_generator(dir: &std::path::Path, steps: usize, size: Option<i64>, iters: usize, threads: i32) -> anyhow::Result<()> {
    use eloss_perception::gdc::generator::pipeline::{GenerateOptions, Pipeline};
    tch::set_num_threads(threads.max(1));
    let pipe = Pipeline::load(dir, tch::Device::Cpu).with_context(|| format!("loading generator {}", dir.display()))?;
    let mut opts = GenerateOptions::turbo(&pipe);
    opts.steps = steps;
    if let Some(s) = size {
        (opts.height, opts.width) = (s, s);
    }
    let io_path = dir.join("bench_io.safetensors");
    let reference = if io_path.is_file() { Some(tch::Tensor::read_safetensors(&io_path)?) } else { None };
    let get = |name: &str| reference.as_ref().and_then(|r| r.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()));
    let (latents, prompts) = match get("latents") {
        Some(l) => {
            let text = std::fs::read_to_string(dir.join("bench_prompts.json")).context("bench_prompts.json beside bench_io.safetensors")?;
            (l, serde_json::from_str::<Vec<String>>(&text)?)
        }
        None => (pipe.image_noise(0, &opts).0, vec!["a photo of a car.".to_string()]),
    };
    let (ms, image) = eloss_perception::gdc::bench::bench_generator(&pipe, &prompts, &latents, &opts, iters)?;
    let (h, w) = (opts.height, opts.width);
    print!("{} batch {} steps {steps} {h}x{w} threads {threads}: {ms:.1} ms per image (median of {iters})", dir.display(), prompts.len());
    match get("image") {
        Some(r) => println!(", max |ours - diffusers| = {:.2e}", f64::try_from((image - r).abs().max())?),
        None => println!(),
    }
    Ok(())
}

struct GenerationArgs<'a> {
    classes: &'a [String],
    per_class: usize,
    templates: &'a str,
    steps: usize,
    guidance: f64,
    size: Option<i64>,
    seed: u64,
    gen_batch: usize,
    cache: Option<&'a std::path::Path>,
}

/// `gdc bank --generator`: images per class (cached, resumable) and a contact sheet each.
fn generate_classes(
    dir: &std::path::Path,
    a: &GenerationArgs,
    out: &std::path::Path,
    device: tch::Device,
) -> anyhow::Result<Vec<eloss_perception::gdc::generator::class_images::ClassImages>> {
    use eloss_perception::gdc::generator::class_images::{check_class_name, contact_sheet, generate_class, ClassImageOptions, ImageCache};
    use eloss_perception::gdc::generator::pipeline::{GenerateOptions, Pipeline};
    use eloss_perception::gdc::generator::prompts::Templates;
    if a.classes.is_empty() || a.per_class < 2 {
        anyhow::bail!("need at least one class and --per-class >= 2");
    }
    for (i, c) in a.classes.iter().enumerate() {
        check_class_name(c)?;
        if a.classes[..i].contains(c) {
            anyhow::bail!("class {c:?} is listed twice");
        }
    }
    let templates = Templates::from_arg(a.templates)?;
    let pipe = Pipeline::load(dir, device).with_context(|| format!("loading generator {}", dir.display()))?;
    let mut generate = GenerateOptions::turbo(&pipe);
    generate.steps = a.steps;
    generate.guidance_scale = a.guidance;
    if let Some(s) = a.size {
        (generate.height, generate.width) = (s, s);
    }
    let opts = ClassImageOptions { per_class: a.per_class, batch: a.gen_batch, seed: a.seed, generate, templates };
    let root = match a.cache {
        Some(c) => c.to_owned(),
        None => PathBuf::from(format!("{}.images", out.display())),
    };
    let cache = ImageCache::open(&root, dir, &opts)?;
    let bar = indicatif::ProgressBar::new((a.classes.len() * a.per_class) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} images, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut sets = Vec::new();
    for (k, class) in a.classes.iter().enumerate() {
        bar.set_message(class.clone());
        let set = generate_class(&pipe, &cache, class, &opts, |done| bar.set_position((k * a.per_class + done) as u64))?;
        contact_sheet(&set.paths, &cache.sheet_path(class), 128)?;
        sets.push(set);
    }
    bar.finish_and_clear();
    let new: usize = sets.iter().map(|s| s.generated).sum();
    println!("{} images ({new} new) and contact sheets in {}", a.classes.len() * a.per_class, cache.dir.display());
    Ok(sets)
}
