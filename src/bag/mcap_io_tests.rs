//! Unit tests of [`super`] (the bag writer and reader), kept apart to keep
//! `mcap_io.rs` readable.

use super::*;
use crate::bag::{Header, Image, Time};

/// A throwaway install prefix with just the definitions Image needs, so
/// these tests run without a ROS environment.
fn resolver(root: &Path) -> SchemaResolver {
    for (pkg, ty, text) in [
        (
            "sensor_msgs",
            "Image",
            "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n",
        ),
        ("std_msgs", "Header", "builtin_interfaces/Time stamp\nstring frame_id\n"),
        ("builtin_interfaces", "Time", "int32 sec\nuint32 nanosec\n"),
    ] {
        let dir = root.join("share").join(pkg).join("msg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{ty}.msg")), text).unwrap();
    }
    SchemaResolver::new([root])
}

fn image(i: u8) -> Image {
    let header = Header { stamp: Time { sec: i.into(), nanosec: 0 }, frame_id: "cam".into() };
    Image { header, height: 1, width: 3, encoding: "mono8".into(), step: 3, data: vec![i; 3], ..Default::default() }
}

/// Writes images at out-of-order log times to a single-file bag.
fn write_bag(dir: &Path) -> PathBuf {
    let path = dir.join("t.mcap");
    let mut w = BagWriter::create_with(&path, resolver(&dir.join("prefix"))).unwrap();
    for (i, t) in [(0u8, 30u64), (1, 10), (2, 20), (3, 10)] {
        w.write("/img", t, &image(i)).unwrap();
    }
    w.add_topic("/empty", "sensor_msgs/msg/Image").unwrap();
    w.finish().unwrap();
    path
}

#[test]
fn log_time_order_and_topics() {
    let tmp = tempfile::tempdir().unwrap();
    let r = BagReader::open(write_bag(tmp.path())).unwrap();
    let topics = r.topics().unwrap();
    assert_eq!(
        topics.iter().map(|t| (t.topic.as_str(), t.message_count)).collect::<Vec<_>>(),
        [("/empty", 0), ("/img", 4)]
    );
    let got: Vec<(u64, u8)> = r
        .messages_of::<Image>("/img")
        .unwrap()
        .map(|m| m.map(|(t, img)| (t, img.data[0])))
        .collect::<Result<_, _>>()
        .unwrap();
    // equal log times keep write order
    assert_eq!(got, [(10, 1), (10, 3), (20, 2), (30, 0)]);
    assert!(matches!(r.messages_of::<Image>("/none"), Err(BagError::UnknownTopic(_))));
}

/// A file cut short (recorder killed) still yields its complete
/// messages, then an error; no cut or corrupted byte may panic.
#[test]
fn truncated_and_corrupt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(write_bag(tmp.path())).unwrap();
    let path = tmp.path().join("bad.mcap");
    let read_all = |data: &[u8]| -> Result<usize, BagError> {
        std::fs::write(&path, data).unwrap();
        let r = BagReader::open(&path)?;
        let mut n = 0;
        for m in r.messages()? {
            m?.decode::<Image>()?;
            n += 1;
        }
        Ok(n)
    };
    assert_eq!(read_all(&bytes).unwrap(), 4);
    for cut in (0..bytes.len()).step_by(7) {
        assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut} read as complete");
    }
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..300 {
        let mut b = bytes.clone();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = (state % b.len() as u64) as usize;
        b[i] ^= 1 << (state >> 61);
        let _ = read_all(&b); // Ok (bit in unused padding or CRC-free data) or Err, never a panic
    }
}

/// Declared QoS is stored per channel (and in metadata.yaml) and read back.
#[test]
fn qos_is_recorded_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("qos_bag");
    let mut w = BagWriter::create_with(&path, resolver(&tmp.path().join("prefix"))).unwrap();
    let latched = [OfferedQos::static_broadcaster()];
    w.add_topic_with_qos("/latched", "sensor_msgs/msg/Image", &latched).unwrap();
    w.add_topic_with_qos("/latched", "sensor_msgs/msg/Image", &latched).unwrap(); // same: no-op
    let other = w.add_topic_with_qos("/latched", "sensor_msgs/msg/Image", &[OfferedQos::sensor_data()]);
    assert!(matches!(other, Err(BagError::BadQos(_))));
    w.write("/latched", 5, &image(1)).unwrap(); // write() keeps the declared QoS
    w.write("/plain", 6, &image(2)).unwrap();
    w.finish().unwrap();
    let r = BagReader::open(&path).unwrap();
    let topics = r.topics().unwrap();
    assert_eq!(topics[0].topic, "/latched");
    assert_eq!(topics[0].offered_qos().unwrap(), latched);
    assert_eq!((topics[1].topic.as_str(), topics[1].offered_qos_profiles.as_str()), ("/plain", ""));
    let meta = std::fs::read_to_string(path.join("metadata.yaml")).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&meta).unwrap();
    let stored = &yaml["rosbag2_bagfile_information"]["topics_with_message_count"][0]["topic_metadata"];
    assert_eq!(stored["offered_qos_profiles"].as_str().map(qos::parse).unwrap().unwrap(), latched);
}

#[test]
fn refuses_non_ros2_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("json.mcap");
    let mut w = mcap::Writer::new(BufWriter::new(File::create(&path).unwrap())).unwrap();
    let schema = w.add_schema("Foo", "jsonschema", b"{}").unwrap();
    let ch = w.add_channel(schema, "/foo", "json", &BTreeMap::new()).unwrap();
    let header = MessageHeader { channel_id: ch, sequence: 0, log_time: 1, publish_time: 1 };
    w.write_to_known_channel(&header, b"{}").unwrap();
    w.finish().unwrap();
    drop(w);
    let err = BagReader::open(&path).err().unwrap();
    assert!(matches!(err, BagError::UnsupportedEncoding { .. }), "{err}");
}
