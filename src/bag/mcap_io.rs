//! Writing and reading rosbag2 bags stored as MCAP, with the `mcap` crate.
//!
//! A bag is either a single `.mcap` file or, like `ros2 bag record` makes,
//! a directory holding `<name>_0.mcap` and a `metadata.yaml`. Tools differ
//! in what they accept: `ros2 bag` and Foxglove open either, Python
//! `rosbags` insists on the directory and its `metadata.yaml`, and
//! `mcap-ros2-support` reads the `.mcap` file. [`BagWriter::create`] picks
//! the layout from the path (`*.mcap` = single file, anything else =
//! directory), and [`BagReader::open`] accepts both.
//!
//! Inside the file: profile `ros2`, one schema per message type (named
//! `pkg/msg/Type`, encoding `ros2msg`), one channel per topic (message
//! encoding `cdr`, with the `offered_qos_profiles` metadata key rosbag2
//! expects), zstd-compressed chunks with indexes, and a `rosbag2` metadata
//! record repeating `metadata.yaml`, as rosbag2's MCAP plugin writes.

use super::messages::RosMessage;
use super::schema::{normalize_type_name, SchemaResolver};
use super::mcap_guard::{self, CHUNK_LIMIT};
use super::BagError;
use mcap::sans_io::indexed_reader::{IndexedReadEvent, IndexedReader, IndexedReaderOptions};
use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader, SummaryReaderOptions};
use mcap::{records::MessageHeader, Summary};
use super::metadata::{BagInfo, FileEntry, MetadataFile, MetadataFiles, Nanos, Stamp, TopicMetadata, TopicWithCount};
use super::qos::{self, OfferedQos};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const SCHEMA_ENCODING: &str = "ros2msg";
const MESSAGE_ENCODING: &str = "cdr";
/// Largest chunk or record we agree to load (see [`CHUNK_LIMIT`]): it stops
/// a corrupt index from requesting an absurd allocation.
const RECORD_LIMIT: usize = CHUNK_LIMIT;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BagError + '_ {
    move |source| BagError::Io { path: path.to_owned(), source }
}

/// A topic in a bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic: String,
    /// `pkg/msg/Type`, e.g. `sensor_msgs/msg/PointCloud2`.
    pub type_name: String,
    pub message_count: u64,
    /// The recorded publishers' QoS, as stored (a YAML list, see
    /// [`qos`](super::qos)); empty when not recorded.
    pub offered_qos_profiles: String,
}

impl TopicInfo {
    /// The recorded QoS profiles, parsed; none when not recorded.
    pub fn offered_qos(&self) -> Result<Vec<OfferedQos>, BagError> {
        qos::parse(&self.offered_qos_profiles)
    }
}

/// One recorded message, still CDR-encoded (encapsulation header included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagMessage {
    pub topic: String,
    pub type_name: String,
    /// When the recorder received it (MCAP `log_time`), ns since the epoch.
    pub log_time_ns: u64,
    pub data: Vec<u8>,
}

impl BagMessage {
    /// Decodes as `M`, refusing if the recorded type is a different one.
    pub fn decode<M: RosMessage>(&self) -> Result<M, BagError> {
        if self.type_name != M::TYPE_NAME {
            return Err(BagError::TypeMismatch {
                topic: self.topic.clone(),
                actual: self.type_name.clone(),
                requested: M::TYPE_NAME.to_owned(),
            });
        }
        M::decode(&self.data)
    }
}

// ---------------------------------------------------------------- writing

struct WriterTopic {
    topic: String,
    type_name: String,
    channel_id: u16,
    count: u64,
    /// `offered_qos_profiles`: the YAML of the declared QoS, empty for none.
    qos_yaml: String,
}

