//! Bags against independent implementations, both directions:
//! (a) Rust writes the real KITTI frame 000008 (cloud, image, camera info)
//!     and Python `rosbags` and `mcap-ros2-support` must decode it exactly;
//! (b) Python `rosbags` writes a bag (plain and zstd chunks) and our reader
//!     must decode it exactly.
//! Both directions carry recorded QoS (`offered_qos_profiles`: a transient-local
//! `/tf_static`, best-effort and reliable sensor topics, a topic with two
//! publishers' profiles), which must survive the trip, in rosbag2's version 8
//! (numbers) and 9 (names) spellings.
//! The Python side is `tests/python/bag_peer.py`, run with `$ELOSS_PYTHON`
//! (`source scripts/env.sh`). Without it the tests fail, or skip with
//! `ELOSS_ALLOW_SKIPS=1` outside CI. Nothing here depends on the `ros` feature.
mod common;

use eloss_perception::bag::{
    BagReader, BagWriter, CameraInfo, Header, Image, OfferedQos, PointCloud2, Quaternion, RosMessage,
    TFMessage, Time, TopicInfo, Transform, TransformStamped, Vector3,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// `$ELOSS_PYTHON`, or `None` (a skip) with `ELOSS_ALLOW_SKIPS=1` outside CI.
fn python() -> Option<PathBuf> {
    common::python()
}

fn kitti_dir() -> Option<PathBuf> {
    common::kitti_dir()
}

/// Runs `bag_peer.py ARGS`, returning whether it succeeded and its output.
fn run_peer(python: &Path, args: &[&Path]) -> (bool, String) {
    let out = Command::new(python)
        .arg(Path::new(MANIFEST).join("tests/python/bag_peer.py"))
        .args(args)
        .output()
        .expect("running bag_peer.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprint!("{text}");
    (out.status.success(), text)
}

fn run_peer_ok(python: &Path, args: &[&Path]) {
    let (ok, text) = run_peer(python, args);
    assert!(ok, "bag_peer.py {args:?} failed:\n{text}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(ns: u64, frame: &str) -> Header {
    Header { stamp: Time::from_nanos(ns as i64), frame_id: frame.into() }
}

/// The KITTI cloud as a PointCloud2: the `.bin` layout (f32 x, y, z,
/// reflectance) already is a 16-byte point, so the bytes go in unchanged.
fn kitti_cloud(bin: &[u8], stamp: u64) -> PointCloud2 {
    assert_eq!(bin.len() % 16, 0);
    PointCloud2::xyzi_f32(header(stamp, "velodyne"), bin.to_vec())
}

/// CameraInfo from a KITTI `P2` line. The file holds the 3x4 projection
/// row-major, in our copy padded to a homogeneous 4x4 (16 numbers): the
/// first 12 are P, and K is P's left 3x3.
fn kitti_camera_info(calib: &str, png: &[u8], stamp: u64) -> CameraInfo {
    let nums: Vec<f64> = calib.split_whitespace().map(|s| s.parse().expect("number in calib file")).collect();
    assert!(nums.len() >= 12, "calib has {} numbers", nums.len());
    let p: [f64; 12] = nums[..12].try_into().unwrap();
    // PNG IHDR: big-endian width and height at bytes 16..24
    let be = |o: usize| u32::from_be_bytes(png[o..o + 4].try_into().unwrap());
    CameraInfo {
        header: header(stamp, "camera"),
        width: be(16),
        height: be(20),
        distortion_model: "plumb_bob".into(),
        d: vec![0.0; 5],
        k: [p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]],
        r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p,
        ..Default::default()
    }
}

/// A topic's recorded QoS as [history, depth, reliability, durability] rows (rmw numbers).
fn qos_rows(t: &TopicInfo) -> Value {
    let rows: Vec<Value> = t
        .offered_qos()
        .unwrap()
        .iter()
        .map(|q| json!([q.history.number(), q.depth, q.reliability.number(), q.durability.number()]))
        .collect();
    Value::from(rows)
}

/// Two static transforms, as a tf2 static broadcaster sends them in one message.
fn static_tf(stamp: u64) -> TFMessage {
    let tf = |parent: &str, child: &str, translation, rotation| TransformStamped {
        header: header(stamp, parent),
        child_frame_id: child.into(),
        transform: Transform { translation, rotation },
    };
    let half = std::f64::consts::FRAC_1_SQRT_2;
    TFMessage {
        transforms: vec![
            tf("base_link", "velodyne", Vector3 { x: 0.0, y: 0.0, z: 1.73 }, Quaternion::default()),
            tf("velodyne", "camera", Vector3 { x: 0.27, y: -0.01, z: -0.08 }, Quaternion { x: -0.5, y: 0.5, z: -0.5, w: 0.5 }),
            tf("base_link", "imu", Vector3 { x: -0.5, y: 0.25, z: 0.9 }, Quaternion { x: 0.0, y: 0.0, z: half, w: half }),
        ],
    }
}

fn synthetic_image(frame: u32, stamp: u64) -> Image {
    let (w, h) = (64u32, 48u32);
    let data = (0..h * w * 3).map(|i| ((i % (w * 3)) * 3 + (i / (w * 3)) * 5 + frame * 11) as u8).collect();
    Image {
        header: header(stamp, "camera"),
        height: h,
        width: w,
        encoding: "bgr8".into(),
        is_bigendian: 0,
        step: w * 3,
        data,
    }
}

#[test]
fn rust_writes_python_reads() {
    // without the environment there are neither peers nor .msg files for the schemas
    let Some(python) = python() else { return };
    let Some(kitti) = kitti_dir() else { return };
    let bin = std::fs::read(kitti.join("000008.bin")).unwrap();
    let calib = std::fs::read_to_string(kitti.join("000008.txt")).unwrap();
    let png = std::fs::read(kitti.join("000008.png")).unwrap();
    assert_eq!(bin.len() / 16, 17_238, "KITTI 000008 point count");

    let tmp = tempfile::tempdir().unwrap();
    let bag = tmp.path().join("kitti_bag");
    let t0: u64 = 1_317_000_000_000_000_000; // KITTI-era epoch ns, 10 Hz frames
    let (points, image, info) = ("/kitti/points", "/kitti/image", "/kitti/camera_info");
    let mut w = BagWriter::create(&bag).unwrap();
    w.add_topic_with_qos(points, PointCloud2::TYPE_NAME, &[OfferedQos::sensor_data()]).unwrap();
    w.add_topic(points, "sensor_msgs/PointCloud2").unwrap(); // idempotent, short form accepted
    w.add_topic_with_qos(image, Image::TYPE_NAME, &[OfferedQos::reliable(10)]).unwrap();
    w.add_topic_with_qos("/tf_static", TFMessage::TYPE_NAME, &[OfferedQos::static_broadcaster()]).unwrap();
    w.write("/tf_static", t0, &static_tf(t0)).unwrap();
    assert!(w.add_topic(points, Image::TYPE_NAME).is_err());
    assert!(w.write_raw("/nope", 0, &[]).is_err());
    let mut images = Vec::new();
    for i in 0..5u32 {
        let t = t0 + u64::from(i) * 100_000_000;
        w.write(points, t, &kitti_cloud(&bin, t)).unwrap();
        let img = synthetic_image(i, t);
        w.write(image, t, &img).unwrap();
        images.push(hex(&img.data));
        w.write(info, t, &kitti_camera_info(&calib, &png, t)).unwrap(); // declares the topic on first use
    }
    w.finish().unwrap();

    // our own reader first
    let r = BagReader::open(&bag).unwrap();
    let topics: BTreeMap<_, _> =
        r.topics().unwrap().into_iter().map(|t| (t.topic, (t.type_name, t.message_count))).collect();
    assert_eq!(topics[points], (PointCloud2::TYPE_NAME.to_owned(), 5));
    let qos: BTreeMap<_, _> = r.topics().unwrap().iter().map(|t| (t.topic.clone(), qos_rows(t))).collect();
    let expect_qos = json!({
        points: [[1, 5, 2, 2]],          // keep last 5, best effort, volatile
        image: [[1, 10, 1, 2]],          // keep last 10, reliable, volatile
        info: [],                        // declared without QoS
        "/tf_static": [[1, 1, 1, 1]],    // keep last 1, reliable, transient local
    });
    assert_eq!(serde_json::to_value(&qos).unwrap(), expect_qos);
    let tf: Vec<_> = r.messages_of::<TFMessage>("/tf_static").unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(tf, [(t0, static_tf(t0))]);
    let clouds: Vec<_> = r.messages_of::<PointCloud2>(points).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(clouds.len(), 5);
    assert_eq!(clouds[4].1, kitti_cloud(&bin, t0 + 400_000_000));
    assert!(r.messages_of::<Image>(points).is_err());
    let single = tmp.path().join("single.mcap");
    let mut w = BagWriter::create(&single).unwrap();
    w.write(info, 5, &kitti_camera_info(&calib, &png, 5)).unwrap();
    w.finish().unwrap();
    assert_eq!(BagReader::open(&single).unwrap().messages_of::<CameraInfo>(info).unwrap().count(), 1);
    assert!(BagWriter::create(&single).is_err(), "existing bags are not overwritten");

    let cloud = kitti_cloud(&bin, t0);
    let floats = |col: usize| {
        cloud
            .data
            .chunks_exact(16)
            .map(|p| f64::from(f32::from_le_bytes(p[col..col + 4].try_into().unwrap())))
            .sum::<f64>()
    };
    let ci = kitti_camera_info(&calib, &png, t0);
    let times: Vec<u64> = (0..5).map(|i| t0 + i * 100_000_000).collect();
    let tf_rows: Vec<Value> = static_tf(t0)
        .transforms
        .iter()
        .map(|t| {
            let (v, q) = (t.transform.translation, t.transform.rotation);
            json!([t.header.frame_id, t.child_frame_id, t0, v.x, v.y, v.z, q.x, q.y, q.z, q.w])
        })
        .collect();
    let expect = json!({
        "topics": {
            points: {"type": PointCloud2::TYPE_NAME, "count": 5},
            image: {"type": Image::TYPE_NAME, "count": 5},
            info: {"type": CameraInfo::TYPE_NAME, "count": 5},
            "/tf_static": {"type": TFMessage::TYPE_NAME, "count": 1},
        },
        "qos": expect_qos,
        "tf": tf_rows,
        "log_times": {points: times, image: times, info: times, "/tf_static": [t0]},
        "stamps": {points: times, image: times, info: times},
        "frame_ids": {points: "velodyne", image: "camera", info: "camera"},
        "cloud": {
            "points": 17_238,
            "fields": [["x", 0, 7, 1], ["y", 4, 7, 1], ["z", 8, 7, 1], ["intensity", 12, 7, 1]],
            "is_dense": true,
            "sum_x": floats(0),
            "sum_intensity": floats(12),
        },
        "image": {"width": 64, "height": 48, "encoding": "bgr8", "step": 192, "data_hex": images},
        "camera_info": {
            "width": ci.width, "height": ci.height, "distortion_model": "plumb_bob",
            "d": ci.d, "k": ci.k, "r": ci.r, "p": ci.p,
        },
    });
    let expect_path = tmp.path().join("expect.json");
    std::fs::write(&expect_path, serde_json::to_string_pretty(&expect).unwrap()).unwrap();
    run_peer_ok(&python, &[Path::new("read"), &bag, &expect_path]);

    // the peer must notice a wrong value, or its success above proves nothing
    let mut wrong = expect.clone();
    wrong["camera_info"]["p"][3] = json!(ci.p[3] + 1e-3);
    std::fs::write(&expect_path, serde_json::to_string(&wrong).unwrap()).unwrap();
    let (ok, text) = run_peer(&python, &[Path::new("read"), &bag, &expect_path]);
    assert!(!ok && text.contains("MISMATCH"), "tampered expectation accepted:\n{text}");
    // ... and a wrong QoS (volatile instead of transient local)
    let mut wrong = expect.clone();
    wrong["qos"]["/tf_static"][0][3] = json!(2);
    std::fs::write(&expect_path, serde_json::to_string(&wrong).unwrap()).unwrap();
    let (ok, text) = run_peer(&python, &[Path::new("read"), &bag, &expect_path]);
    assert!(!ok && text.contains("offered QoS"), "tampered QoS accepted:\n{text}");
}

#[test]
fn python_writes_rust_reads() {
    let Some(python) = python() else { return };
    for (compress, version) in [(false, "9"), (true, "8")] {
        let tmp = tempfile::tempdir().unwrap();
        let (bag, expect_path) = (tmp.path().join("py_bag"), tmp.path().join("expect.json"));
        let mut args = vec![Path::new("write"), &bag, &expect_path, Path::new("--version"), Path::new(version)];
        if compress {
            args.push(Path::new("--compress"));
        }
        run_peer_ok(&python, &args);
        let expect: Value = serde_json::from_str(&std::fs::read_to_string(&expect_path).unwrap()).unwrap();
        let mut expected: Vec<&Value> = expect["messages"].as_array().unwrap().iter().collect();
        expected.sort_by_key(|e| e["log_time_ns"].as_u64()); // stable, like the reader

        let r = BagReader::open(&bag).unwrap();
        let topics = r.topics().unwrap();
        assert_eq!(topics.len(), 3);
        assert!(topics.iter().all(|t| t.message_count == 3), "{topics:?}");
        // recorded QoS, in the version's spelling, reads back as rosbags wrote it
        for t in &topics {
            assert_eq!(qos_rows(t), expect["qos"][&t.topic], "{} (version {version})", t.topic);
        }
        let info = topics.iter().find(|t| t.topic == "/cam/info").unwrap();
        assert!(eloss_perception::bag::qos::playback_profile(&info.offered_qos().unwrap(), 3).transient_local);
        let msgs: Vec<_> = r.messages().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), expected.len());
        for (m, e) in msgs.iter().zip(&expected) {
            assert_eq!(m.topic, e["topic"].as_str().unwrap());
            assert_eq!(m.type_name, e["type"].as_str().unwrap());
            assert_eq!(m.log_time_ns, e["log_time_ns"].as_u64().unwrap());
            let check_header = |h: &Header| {
                assert_eq!(h.stamp.to_nanos(), e["stamp_ns"].as_i64().unwrap());
                assert_eq!(h.frame_id, e["frame_id"].as_str().unwrap());
            };
            let u32_of = |k: &str| e[k].as_u64().unwrap() as u32;
            let f64s = |k: &str| e[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
            match m.type_name.as_str() {
                PointCloud2::TYPE_NAME => {
                    let c: PointCloud2 = m.decode().unwrap();
                    check_header(&c.header);
                    let n = u32_of("width");
                    assert_eq!((c.height, c.width, c.point_step, c.row_step), (1, n, 16, 16 * n));
                    assert_eq!(c.is_dense, e["is_dense"].as_bool().unwrap());
                    let fields: Vec<_> =
                        c.fields.iter().map(|f| json!([f.name, f.offset, f.datatype, f.count])).collect();
                    assert_eq!(Value::from(fields), e["fields"]);
                    assert_eq!(hex(&c.data), e["data_hex"].as_str().unwrap());
                }
                Image::TYPE_NAME => {
                    let i: Image = m.decode().unwrap();
                    check_header(&i.header);
                    assert_eq!((i.width, i.height, i.step), (u32_of("width"), u32_of("height"), u32_of("step")));
                    assert_eq!(i.encoding, e["encoding"].as_str().unwrap());
                    assert_eq!(hex(&i.data), e["data_hex"].as_str().unwrap());
                }
                CameraInfo::TYPE_NAME => {
                    let c: CameraInfo = m.decode().unwrap();
                    check_header(&c.header);
                    assert_eq!((c.width, c.height), (1242, 375));
                    assert_eq!(c.distortion_model, e["distortion_model"].as_str().unwrap());
                    assert_eq!(
                        (c.d.to_vec(), c.k.to_vec(), c.r.to_vec(), c.p.to_vec()),
                        (f64s("d"), f64s("k"), f64s("r"), f64s("p"))
                    );
                    assert_eq!(json!([c.binning_x, c.binning_y]), e["binning"]);
                    let roi = c.roi;
                    assert_eq!(json!([roi.x_offset, roi.y_offset, roi.height, roi.width, roi.do_rectify]), e["roi"]);
                }
                other => panic!("unexpected type {other}"),
            }
        }
        // typed access agrees, and refuses the wrong type
        assert_eq!(r.messages_of::<Image>("/cam/image").unwrap().count(), 3);
        assert!(msgs[0].decode::<Time>().is_err());
    }
}
