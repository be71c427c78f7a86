//! 3D detection: the box pipeline geometry (pure, CPU-tested).
//!
//! - [`anchors`]: the anchor grid over the BEV feature map;
//! - [`box_coder`]: OpenPCDet's residual box coding and the direction bins;
//! - [`iou`]: exact rotated BEV / 3D IoU;
//! - [`nms`]: rotated BEV NMS with score threshold, class-wise and top-k;
//! - [`detector`]: points → detections + layer outputs + stage timings (feature `torch`);
//! - [`postprocess`]: head outputs → scored, decoded, NMS-filtered detections (feature `torch`);
//! - [`targets`]: anchor ↔ ground-truth assignment for training;
//! - [`pillars`]: deterministic pillarization with PointPillars point features;
//! - [`validate`]: structural checks of a detector config before a model is built (feature `torch`);
//! - [`openpcdet`]: OpenPCDet PointPillars checkpoints imported as ours (feature `torch`);
//! - [`model`]: the network in tch (pillar encoder, compression backbone; feature `torch`).
//!
//! All boxes are [`crate::geometry::Box3D`]; conventions and formulas are
//! collected in `docs/box_pipeline.md`.

pub mod anchors;
pub mod box_coder;
pub mod iou;
pub mod nms;
#[cfg(feature = "onnxruntime")]
pub mod onnx_graph;
pub mod pillars;
pub mod real_frame;
pub mod targets;
#[cfg(feature = "torch")]
pub mod postprocess;
#[cfg(feature = "torch")]
pub mod detector;
#[cfg(feature = "torch")]
pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod kitti_output;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "torch")]
pub mod validate;
#[cfg(feature = "torch")]
pub mod openpcdet;
#[cfg(all(test, feature = "torch"))]
mod inference_graph_tests;
