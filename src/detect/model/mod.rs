//! The detector network in tch, one concept per file; variable paths follow
//! OpenPCDet's PointPillars checkpoint keys (`vfe.pfn_layers.0.linear`,
//! `backbone_2d.blocks.I.K`), so converted OpenPCDet weights load by name.
//!
//! - [`pillar_encoder`]: PointNet over each pillar's points + scatter to the BEV map;
//! - [`backbone`]: the SECOND-style 2D backbone, the "feature-compression
//!   network" of the Entropy Loss papers, returning every layer's output;
//! - [`neck`]: upsampling and concatenation of the block outputs;
//! - [`head`]: the anchor head (class, box residual, direction per anchor);
//! - [`folded`]: the inference graph, batch-norms folded into the layers before them.

pub mod backbone;
pub mod folded;
pub mod head;
pub mod neck;
pub mod pillar_encoder;
