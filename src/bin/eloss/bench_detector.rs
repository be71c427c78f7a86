//! `eloss bench-detector`: per-stage CPU latency of one frame, the
//! inference graphs side by side in one process (unfolded eval-mode
//! modules, folded contiguous, folded channels-last; iterations
//! interleaved so machine noise hits all three alike), what the first
//! backbone block costs next to the BEV map's occupancy (the most skipping
//! empty cells could save), and the dump that lets PyTorch and ONNX Runtime
//! run the identical network on the identical input
//! (scripts/bench_detector_torch.py).

use anyhow::Context as _;
use eloss_perception::detect::checkpoint;
use eloss_perception::detect::detector::{Detector, INFERENCE_FORMAT};
use eloss_perception::detect::model::folded::MemoryFormat;
use eloss_perception::detect::pillars::pillarize;
use eloss_perception::eloss::cells::Cells;
use eloss_perception::eloss::entropy::Estimator;
use eloss_perception::eloss::grouping::Grouping;
use eloss_perception::eloss::profile::{EntropyProfile, ProfileSpec};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Detector checkpoint (default: the embedded compact model)
    #[arg(long)]
    model: Option<PathBuf>,
    /// KITTI .bin cloud to run on
    #[arg(long)]
    cloud: PathBuf,
    #[arg(long, default_value_t = 20)]
    iters: usize,
    #[arg(long)]
    threads: Option<i32>,
    /// Write the pillar input and the head outputs here (safetensors), for
    /// scripts/bench_detector_torch.py to check and time the same network
    #[arg(long)]
    dump: Option<PathBuf>,
    /// ONNX graph of the model (scripts/export_onnx.py): the onnxruntime
    /// backend joins the graphs timed side by side
    #[arg(long)]
    onnx: Option<PathBuf>,
}

