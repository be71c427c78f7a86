//! Points → detections, with the compression network's layer outputs (for
//! Eloss, from the same forward pass) and per-stage timings. The whole
//! PointPillars-style network lives in one `VarStore` with OpenPCDet key names.

use super::anchors::{AnchorClass, AnchorConfig, AnchorError, AnchorGrid};
use super::box_coder::DirectionBins;
use super::model::backbone::{Backbone, BackboneConfig, LayerOutputs};
use super::model::folded::{FoldedNetwork, MemoryFormat};
use super::model::head::{AnchorHead, HeadOutput};
use super::model::neck::{Neck, NeckConfig};
use super::model::pillar_encoder::PillarEncoder;
use super::nms::{NmsConfig, NmsError};
use super::pillars::{pillarize, PillarBatch, PillarConfig, PillarError, Pillars};
use super::postprocess::{detections, Detection, PostprocessError};
use crate::cloud::Points;
use std::time::{Duration, Instant};
use tch::{nn, Device, Kind, Tensor};

/// Activation layout of the inference graph the node runs
/// ([`Detector::fold_for_inference`]), chosen by measurement: channels-last
/// ran the compact network 17-23 % faster than the folded contiguous graph
/// at 1 and 2 threads (docs/benchmarks.md, "Inference graph").
pub const INFERENCE_FORMAT: MemoryFormat = MemoryFormat::ChannelsLast;


/// How batch-norm layers behave in a training forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormMode {
    /// Normalise by the batch's own statistics and update the running ones (OpenPCDet, the paper's code).
    #[default]
    Train,
    /// Normalise by the running statistics (inference mode), which stay fixed.
    Frozen,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectorConfig {
    pub pillars: PillarConfig,
    pub encoder_channels: i64,
    pub backbone: BackboneConfig,
    pub neck: NeckConfig,
    pub classes: Vec<AnchorClass>,
    pub score_threshold: f32,
    pub nms_iou: f64,
    pub max_detections: usize,
    /// Anchor yaws (rad) at every cell for every class (OpenPCDet
    /// `anchor_rotations`; its KITTI configs: `[0, 1.57]`).
    #[serde(default = "default_anchor_rotations")]
    pub anchor_rotations: Vec<f64>,
    /// Anchors at cell centres (true) or on OpenPCDet's `align_center: False`
    /// grid from corner to corner (see `detect::anchors`).
    #[serde(default = "default_true")]
    pub anchor_align_center: bool,
    /// One NMS over all classes (OpenPCDet `MULTI_CLASSES_NMS: False`)
    /// instead of one per class.
    #[serde(default)]
    pub nms_class_agnostic: bool,
    /// Candidates kept (best first) before the greedy NMS step (OpenPCDet `NMS_PRE_MAXSIZE`).
    #[serde(default = "default_nms_pre_max_size")]
    pub nms_pre_max_size: usize,
    /// Training's anchor matching IoU thresholds, one per class (OpenPCDet
    /// `matched_threshold` / `unmatched_threshold`); empty: KITTI's for
    /// Car, Pedestrian, Cyclist (`MatchThresholds::kitti`).
    #[serde(default)]
    pub match_thresholds: Vec<super::targets::MatchThresholds>,
}

fn default_anchor_rotations() -> Vec<f64> {
    vec![0.0, std::f64::consts::FRAC_PI_2]
}

fn default_true() -> bool {
    true
}

fn default_nms_pre_max_size() -> usize {
    4096
}

