//! rosbag2-compatible recording and replay without ROS: MCAP files with the
//! `ros2` profile, CDR messages and `ros2msg` schemas (see `docs/bags.md`).
//!
//! * [`cdr`]: the plain-CDR codec ROS 2 uses on the wire;
//! * [`messages`]: owned sensor message structs ([`PointCloud2`], [`Image`],
//!   [`CameraInfo`], ...) implementing [`RosMessage`];
//! * [`schema`]: the schema text rosbag2 stores, built from installed `.msg` files;
//! * [`mcap_io`]: [`BagWriter`] and [`BagReader`];
//! * [`qos`]: the recorded publishers' QoS (`offered_qos_profiles`) and the
//!   profile a player offers from it;
//! * [`tf`]: `tf2_msgs/TFMessage` for `/tf` and `/tf_static`;
//! * [`kitti_drive`]: a replayable drive made from one KITTI frame.
//!
//! ```no_run
//! use eloss_perception::bag::{BagReader, BagWriter, Header, Image, Time};
//! let mut w = BagWriter::create("/tmp/drive")?; // a rosbag2 directory with metadata.yaml
//! let img = Image { header: Header { stamp: Time::from_nanos(1), frame_id: "cam".into() }, ..Default::default() };
//! w.write("/camera/image", 1, &img)?;
//! w.finish()?;
//! for msg in BagReader::open("/tmp/drive")?.messages_of::<Image>("/camera/image")? {
//!     let (log_time_ns, img) = msg?;
//! }
//! # Ok::<(), eloss_perception::bag::BagError>(())
//! ```

pub mod cdr;
pub mod kitti_drive;
mod mcap_guard;
pub mod mcap_io;
mod metadata;
pub mod messages;
pub mod qos;
pub mod schema;
pub mod tf;

pub use mcap_io::{BagMessage, BagReader, BagWriter, TopicInfo};
pub use messages::{CameraInfo, Header, Image, PointCloud2, PointField, RegionOfInterest, RosMessage, StdString, Time};
pub use qos::{OfferedQos, PlaybackQos};
pub use schema::{schema_text, SchemaResolver};
pub use tf::{Quaternion, TFMessage, Transform, TransformStamped, Vector3};

use std::path::PathBuf;

/// Everything that can go wrong reading or writing bags and messages.
#[derive(Debug, thiserror::Error)]
pub enum BagError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("MCAP: {0}")]
    Mcap(#[from] mcap::McapError),
    #[error("{0}")]
    MalformedMcap(#[from] mcap_guard::Malformed),
    #[error("{}: invalid metadata.yaml: {source}", path.display())]
    Metadata { path: PathBuf, source: serde_yaml::Error },
    #[error("{} already exists; bags are never overwritten", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{}: no .mcap storage files in bag directory (only MCAP storage is supported)", .0.display())]
    NoStorageFiles(PathBuf),

    #[error("CDR truncated at payload offset {offset}: need {needed} bytes, {available} left")]
    Truncated { offset: usize, needed: usize, available: usize },
    #[error("unsupported CDR encapsulation {0:02x?} (only plain CDR, 00 00 / 00 01)")]
    UnsupportedEncapsulation([u8; 2]),
    #[error("CDR string at payload offset {offset}: {reason}")]
    BadString { offset: usize, reason: &'static str },
    #[error("CDR length {count} at payload offset {offset} exceeds the {remaining} bytes left")]
    LengthTooLarge { offset: usize, count: usize, remaining: usize },
    #[error("{0} unexpected bytes after the end of the CDR message")]
    TrailingBytes(usize),

    #[error("invalid ROS message type name {0:?} (expected pkg/msg/Type)")]
    InvalidTypeName(String),
    #[error("no .msg definition for {type_name} under share/<pkg>/msg of {prefixes:?} (is AMENT_PREFIX_PATH set? source scripts/env.sh)")]
    SchemaNotFound { type_name: String, prefixes: Vec<PathBuf> },
    #[error("topic {topic}: schema encoding {schema_encoding:?} / message encoding {message_encoding:?} not supported (need ros2msg / cdr)")]
    UnsupportedEncoding { topic: String, schema_encoding: String, message_encoding: String },
    #[error("offered_qos_profiles: {0}")]
    BadQos(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has type {actual}, not {requested}")]
    TypeMismatch { topic: String, actual: String, requested: String },
}
