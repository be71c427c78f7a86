//! rosbag2's `metadata.yaml` (rosbag2_storage/yaml.hpp), as [`super::BagWriter`]
//! writes it and the part [`super::BagReader`] reads back.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// rosbag2's metadata.yaml (rosbag2_storage/yaml.hpp); field order as rosbag2 writes it.
#[derive(Serialize)]
pub(super) struct MetadataFile {
    pub(super) rosbag2_bagfile_information: BagInfo,
}

#[derive(Serialize)]
pub(super) struct BagInfo {
    pub(super) version: u32,
    pub(super) storage_identifier: String,
    pub(super) duration: Nanos,
    pub(super) starting_time: Stamp,
    pub(super) message_count: u64,
    pub(super) topics_with_message_count: Vec<TopicWithCount>,
    pub(super) compression_format: String,
    pub(super) compression_mode: String,
    pub(super) relative_file_paths: Vec<String>,
    pub(super) files: Vec<FileEntry>,
    pub(super) custom_data: BTreeMap<String, String>,
    pub(super) ros_distro: String,
}

#[derive(Serialize)]
pub(super) struct Nanos {
    pub(super) nanoseconds: u64,
}

#[derive(Serialize)]
pub(super) struct Stamp {
    pub(super) nanoseconds_since_epoch: u64,
}

#[derive(Serialize)]
pub(super) struct TopicWithCount {
    pub(super) topic_metadata: TopicMetadata,
    pub(super) message_count: u64,
}

#[derive(Serialize)]
pub(super) struct TopicMetadata {
    pub(super) name: String,
    pub(super) r#type: String,
    pub(super) serialization_format: String,
    pub(super) offered_qos_profiles: String,
    pub(super) type_description_hash: String,
}

#[derive(Serialize)]
pub(super) struct FileEntry {
    pub(super) path: String,
    pub(super) starting_time: Stamp,
    pub(super) duration: Nanos,
    pub(super) message_count: u64,
}

/// The only part of `metadata.yaml` the reader needs: which files, in order.
#[derive(Deserialize)]
pub(super) struct MetadataFiles {
    pub(super) rosbag2_bagfile_information: RelativePaths,
}

#[derive(Deserialize)]
pub(super) struct RelativePaths {
    pub(super) relative_file_paths: Vec<String>,
}