/// Records CDR messages into a new bag. Call [`finish`](Self::finish): a
/// writer that is only dropped leaves a valid MCAP file (the `mcap` crate
/// finalises it on drop) but no `metadata.yaml`.
pub struct BagWriter {
    mcap: mcap::Writer<BufWriter<File>>,
    mcap_path: PathBuf,
    /// Set for the rosbag2 directory layout.
    bag_dir: Option<PathBuf>,
    resolver: SchemaResolver,
    topics: Vec<WriterTopic>,
    topic_index: HashMap<String, usize>,
    schema_ids: HashMap<String, u16>,
    time_range: Option<(u64, u64)>,
}

impl BagWriter {
    /// Creates a bag; `.mcap` paths give a single file, others a rosbag2
    /// directory. Existing paths are refused rather than overwritten.
    /// Schemas come from `AMENT_PREFIX_PATH`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, BagError> {
        Self::create_with(path, SchemaResolver::from_env())
    }

    /// As [`create`](Self::create), resolving `.msg` files with `resolver`.
    pub fn create_with(path: impl AsRef<Path>, resolver: SchemaResolver) -> Result<Self, BagError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(BagError::AlreadyExists(path.to_owned()));
        }
        let (mcap_path, bag_dir) = if path.extension().is_some_and(|e| e == "mcap") {
            (path.to_owned(), None)
        } else {
            std::fs::create_dir_all(path).map_err(io_err(path))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bag".into());
            (path.join(format!("{name}_0.mcap")), Some(path.to_owned()))
        };
        let file = File::create_new(&mcap_path).map_err(io_err(&mcap_path))?;
        let options = mcap::WriteOptions::new()
            .profile("ros2")
            .library(concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")))
            .compression(Some(mcap::Compression::Zstd));
        Ok(Self {
            mcap: options.create(BufWriter::new(file))?,
            mcap_path,
            bag_dir,
            resolver,
            topics: Vec::new(),
            topic_index: HashMap::new(),
            schema_ids: HashMap::new(),
            time_range: None,
        })
    }

    /// Declares `topic` with a type like `sensor_msgs/msg/Image` and no
    /// recorded QoS (a player then uses its default profile). Repeating
    /// an identical declaration, or declaring a topic again after
    /// [`add_topic_with_qos`](Self::add_topic_with_qos), is a no-op;
    /// redeclaring with another type is an error (rosbag2 has one type per topic).
    pub fn add_topic(&mut self, topic: &str, type_name: &str) -> Result<(), BagError> {
        self.declare(topic, type_name, None)
    }

    /// Declares `topic` with the QoS profiles its publishers offered (one
    /// per publisher, usually one), stored as rosbag2 stores them so that
    /// players recreate the publishers with them (`/tf_static`:
    /// [`OfferedQos::static_broadcaster`]). Declaring an existing topic
    /// with other profiles is an error.
    pub fn add_topic_with_qos(&mut self, topic: &str, type_name: &str, qos: &[OfferedQos]) -> Result<(), BagError> {
        self.declare(topic, type_name, Some(qos))
    }

    fn declare(&mut self, topic: &str, type_name: &str, qos: Option<&[OfferedQos]>) -> Result<(), BagError> {
        let type_name = normalize_type_name(type_name)?;
        let qos_yaml = qos::to_yaml(qos.unwrap_or_default());
        if let Some(&i) = self.topic_index.get(topic) {
            let existing = &self.topics[i];
            if existing.type_name != type_name {
                return Err(BagError::TypeMismatch {
                    topic: topic.into(),
                    actual: existing.type_name.clone(),
                    requested: type_name,
                });
            }
            if qos.is_some() && existing.qos_yaml != qos_yaml {
                return Err(BagError::BadQos(format!("{topic} was already declared with other QoS profiles")));
            }
            return Ok(());
        }
        let schema_id = match self.schema_ids.get(&type_name) {
            Some(&id) => id,
            None => {
                let text = self.resolver.schema_text(&type_name)?;
                let id = self.mcap.add_schema(&type_name, SCHEMA_ENCODING, text.as_bytes())?;
                *self.schema_ids.entry(type_name.clone()).or_insert(id)
            }
        };
        let metadata = BTreeMap::from([("offered_qos_profiles".to_owned(), qos_yaml.clone())]);
        let channel_id = self.mcap.add_channel(schema_id, topic, MESSAGE_ENCODING, &metadata)?;
        self.topic_index.insert(topic.to_owned(), self.topics.len());
        self.topics.push(WriterTopic { topic: topic.to_owned(), type_name, channel_id, count: 0, qos_yaml });
        Ok(())
    }

    /// Writes already-serialised CDR (with encapsulation header) to a declared topic.
    pub fn write_raw(&mut self, topic: &str, log_time_ns: u64, cdr: &[u8]) -> Result<(), BagError> {
        let i = *self.topic_index.get(topic).ok_or_else(|| BagError::UnknownTopic(topic.to_owned()))?;
        let t = &mut self.topics[i];
        let header = MessageHeader {
            channel_id: t.channel_id,
            sequence: t.count as u32, // per-topic counter, wrapping after 2^32
            log_time: log_time_ns,
            publish_time: log_time_ns,
        };
        self.mcap.write_to_known_channel(&header, cdr)?;
        t.count += 1;
        self.time_range = Some(match self.time_range {
            None => (log_time_ns, log_time_ns),
            Some((lo, hi)) => (lo.min(log_time_ns), hi.max(log_time_ns)),
        });
        Ok(())
    }

    /// Encodes and writes `msg`, declaring the topic with `M`'s type on first use.
    pub fn write<M: RosMessage>(&mut self, topic: &str, log_time_ns: u64, msg: &M) -> Result<(), BagError> {
        self.add_topic(topic, M::TYPE_NAME)?;
        self.write_raw(topic, log_time_ns, &msg.encode())
    }

    /// Finalises the MCAP summary and, for directory bags, writes `metadata.yaml`.
    pub fn finish(mut self) -> Result<(), BagError> {
        let file_name = self.mcap_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let info = self.bag_info(file_name);
        let yaml = serde_yaml::to_string(&info)
            .map_err(|source| BagError::Metadata { path: self.mcap_path.clone(), source })?;
        let record = BTreeMap::from([("serialized_metadata".to_owned(), yaml.trim_end().to_owned())]);
        self.mcap.write_metadata(&mcap::records::Metadata { name: "rosbag2".into(), metadata: record })?;
        self.mcap.finish()?;
        let file = self
            .mcap
            .into_inner()
            .into_inner()
            .map_err(|e| BagError::Io { path: self.mcap_path.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&self.mcap_path))?;
        if let Some(dir) = &self.bag_dir {
            let path = dir.join("metadata.yaml");
            let yaml = serde_yaml::to_string(&MetadataFile { rosbag2_bagfile_information: info })
                .map_err(|source| BagError::Metadata { path: path.clone(), source })?;
            std::fs::write(&path, yaml).map_err(io_err(&path))?;
        }
        Ok(())
    }

    fn bag_info(&self, file_name: String) -> BagInfo {
        let (start, end) = self.time_range.unwrap_or((0, 0));
        let message_count = self.topics.iter().map(|t| t.count).sum();
        BagInfo {
            // Version 9 only changed how QoS entries are spelled (names instead of numbers, and a
            // list instead of a string in this file); 8 is read by every rosbag2 release since
            // Humble and by rosbags, and we spell QoS numerically to match (bag::qos).
            version: 8,
            storage_identifier: "mcap".into(),
            duration: Nanos { nanoseconds: end - start },
            starting_time: Stamp { nanoseconds_since_epoch: start },
            message_count,
            topics_with_message_count: self
                .topics
                .iter()
                .map(|t| TopicWithCount {
                    topic_metadata: TopicMetadata {
                        name: t.topic.clone(),
                        r#type: t.type_name.clone(),
                        serialization_format: MESSAGE_ENCODING.into(),
                        offered_qos_profiles: t.qos_yaml.clone(),
                        type_description_hash: String::new(),
                    },
                    message_count: t.count,
                })
                .collect(),
            compression_format: String::new(),
            compression_mode: String::new(),
            relative_file_paths: vec![file_name.clone()],
            files: vec![FileEntry {
                path: file_name,
                starting_time: Stamp { nanoseconds_since_epoch: start },
                duration: Nanos { nanoseconds: end - start },
                message_count,
            }],
            custom_data: BTreeMap::new(),
            ros_distro: std::env::var("ROS_DISTRO").unwrap_or_default(),
        }
    }
}

