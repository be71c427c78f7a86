//! The ROS 2 adapter: the only module that imports r2r. It wires topics,
//! parameters and diagnostics to the ROS-free core and converts messages.

pub mod add_classes;
pub mod convert;
pub mod detections;
pub mod frame_bench;
pub mod logging;
pub mod node;
pub mod param_guard;
pub mod params;
pub mod relabel;
pub mod replay;

/// The node's name (its logger's too).
pub const NODE_NAME: &str = "eloss_perception_node";