impl DetectorConfig {
    /// The compact CPU model (docs: ../shared/ENVIRONMENT.md compute budget):
    /// 0.32 m pillars over KITTI's range (216 x 248), 32/64/128 channels.
    pub fn compact() -> Self {
        Self {
            pillars: PillarConfig {
                range: [0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
                pillar_size: [0.32, 0.32],
                max_points_per_pillar: 32,
                max_pillars: 12_000,
            },
            encoder_channels: 32,
            backbone: BackboneConfig { in_channels: 32, layer_nums: vec![3, 5, 5], layer_strides: vec![2, 2, 2], num_filters: vec![32, 64, 128] },
            neck: NeckConfig { in_channels: vec![32, 64, 128], upsample_strides: vec![1, 2, 4], upsample_filters: vec![64, 64, 64] },
            classes: AnchorClass::kitti(),
            score_threshold: 0.3,
            nms_iou: 0.01,
            max_detections: 100,
            anchor_rotations: default_anchor_rotations(),
            anchor_align_center: true,
            nms_class_agnostic: false,
            nms_pre_max_size: default_nms_pre_max_size(),
            match_thresholds: Vec::new(),
        }
    }

    /// OpenPCDet's KITTI PointPillars (for GPUs): 0.16 m pillars (432 x 496),
    /// 64/128/256 channels, three 128-channel upsampling branches.
    pub fn full() -> Self {
        Self {
            pillars: PillarConfig {
                range: [0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
                pillar_size: [0.16, 0.16],
                max_points_per_pillar: 32,
                max_pillars: 16_000,
            },
            encoder_channels: 64,
            backbone: BackboneConfig::pointpillars(),
            neck: NeckConfig { in_channels: vec![64, 128, 256], upsample_strides: vec![1, 2, 4], upsample_filters: vec![128, 128, 128] },
            ..Self::compact()
        }
    }

    /// `compact` or `full`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "compact" => Some(Self::compact()),
            "full" => Some(Self::full()),
            _ => None,
        }
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Pillars(#[from] PillarError),
    #[error(transparent)]
    Anchors(#[from] AnchorError),
    #[error(transparent)]
    Postprocess(#[from] PostprocessError),
    #[error(transparent)]
    Nms(#[from] NmsError),
    #[error("the feature map of the first backbone block must be a whole number of cells")]
    Grid,
    #[error("detector config: {field}: {problem}")]
    Config { field: String, problem: String },
    #[cfg(feature = "onnxruntime")]
    #[error(transparent)]
    Onnx(#[from] super::onnx_graph::OnnxError),
}

/// Wall time of each stage of one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    pub pillarize: Duration,
    pub network: Duration,
    pub postprocess: Duration,
}

pub struct Detector {
    pub config: DetectorConfig,
    pub vs: nn::VarStore,
    encoder: PillarEncoder,
    backbone: Backbone,
    neck: Neck,
    head: AnchorHead,
    grid: AnchorGrid,
    bins: DirectionBins,
    nms: NmsConfig,
    /// The folded inference graph, when [`Detector::fold_for_inference`] built one.
    inference: Option<FoldedNetwork>,
    /// Backbone, neck and head under fp16 autocast ([`Detector::set_fp16_autocast`], CUDA only).
    fp16_autocast: bool,
    /// Backbone, neck and head on ONNX Runtime ([`Detector::use_onnxruntime`]).
    #[cfg(feature = "onnxruntime")]
    onnx: Option<super::onnx_graph::OnnxDense>,
}

pub struct FrameOutput {
    pub detections: Vec<Detection>,
    pub layers: LayerOutputs,
    pub head: HeadOutput,
    pub timings: StageTimings,
}

impl Detector {
    pub fn new(config: DetectorConfig, device: Device) -> Result<Self, DetectorError> {
        config.validate()?;
        let (w, h) = config.pillars.grid()?;
        let stride = config.backbone.layer_strides[0] as usize; // validated: >= 1 and divides the grid
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let encoder = PillarEncoder::new(&root, config.encoder_channels);
        let backbone = Backbone::new(&root, &config.backbone);
        let neck = Neck::new(&root, &config.neck);
        let grid = AnchorGrid::new(&AnchorConfig {
            point_cloud_range: config.pillars.range,
            feature_map_size: (h / stride, w / stride),
            rotations: config.anchor_rotations.clone(),
            classes: config.classes.clone(),
            align_center: config.anchor_align_center,
        })?;
        let bins = DirectionBins::kitti();
        let head = AnchorHead::new(&root, config.neck.out_channels(), grid.anchors_per_location() as i64, grid.num_classes() as i64, bins.num_bins() as i64);
        let nms = NmsConfig::new(config.score_threshold as f64, config.nms_iou, Some(config.nms_pre_max_size), Some(config.max_detections))?;
        Ok(Self {
            config,
            vs,
            encoder,
            backbone,
            neck,
            head,
            grid,
            bins,
            nms,
            inference: None,
            fp16_autocast: false,
            #[cfg(feature = "onnxruntime")]
            onnx: None,
        })
    }

    /// Builds the inference graph from the current weights (every
    /// batch-norm folded into the layer before it, activations in `format`)
    /// and runs [`detect`](Self::detect) / [`detect_batch`](Self::detect_batch)
    /// on it from now on. Call it after loading weights for inference: the
    /// graph is a snapshot, so weights changed later (training) need another
    /// call or [`unfold`](Self::unfold). The training passes
    /// (`forward_train*`) always use the unfolded modules.
    pub fn fold_for_inference(&mut self, format: MemoryFormat) {
        let net = tch::no_grad(|| FoldedNetwork::new(self.encoder.folded(), self.backbone.folded(), self.neck.folded(), format));
        self.inference = Some(net);
    }

    /// Back to the unfolded modules in eval mode for inference (and off
    /// ONNX Runtime).
    pub fn unfold(&mut self) {
        self.inference = None;
        #[cfg(feature = "onnxruntime")]
        {
            self.onnx = None;
        }
    }

    /// Runs backbone, neck and head on ONNX Runtime from now on, with the
    /// graph `scripts/export_onnx.py` made of these weights (`model_id`, the
    /// checkpoint's), on `threads` intra-op threads; the pillar net and the
    /// scatter stay on libtorch (folded, contiguous, as the graph's input).
    /// CPU only.
    #[cfg(feature = "onnxruntime")]
    pub fn use_onnxruntime(&mut self, graph: &std::path::Path, model_id: &str, threads: usize) -> Result<(), DetectorError> {
        if self.vs.device() != Device::Cpu { // cpu: ONNX Runtime reads host memory; refused elsewhere
            return Err(DetectorError::Config { field: "backend".into(), problem: "onnxruntime runs on the CPU only; use the torch backend on a GPU".into() });
        }
        let counts: Vec<usize> = self.config.backbone.layer_nums.iter().map(|&n| n + 1).collect();
        let onnx = super::onnx_graph::OnnxDense::load(graph, model_id, &counts, threads)?;
        self.fold_for_inference(MemoryFormat::Contiguous);
        self.onnx = Some(onnx);
        Ok(())
    }

    /// Which engine runs the dense part: `torch` or `onnxruntime`.
    pub fn backend(&self) -> &'static str {
        #[cfg(feature = "onnxruntime")]
        if self.onnx.is_some() {
            return "onnxruntime";
        }
        "torch"
    }

    /// The folded inference graph, if [`fold_for_inference`](Self::fold_for_inference) built one.
    pub fn folded(&self) -> Option<&FoldedNetwork> {
        self.inference.as_ref()
    }

    /// One frame's BEV map, by the inference graph in use.
    fn bev_map(&self, pillars: &Pillars) -> Tensor {
        let device = self.vs.device();
        match &self.inference {
            Some(net) => net.bev(pillars, device),
            None => self.encoder.scatter(&self.encoder.encode(pillars, device, false), pillars),
        }
    }

    /// Backbone, neck and head in eval mode, by the inference graph in use.
    fn dense_eval(&self, bev: &Tensor) -> Result<(LayerOutputs, HeadOutput), DetectorError> {
        #[cfg(feature = "onnxruntime")]
        if let Some(onnx) = &self.onnx {
            return Ok(onnx.forward(bev)?);
        }
        Ok(match &self.inference {
            Some(net) => {
                let (layers, neck) = net.forward(bev);
                (layers, self.head.forward(&neck))
            }
            None => {
                let (blocks, layers) = self.backbone.forward(bev, false);
                (layers, self.head.forward(&self.neck.forward(&blocks, false)))
            }
        })
    }

    /// Inference with the backbone, neck and head under libtorch's fp16
    /// autocast (convolutions in half precision, fp32 weights kept; head
    /// outputs back in fp32 for the post-processing, the Eloss layer outputs
    /// stay fp16). CUDA only: tch's autocast does not reach the CPU, so
    /// asking for it there is an error rather than a silent fp32 run.
    pub fn set_fp16_autocast(&mut self, on: bool) -> Result<(), DetectorError> {
        if on && !self.vs.device().is_cuda() {
            return Err(DetectorError::Config { field: "fp16_autocast".into(), problem: format!("needs a CUDA device, the detector is on {:?}", self.vs.device()) });
        }
        self.fp16_autocast = on;
        Ok(())
    }

    /// [`dense_eval`](Self::dense_eval) under fp16 autocast when it is on,
    /// head outputs in fp32 either way.
    fn network(&self, bev: &Tensor) -> Result<(LayerOutputs, HeadOutput), DetectorError> {
        if !self.fp16_autocast {
            return self.dense_eval(bev);
        }
        let (layers, h) = tch::autocast(true, || self.dense_eval(bev))?;
        Ok((layers, HeadOutput { cls: h.cls.to_kind(Kind::Float), boxes: h.boxes.to_kind(Kind::Float), dir: h.dir.to_kind(Kind::Float) }))
    }

    /// Changes the score threshold of the post-processing (evaluation uses a
    /// low one to trace the whole precision-recall curve).
    pub fn set_score_threshold(&mut self, threshold: f32) -> Result<(), DetectorError> {
        self.nms = NmsConfig::new(threshold as f64, self.config.nms_iou, Some(self.config.nms_pre_max_size), Some(self.config.max_detections))?;
        self.config.score_threshold = threshold;
        Ok(())
    }

    pub fn anchors(&self) -> &AnchorGrid {
        &self.grid
    }

    /// One frame for training (gradients kept): head outputs and the layer
    /// outputs for the Entropy Loss. With [`BatchNormMode::Train`] batch-norm
    /// normalises by the frame's own statistics and updates its running
    /// ones; with [`BatchNormMode::Frozen`] it uses the running statistics,
    /// as inference does, so the layer outputs are the ones the Eloss
    /// monitor reads (only the affine parameters keep learning).
    pub fn forward_train(&self, points: &Points, batchnorm: BatchNormMode) -> Result<(HeadOutput, LayerOutputs), DetectorError> {
        let bn_train = batchnorm == BatchNormMode::Train;
        let pillars = pillarize(points, &self.config.pillars)?;
        let feats = self.encoder.encode(&pillars, self.vs.device(), bn_train);
        let bev = self.encoder.scatter(&feats, &pillars);
        let (blocks, layers) = self.backbone.forward(&bev, bn_train);
        Ok((self.head.forward(&self.neck.forward(&blocks, bn_train)), layers))
    }

    /// A batch of frames for training, as OpenPCDet: one pillar-encoder
    /// pass over all frames' pillars, the features scattered into [B, C, H, W]
    /// BEV maps, then backbone, neck and head on the batch. With
    /// [`BatchNormMode::Train`] batch-norm uses the statistics of the B
    /// frames together; with [`BatchNormMode::Frozen`] the running ones, so
    /// each frame is normalised on its own, as at inference. Head outputs
    /// are [B, anchors, ...] and every layer output [B, C, H, W]. For B = 1
    /// the same tensors as [`forward_train`](Self::forward_train) on that
    /// frame's points.
    pub fn forward_train_batch(&self, batch: &PillarBatch, batchnorm: BatchNormMode) -> Result<(HeadOutput, LayerOutputs), DetectorError> {
        let grid = self.config.pillars.grid()?;
        if batch.grid != grid || batch.max_points_per_pillar != self.config.pillars.max_points_per_pillar {
            return Err(DetectorError::Config {
                field: "pillar batch".into(),
                problem: format!(
                    "grid {:?} with {} points per pillar, the model has {grid:?} with {}",
                    batch.grid, batch.max_points_per_pillar, self.config.pillars.max_points_per_pillar
                ),
            });
        }
        let bn_train = batchnorm == BatchNormMode::Train;
        let feats = self.encoder.encode_batch(batch, self.vs.device(), bn_train);
        let bev = self.encoder.scatter_batch(&feats, batch);
        let (blocks, layers) = self.backbone.forward(&bev, bn_train);
        Ok((self.head.forward(&self.neck.forward(&blocks, bn_train)), layers))
    }

    /// One frame, inference mode (batch size 1, no gradients).
    pub fn detect(&self, points: &Points) -> Result<FrameOutput, DetectorError> {
        let t0 = Instant::now();
        let pillars = pillarize(points, &self.config.pillars)?;
        let t1 = Instant::now();
        let (layers, head) = tch::no_grad(|| self.network(&self.bev_map(&pillars)))?;
        let t2 = Instant::now();
        let dets = self.postprocess(&head, 0)?;
        let t3 = Instant::now();
        Ok(FrameOutput { detections: dets, layers, head, timings: StageTimings { pillarize: t1 - t0, network: t2 - t1, postprocess: t3 - t2 } })
    }

    /// Several clouds in one forward pass: each cloud is pillarized, encoded
    /// and scattered on its own, then backbone, neck and head run once on
    /// the stacked BEV maps (batch = `clouds.len()`). Element i is what
    /// `detect(clouds[i])` gives, up to the float rounding of a batched
    /// convolution; its layer and head outputs are views of batch element i
    /// (shape [1, ...]). Every element carries the batch's pillarize and
    /// network times and its own post-processing time.
    pub fn detect_batch(&self, clouds: &[&Points]) -> Result<Vec<FrameOutput>, DetectorError> {
        if clouds.is_empty() {
            return Ok(Vec::new());
        }
        let t0 = Instant::now();
        let pillars = clouds.iter().map(|p| pillarize(p, &self.config.pillars)).collect::<Result<Vec<_>, _>>()?;
        let t1 = Instant::now();
        let (layers, head) = tch::no_grad(|| {
            let maps: Vec<_> = pillars.iter().map(|p| self.bev_map(p)).collect();
            self.network(&Tensor::cat(&maps, 0))
        })?;
        let t2 = Instant::now();
        let mut out = Vec::with_capacity(clouds.len());
        for i in 0..clouds.len() as i64 {
            let t = Instant::now();
            let head_i = HeadOutput { cls: head.cls.narrow(0, i, 1), boxes: head.boxes.narrow(0, i, 1), dir: head.dir.narrow(0, i, 1) };
            let detections = self.postprocess(&head_i, 0)?;
            let layers_i = LayerOutputs {
                blocks: layers.blocks.iter().map(|b| b.iter().map(|t| t.narrow(0, i, 1)).collect()).collect(),
                input: layers.input.as_ref().map(|t| t.narrow(0, i, 1)),
            };
            let timings = StageTimings { pillarize: t1 - t0, network: t2 - t1, postprocess: t.elapsed() };
            out.push(FrameOutput { detections, layers: layers_i, head: head_i, timings });
        }
        Ok(out)
    }

    /// Detections of batch element `i` of the head outputs: decode,
    /// class-wise (or class-agnostic) NMS, then the frame as a whole capped (best first).
    fn postprocess(&self, head: &HeadOutput, i: i64) -> Result<Vec<Detection>, DetectorError> {
        let mut dets = detections(&head.cls.get(i), &head.boxes.get(i), &head.dir.get(i), &self.grid, &self.bins, self.config.score_threshold, &self.nms, self.config.nms_class_agnostic)?;
        dets.truncate(self.config.max_detections);
        Ok(dets)
    }

    /// The post-processing's NMS settings (score threshold, IoU, top-k).
    pub fn nms_config(&self) -> &NmsConfig {
        &self.nms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_model_runs_on_the_real_frame() {
        let Some(dir) = crate::cloud::test_data::kitti_dir() else { return };
        let pts = crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap();
        let det = Detector::new(DetectorConfig::compact(), Device::Cpu).unwrap();
        assert_eq!(det.anchors().feature_map_size(), (124, 108));
        let out = det.detect(&pts).unwrap();
        assert_eq!(out.layers.blocks.iter().map(Vec::len).collect::<Vec<_>>(), [4, 6, 6]);
        assert_eq!(out.head.cls.size(), [1, det.anchors().len() as i64, 3]);
        assert!(out.detections.len() <= 100);
        assert!(out.detections.iter().all(|d| d.score >= 0.3 && d.class < 3));
        eprintln!("compact detector on 000008: {:?}", out.timings);
    }

    #[test]
    fn fp16_autocast_is_refused_on_the_cpu_and_off_keeps_fp32_heads() {
        let mut det = Detector::new(DetectorConfig::compact(), Device::Cpu).unwrap(); // cpu: the refusal under test
        let err = det.set_fp16_autocast(true).unwrap_err().to_string();
        assert!(err.contains("fp16_autocast") && err.contains("CUDA"), "{err}");
        det.set_fp16_autocast(false).unwrap();
        let pts = crate::dataset::sim::Lidar::new(crate::dataset::sim::LidarConfig::hdl64e()).unwrap();
        let scene = crate::dataset::sim::SceneConfig::default().generate(3).unwrap();
        let points = pts.scan(&scene, &scene.snapshot(0.0), 3).points;
        let out = det.detect(&points).unwrap();
        assert_eq!(out.head.cls.kind(), Kind::Float);
    }
}