// ---------------------------------------------------------------- reading

/// What the reader knows about one `.mcap` file after opening it.
struct StorageFile {
    path: PathBuf,
    /// `None` when the file has no usable index (e.g. the recorder was
    /// killed before writing the summary); such files are scanned linearly.
    summary: Option<Summary>,
    /// channel id → (topic, type)
    channels: HashMap<u16, (String, String)>,
}

/// Reads a rosbag2 MCAP bag (directory or single file). Only the summary is
/// read up front; messages stream chunk by chunk in log-time order.
pub struct BagReader {
    files: Vec<StorageFile>,
    topics: Vec<TopicInfo>,
}

impl BagReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BagError> {
        let path = path.as_ref();
        let paths = if path.is_dir() { storage_paths(path)? } else { vec![path.to_owned()] };
        let mut files = Vec::new();
        let mut counts: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
        for path in paths {
            let (file, file_counts) = open_storage(path)?;
            for (key, n, qos) in file_counts {
                let entry = counts.entry(key).or_insert_with(|| (0, qos));
                entry.0 += n;
            }
            files.push(file);
        }
        let topics = counts
            .into_iter()
            .map(|((topic, type_name), (message_count, offered_qos_profiles))| TopicInfo {
                topic,
                type_name,
                message_count,
                offered_qos_profiles,
            })
            .collect();
        Ok(Self { files, topics })
    }

    /// Topics sorted by name, with message counts.
    pub fn topics(&self) -> Result<Vec<TopicInfo>, BagError> {
        Ok(self.topics.clone())
    }

    /// All messages, in log-time order within each storage file (split bags
    /// are played file after file, as rosbag2 orders them).
    pub fn messages(&self) -> Result<impl Iterator<Item = Result<BagMessage, BagError>> + '_, BagError> {
        Ok(self.files.iter().flat_map(|f| match file_messages(f) {
            Ok(it) => it,
            Err(e) => Box::new(std::iter::once(Err(e))),
        }))
    }

    /// Decoded messages of one topic as `(log_time_ns, message)`; fails up
    /// front if the topic is missing or recorded with another type.
    pub fn messages_of<M: RosMessage>(
        &self,
        topic: &str,
    ) -> Result<impl Iterator<Item = Result<(u64, M), BagError>> + '_, BagError> {
        let info = self.topics.iter().find(|t| t.topic == topic).ok_or_else(|| BagError::UnknownTopic(topic.into()))?;
        if info.type_name != M::TYPE_NAME {
            return Err(BagError::TypeMismatch {
                topic: topic.into(),
                actual: info.type_name.clone(),
                requested: M::TYPE_NAME.into(),
            });
        }
        let topic = topic.to_owned();
        Ok(self.messages()?.filter_map(move |m| match m {
            Ok(m) if m.topic != topic => None,
            Ok(m) => Some(M::decode(&m.data).map(|msg| (m.log_time_ns, msg))),
            Err(e) => Some(Err(e)),
        }))
    }
}