/// The crate's median (NaN when empty), taking the timings by value as they are collected.
fn median(v: Vec<f64>) -> f64 {
    eloss_perception::numeric::median(&v)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The checkpoint at `model` (the embedded model when `None`) on the CPU, with its info.
fn load_with_info(model: Option<&std::path::Path>) -> anyhow::Result<(Detector, checkpoint::CheckpointInfo)> {
    Ok(match model {
        Some(p) => checkpoint::load(p, tch::Device::Cpu)?,
        None => checkpoint::load_bytes(eloss_perception::perception::EMBEDDED_MODEL, std::path::Path::new("<embedded>"), tch::Device::Cpu)?,
    })
}

fn load(model: Option<&std::path::Path>) -> anyhow::Result<Detector> {
    Ok(load_with_info(model)?.0)
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let model = a.model.as_deref().map(|p| p.to_str().context("model path is not UTF-8")).transpose()?.unwrap_or("");
    let pipe = eloss_perception::perception::FramePipeline::load(model, tch::Device::Cpu, &Default::default())?;
    let det = pipe.detector();
    let points = eloss_perception::cloud::kitti_bin::read(&a.cloud)?;
    let iters = a.iters.max(1);
    // the node's graph: per-stage times and the Eloss profile
    let _ = det.detect(&points)?; // warm-up
    let (mut pil, mut net, mut post, mut total, mut eloss_knn, mut eloss_gauss) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut eloss_knn_occupied, mut eloss_knn_subsampled) = (vec![], vec![]);
    for _ in 0..iters {
        let t = Instant::now();
        let out = det.detect(&points)?;
        total.push(ms_since(t));
        pil.push(out.timings.pillarize.as_secs_f64() * 1e3);
        net.push(out.timings.network.as_secs_f64() * 1e3);
        post.push(out.timings.postprocess.as_secs_f64() * 1e3);
        for (est, store) in [("knn", &mut eloss_knn), ("gaussian", &mut eloss_gauss)] {
            let t = Instant::now();
            let _ = EntropyProfile::compute(&out.layers, est.parse()?, Grouping::PerBlock);
            store.push(ms_since(t));
        }
        for (cells, store) in [(Cells::Occupied, &mut eloss_knn_occupied), (Cells::Subsampled, &mut eloss_knn_subsampled)] {
            let t = Instant::now();
            let _ = EntropyProfile::compute_on(&out.layers, ProfileSpec { estimator: Estimator::Knn, grouping: Grouping::PerBlock, cells });
            store.push(ms_since(t));
        }
    }
    let pillars = pillarize(&points, &det.config.pillars)?;
    println!(
        "{} points, {} pillars, {} threads, graph folded {:?}: pillarize {:.1} ms, network {:.1} ms, postprocess {:.1} ms, total {:.1} ms; Eloss profile knn {:.2} ms, gaussian {:.2} ms, knn over occupied cells {:.2} ms, knn over subsampled cells {:.2} ms (medians of {iters})",
        points.len(),
        pillars.len(),
        tch::get_num_threads(),
        INFERENCE_FORMAT,
        median(pil),
        median(net.clone()),
        median(post),
        median(total),
        median(eloss_knn),
        median(eloss_gauss),
        median(eloss_knn_occupied),
        median(eloss_knn_subsampled),
    );
    eloss_layers(&det, &points, iters)?;
    graphs_side_by_side(a.model.as_deref(), a.onnx.as_deref(), a.threads, &points, iters)?;
    first_block(a.model.as_deref(), &pillars, iters)?;
    if let Some(path) = &a.dump {
        // the trained network as PyTorch runs it (batch-norms unfolded): the
        // node's folded graph equals it to float rounding
        // (detect::inference_graph_tests), PyTorch's eager graph bit for bit
        let out = load(a.model.as_deref())?.detect(&points)?;
        write_pillar_dump(path, &pillars, &out.head, median(net))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The pillar input of one frame and the head outputs it gave, for
/// scripts/bench_detector_torch.py to run the identical network on the
/// identical input (also written by `eloss gpu-check`).
pub fn write_pillar_dump(path: &std::path::Path, pillars: &eloss_perception::detect::pillars::Pillars, head: &eloss_perception::detect::model::head::HeadOutput, network_ms_median: f64) -> anyhow::Result<()> {
    let (p, m) = (pillars.len() as i64, pillars.max_points_per_pillar as i64);
    let features = Tensor::from_slice(&pillars.features).view([p, m, eloss_perception::detect::pillars::POINT_FEATURES as i64]);
    let counts: Vec<i64> = pillars.num_points.iter().map(|&n| n as i64).collect();
    let coords: Vec<i64> = pillars.coords.iter().flat_map(|&(y, x)| [y as i64, x as i64]).collect();
    let grid = [pillars.grid.0 as i64, pillars.grid.1 as i64];
    let cpu = |t: &Tensor| t.to_device(tch::Device::Cpu).contiguous(); // cpu: the file is written from host memory
    Tensor::write_safetensors(
        &[
            ("features", features),
            ("num_points", Tensor::from_slice(&counts)),
            ("coords", Tensor::from_slice(&coords).view([p, 2])),
            ("grid_wh", Tensor::from_slice(&grid)),
            ("cls", cpu(&head.cls)),
            ("boxes", cpu(&head.boxes)),
            ("dir", cpu(&head.dir)),
            ("network_ms_median", Tensor::from_slice(&[network_ms_median])),
        ],
        path,
    )?;
    Ok(())
}

/// Where the Eloss profile's time goes: per layer, its shape and the
/// median time of each estimator, against the detector's time measured in
/// the same iterations (the ratio the ≤ 10 % budget is about).
fn eloss_layers(det: &Detector, points: &eloss_perception::cloud::Points, iters: usize) -> anyhow::Result<()> {
    use eloss_perception::eloss::entropy::{entropy_value, Estimator, DEFAULT_RIDGE_REL};
    let out = det.detect(points)?;
    let layers: Vec<&Tensor> = out.layers.blocks.iter().flatten().collect();
    let estimators = [Estimator::Knn, Estimator::Gaussian { ridge_rel: DEFAULT_RIDGE_REL }];
    let mut times = vec![vec![Vec::new(); layers.len()]; estimators.len()];
    let mut detect = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        let _ = det.detect(points)?;
        detect.push(ms_since(t));
        for (e, est) in estimators.iter().enumerate() {
            for (i, x) in layers.iter().enumerate() {
                let t = Instant::now();
                let _ = entropy_value(*est, x);
                times[e][i].push(ms_since(t));
            }
        }
    }
    let detect_ms = median(detect);
    println!("Eloss profile per layer (medians of {iters}; detector {detect_ms:.1} ms per frame in the same iterations):");
    println!("layer  shape             knn ms  gaussian ms");
    let mut sums = vec![0.0; estimators.len()];
    for (i, x) in layers.iter().enumerate() {
        let (_, c, h, w) = x.size4()?;
        let ms: Vec<f64> = (0..estimators.len()).map(|e| median(times[e][i].clone())).collect();
        for (s, m) in sums.iter_mut().zip(&ms) {
            *s += m;
        }
        println!("{i:>5}  {:<16}  {:>6.2}  {:>11.2}", format!("{c}x{h}x{w}"), ms[0], ms[1]);
    }
    println!("sum: knn {:.2} ms ({:.1} % of the detector), gaussian {:.2} ms ({:.1} %)", sums[0], 100.0 * sums[0] / detect_ms, sums[1], 100.0 * sums[1] / detect_ms);
    Ok(())
}

/// Network time (pillar net + backbone + neck + head) of each inference
/// graph (and of the onnxruntime backend with `onnx`), the graphs taking
/// turns within every iteration.
fn graphs_side_by_side(model: Option<&std::path::Path>, onnx: Option<&std::path::Path>, threads: Option<i32>, points: &eloss_perception::cloud::Points, iters: usize) -> anyhow::Result<()> {
    let unfolded = load(model)?;
    let mut contiguous = load(model)?;
    contiguous.fold_for_inference(MemoryFormat::Contiguous);
    let mut channels_last = load(model)?;
    channels_last.fold_for_inference(MemoryFormat::ChannelsLast);
    #[cfg_attr(not(feature = "onnxruntime"), allow(unused_mut))]
    let mut graphs = vec![("unfolded", unfolded), ("folded contiguous", contiguous), ("folded channels-last", channels_last)];
    if let Some(graph) = onnx {
        #[cfg(feature = "onnxruntime")]
        {
            let (mut det, info) = load_with_info(model)?;
            det.use_onnxruntime(graph, &info.model_id, threads.map_or(0, |t| t.max(0) as usize))?;
            graphs.push(("onnxruntime backend", det));
        }
        #[cfg(not(feature = "onnxruntime"))]
        anyhow::bail!("--onnx {}: this build has no onnxruntime feature (threads {threads:?})", graph.display());
    }
    let mut times = vec![Vec::new(); graphs.len()];
    for it in 0..iters + 1 {
        for (k, (_, g)) in graphs.iter().enumerate() {
            let out = g.detect(points)?;
            if it > 0 {
                times[k].push(out.timings.network.as_secs_f64() * 1e3);
            }
        }
    }
    let line: Vec<String> = graphs.iter().zip(times).map(|((name, _), t)| format!("{name} {:.1} ms", median(t))).collect();
    println!("network by graph (interleaved, medians of {iters}): {}", line.join(", "));
    Ok(())
}

/// What the first backbone block costs and how much of its input is empty:
/// the share of BEV cells holding a pillar, and the share of each
/// first-block layer's output cells a sparse convolution would compute —
/// a regular sparse conv (active set dilated by every 3x3 layer) and a
/// submanifold one (active set fixed after the strided layer). The saving
/// bound assumes cost proportional to active cells and free bookkeeping.
fn first_block(model: Option<&std::path::Path>, pillars: &eloss_perception::detect::pillars::Pillars, iters: usize) -> anyhow::Result<()> {
    let mut det = load(model)?;
    det.fold_for_inference(INFERENCE_FORMAT);
    let net = det.folded().context("folded graph")?;
    let (w, h) = (pillars.grid.0 as i64, pillars.grid.1 as i64);
    let (mut block0, mut backbone_neck) = (Vec::new(), Vec::new());
    tch::no_grad(|| {
        let bev = net.bev(pillars, tch::Device::Cpu);
        for it in 0..iters + 1 {
            let t = Instant::now();
            let _ = net.block(0, &bev);
            let b0 = ms_since(t);
            let t = Instant::now();
            let _ = net.forward(&bev);
            if it > 0 {
                block0.push(b0);
                backbone_neck.push(ms_since(t));
            }
        }
    });
    let mut occupied = Tensor::zeros([1, 1, h * w], (Kind::Float, tch::Device::Cpu));
    let idx: Vec<i64> = pillars.coords.iter().map(|&(y, x)| y as i64 * w + x as i64).collect();
    let _ = occupied.index_fill_(2, &Tensor::from_slice(&idx), 1.0);
    let occupied = occupied.view([1, 1, h, w]);
    let input_share = occupied.mean(Kind::Float).double_value(&[]);
    let strides = &det.config.backbone.layer_strides;
    let layers0 = det.config.backbone.layer_nums[0] + 1;
    let mut regular = Vec::new();
    let mut active = occupied.max_pool2d([3, 3], [strides[0], strides[0]], [1, 1], [1, 1], false);
    let submanifold = active.mean(Kind::Float).double_value(&[]);
    for k in 0..layers0 {
        if k > 0 {
            active = active.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false);
        }
        regular.push(active.mean(Kind::Float).double_value(&[]));
    }
    let mean_regular = regular.iter().sum::<f64>() / regular.len() as f64;
    let (b0, bn) = (median(block0), median(backbone_neck));
    println!(
        "first block: {b0:.1} ms of {bn:.1} ms backbone + neck ({:.0} %); BEV cells with a pillar {:.1} %; active output cells per first-block layer: regular sparse conv {:?} %, submanifold {:.1} %; skipping inactive cells saves at most {:.1} ms (regular) / {:.1} ms (submanifold) of the first block",
        100.0 * b0 / bn,
        100.0 * input_share,
        regular.iter().map(|r| (1000.0 * r).round() / 10.0).collect::<Vec<_>>(),
        100.0 * submanifold,
        b0 * (1.0 - mean_regular),
        b0 * (1.0 - submanifold),
    );
    Ok(())
}