/// The storage files of a bag directory, in `metadata.yaml` order if present.
fn storage_paths(dir: &Path) -> Result<Vec<PathBuf>, BagError> {
    let meta = dir.join("metadata.yaml");
    let mut paths = if meta.exists() {
        let text = std::fs::read_to_string(&meta).map_err(io_err(&meta))?;
        let m: MetadataFiles =
            serde_yaml::from_str(&text).map_err(|source| BagError::Metadata { path: meta, source })?;
        // entries are relative to the bag directory (older rosbag2 wrote them prefixed with its name)
        let names = m.rosbag2_bagfile_information.relative_file_paths;
        names.iter().map(|p| dir.join(Path::new(p).file_name().unwrap_or(p.as_ref()))).collect()
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "mcap"))
            .collect();
        found.sort();
        found
    };
    paths.retain(|p| p.extension().is_some_and(|e| e == "mcap"));
    if paths.is_empty() {
        return Err(BagError::NoStorageFiles(dir.to_owned()));
    }
    Ok(paths)
}

/// ((topic, type), messages, offered QoS YAML) of each channel of a file.
type TopicCounts = Vec<((String, String), u64, String)>;

/// Reads a file's summary (or scans it without one) and checks its channels.
fn open_storage(path: PathBuf) -> Result<(StorageFile, TopicCounts), BagError> {
    let summary = match read_summary(&path) {
        Ok(Some(s)) if !s.chunk_indexes.is_empty() && s.stats.is_some() => Some(s),
        _ => None,
    };
    let mut channels = HashMap::new();
    let mut qos = HashMap::new();
    let mut counts = HashMap::new();
    match &summary {
        Some(s) => {
            for (&id, ch) in &s.channels {
                channels.insert(id, checked_channel(ch)?);
                qos.insert(id, offered_qos(ch));
            }
            for (id, &n) in s.stats.iter().flat_map(|st| &st.channel_message_counts) {
                *counts.entry(*id).or_default() += n;
            }
        }
        None => {
            let (msgs, error) = linear_messages(&path)?;
            match error {
                // nothing recoverable: not (or no longer) an MCAP file
                Some(e) if msgs.is_empty() => return Err(e),
                // a damaged tail is reported again, after the good messages, by messages()
                _ => {}
            }
            for m in msgs {
                if let std::collections::hash_map::Entry::Vacant(e) = channels.entry(m.channel.id) {
                    e.insert(checked_channel(&m.channel)?);
                    qos.insert(m.channel.id, offered_qos(&m.channel));
                }
                *counts.entry(m.channel.id).or_default() += 1;
            }
        }
    }
    let counts = channels
        .iter()
        .map(|(id, key)| (key.clone(), counts.get(id).copied().unwrap_or(0), qos.remove(id).unwrap_or_default()))
        .collect();
    Ok((StorageFile { path, summary, channels }, counts))
}

/// The channel's `offered_qos_profiles` metadata, as stored (parsed on demand).
fn offered_qos(ch: &mcap::Channel<'_>) -> String {
    ch.metadata.get("offered_qos_profiles").cloned().unwrap_or_default()
}

fn checked_channel(ch: &mcap::Channel<'_>) -> Result<(String, String), BagError> {
    let (name, encoding) = ch.schema.as_ref().map(|s| (s.name.as_str(), s.encoding.as_str())).unwrap_or_default();
    if encoding != SCHEMA_ENCODING || ch.message_encoding != MESSAGE_ENCODING {
        return Err(BagError::UnsupportedEncoding {
            topic: ch.topic.clone(),
            schema_encoding: encoding.into(),
            message_encoding: ch.message_encoding.clone(),
        });
    }
    Ok((ch.topic.clone(), name.to_owned()))
}

/// The file's summary, or `None` without one (or with one whose records do
/// not hold together: the caller then scans the file linearly, which checks
/// every record itself).
fn read_summary(path: &Path) -> Result<Option<Summary>, BagError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    let mut tail = vec![0u8; mcap_guard::TAIL_LEN.min(size as usize)];
    file.seek(SeekFrom::End(-(tail.len() as i64))).and_then(|_| file.read_exact(&mut tail)).map_err(io_err(path))?;
    let Some(range) = mcap_guard::summary_range(&tail, size) else { return Ok(None) };
    if range.end - range.start > CHUNK_LIMIT as u64 {
        return Ok(None);
    }
    let mut section = vec![0u8; (range.end - range.start) as usize];
    file.seek(SeekFrom::Start(range.start)).and_then(|_| file.read_exact(&mut section)).map_err(io_err(path))?;
    mcap_guard::check_summary(&section)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let options = SummaryReaderOptions::default().with_file_size(size).with_record_length_limit(RECORD_LIMIT);
    let mut reader = SummaryReader::new_with_options(options);
    while let Some(event) = reader.next_event() {
        match event? {
            SummaryReadEvent::ReadRequest(n) => {
                let read = file.read(reader.insert(n)).map_err(io_err(path))?;
                reader.notify_read(read);
            }
            SummaryReadEvent::SeekRequest(to) => reader.notify_seeked(file.seek(to).map_err(io_err(path))?),
        }
    }
    Ok(reader.finish())
}

/// Every message of an unindexed file, from a full read, and the error
/// that ended the scan early if any: a file cut off mid-write still gives
/// the messages before the damage, then reports it (the scan insists on
/// the closing magic, so a cut at a record boundary is noticed too).
fn linear_messages(path: &Path) -> Result<(Vec<mcap::Message<'static>>, Option<BagError>), BagError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    // records past a malformed one are not handed to the parser at all
    let (safe, malformed) = match mcap_guard::check_file(&bytes) {
        Ok(()) => (&bytes[..], None),
        Err(m) => (&bytes[..m.offset], Some(BagError::from(m))),
    };
    let mut msgs = Vec::new();
    let stream = match mcap::MessageStream::new(safe) {
        Ok(stream) => stream,
        Err(e) => return Err(malformed.unwrap_or(e.into())),
    };
    for m in stream {
        match m {
            Ok(m) => msgs.push(m),
            Err(e) => return Ok((msgs, Some(malformed.unwrap_or(e.into())))),
        }
    }
    Ok((msgs, malformed))
}

type MessageIter<'a> = Box<dyn Iterator<Item = Result<BagMessage, BagError>> + 'a>;

fn file_messages(f: &StorageFile) -> Result<MessageIter<'_>, BagError> {
    let to_bag_message = |channel_id: u16, log_time_ns: u64, data: Vec<u8>| {
        let (topic, type_name) = f.channels.get(&channel_id).cloned().unwrap_or_default();
        BagMessage { topic, type_name, log_time_ns, data }
    };
    let Some(summary) = &f.summary else {
        let (msgs, error) = linear_messages(&f.path)?;
        let mut msgs: Vec<BagMessage> =
            msgs.into_iter().map(|m| to_bag_message(m.channel.id, m.log_time, m.data.into_owned())).collect();
        msgs.sort_by_key(|m| m.log_time_ns); // stable: equal times keep file order
        return Ok(Box::new(msgs.into_iter().map(Ok).chain(error.map(Err))));
    };
    let file = File::open(&f.path).map_err(io_err(&f.path))?;
    let size = file.metadata().map_err(io_err(&f.path))?.len();
    let options = IndexedReaderOptions::new().with_record_length_limit(RECORD_LIMIT);
    let reader = IndexedReader::new_with_options(summary, options)?;
    let mut chunk = Vec::new();
    let mut state = Some((file, reader));
    Ok(Box::new(std::iter::from_fn(move || {
        let (file, reader) = state.as_mut()?;
        let result = loop {
            let (offset, length) = match reader.next_event()? {
                Ok(IndexedReadEvent::Message { header, data }) => {
                    break Ok(to_bag_message(header.channel_id, header.log_time, data.to_vec()));
                }
                Ok(IndexedReadEvent::ReadChunkRequest { offset, length }) => (offset, length),
                Err(e) => break Err(e.into()),
            };
            // the index is untrusted: check it against the file before allocating
            if offset.checked_add(length as u64).is_none_or(|end| end > size) {
                break Err(mcap::McapError::BadIndex.into());
            }
            chunk.resize(length, 0);
            let read = file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(&mut chunk));
            if let Err(e) = read {
                break Err(io_err(&f.path)(e));
            }
            if let Err(e) = reader.insert_chunk_record_data(offset, &chunk) {
                break Err(e.into());
            }
        };
        if result.is_err() {
            state = None; // stop after the first error rather than repeat it
        }
        Some(result)
    })))
}

#[cfg(test)]
#[path = "mcap_io_tests.rs"]
mod tests;
