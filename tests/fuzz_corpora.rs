//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the
//! same functions the fuzz targets call (`fuzz/src/lib.rs`), so every input
//! the fuzzer found interesting — crashes that were fixed included — is
//! checked on every test run, on the stable toolchain, without libFuzzer.
//! The fuzzing itself is `scripts/fuzz.sh` (docs/reliability.md).
//!
//! Like the fuzzer (`-malloc_limit_mb=256`), the replay fails an input that
//! makes a single allocation above [`ALLOCATION_LIMIT`]: the inputs are at
//! most 64 KiB, so such an allocation trusts a length the input declares.
//! Inputs the fuzzer found crashing are kept in `fuzz/findings/<target>_*`
//! and replayed with their target's corpus.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// The largest single allocation an input may cause (scripts/fuzz.sh's `-malloc_limit_mb`).
const ALLOCATION_LIMIT: usize = 256 << 20;

/// The system allocator, recording the largest request of each thread (the
/// tests replay on parallel threads).
struct LargestRequest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for LargestRequest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestRequest = LargestRequest;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let findings = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/findings");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&findings)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{target}_"))));
    found.sort();
    files.extend(found);
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = corpus(target);
    for path in &files {
        let bytes = std::fs::read(path).expect("corpus file");
        LARGEST.with(|largest| largest.set(0));
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target}: input {} panicked", path.display());
        let largest = LARGEST.with(Cell::get);
        assert!(
            largest <= ALLOCATION_LIMIT,
            "{target}: input {} ({} bytes) made a {largest}-byte allocation (limit {ALLOCATION_LIMIT})",
            path.display(),
            bytes.len()
        );
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn pointcloud2_corpus() {
    replay("pointcloud2", harness::pointcloud2);
}

#[test]
fn image_raw_corpus() {
    replay("image_raw", harness::image_raw);
}

#[test]
fn image_compressed_corpus() {
    replay("image_compressed", harness::image_compressed);
}

#[test]
fn camera_info_corpus() {
    replay("camera_info", harness::camera_info);
}

#[test]
fn cdr_messages_corpus() {
    replay("cdr_messages", harness::cdr_messages);
}

#[test]
fn mcap_bag_corpus() {
    replay("mcap_bag", harness::mcap_bag);
}

#[test]
fn gdc_bank_corpus() {
    replay("gdc_bank", harness::gdc_bank);
}

#[test]
fn kitti_calib_corpus() {
    replay("kitti_calib", harness::kitti_calib);
}

/// Writes the hand-made seeds the fuzzing started from (valid messages, a
/// bag, a bank, the real KITTI calibration), as
/// `cargo test --test fuzz_corpora -- --ignored write_seed_inputs`; the
/// committed corpora are these plus what the fuzzer kept, minimised
/// (`scripts/fuzz.sh`).
#[test]
#[ignore = "writes files into fuzz/corpus; run by hand before fuzzing"]
fn write_seed_inputs() {
    use eloss_perception::bag::{BagWriter, CameraInfo, Header, Image, PointCloud2, RosMessage, TFMessage};
    use eloss_perception::bag::{Quaternion, Time, Transform, TransformStamped, Vector3};
    use eloss_perception::gdc::bank::{CovarianceKind, EmbeddingSpec, GaussianBank};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let header = Header { stamp: Time { sec: 1, nanosec: 2 }, frame_id: "velodyne".into() };

    // 8 points of the real KITTI frame, as the node receives them
    let kitti = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kitti_000008/000008.bin");
    let points = std::fs::read(&kitti).expect("the KITTI frame in ../shared/data");
    let cloud = PointCloud2::xyzi_f32(header.clone(), points[..8 * 16].to_vec());
    let image = Image {
        header: header.clone(),
        height: 2,
        width: 3,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 9,
        data: (0..18).collect(),
    };
    let calib_text = std::fs::read_to_string(kitti.with_extension("txt")).expect("the KITTI calibration");
    let info = CameraInfo {
        header: header.clone(),
        height: 375,
        width: 1242,
        distortion_model: "plumb_bob".into(),
        d: vec![0.0; 5],
        k: [721.5, 0.0, 609.6, 0.0, 721.5, 172.9, 0.0, 0.0, 1.0],
        r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p: [721.5, 0.0, 609.6, 44.9, 0.0, 721.5, 172.9, 0.2, 0.0, 0.0, 1.0, 0.003],
        ..Default::default()
    };
    let tf = TFMessage {
        transforms: vec![TransformStamped {
            header: header.clone(),
            child_frame_id: "camera".into(),
            transform: Transform {
                translation: Vector3 { x: 0.27, y: 0.0, z: -0.08 },
                rotation: Quaternion { x: 0.5, y: -0.5, z: 0.5, w: -0.5 },
            },
        }],
    };
    for (kind, name, cdr) in
        [(0u8, "cloud", cloud.encode()), (1, "image", image.encode()), (2, "camera_info", info.encode()), (3, "tf", tf.encode())]
    {
        put("cdr_messages", name, &[&[kind][..], &cdr].concat());
    }

    // a bag with one message of each type
    let dir = tempfile::tempdir().unwrap();
    let bag_path = dir.path().join("seed.mcap");
    let mut bag = BagWriter::create(&bag_path).expect("bag writer (source scripts/env.sh for the schemas)");
    for (topic, type_name) in [
        ("/points", PointCloud2::TYPE_NAME),
        ("/image", Image::TYPE_NAME),
        ("/camera_info", CameraInfo::TYPE_NAME),
        ("/tf", TFMessage::TYPE_NAME),
    ] {
        bag.add_topic(topic, type_name).unwrap();
    }
    bag.write("/points", 1, &cloud).unwrap();
    bag.write("/image", 2, &image).unwrap();
    bag.write("/camera_info", 3, &info).unwrap();
    bag.write("/tf", 4, &tf).unwrap();
    bag.finish().unwrap();
    put("mcap_bag", "seed", &std::fs::read(&bag_path).unwrap());

    // 4x3 PNG and JPEG payloads (format index 0 = jpeg, 1 = png)
    let pixels = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 60, y as u8 * 80, 128]));
    for (index, format) in [(0u8, image::ImageFormat::Jpeg), (1, image::ImageFormat::Png)] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        pixels.write_to(&mut bytes, format).unwrap();
        put("image_compressed", &format!("{format:?}").to_lowercase(), &[&[index][..], bytes.get_ref()].concat());
    }

    // a two-class bank in 3 dimensions
    let a: Vec<Vec<f64>> = vec![vec![0.0, 1.0, 2.0], vec![0.5, 1.2, 1.9], vec![-0.3, 0.8, 2.2], vec![0.1, 1.1, 2.1]];
    let b: Vec<Vec<f64>> = vec![vec![3.0, 1.0, 0.0], vec![3.2, 0.7, 0.1], vec![2.9, 1.3, -0.2], vec![3.1, 1.0, 0.2]];
    let bank = GaussianBank::fit(
        EmbeddingSpec::new("seed-backbone", "cls"),
        &[("car", (&a).into()), ("pedestrian", (&b).into())],
        CovarianceKind::default(),
    )
    .unwrap();
    put("gdc_bank", "two_classes", &bank.to_bytes().unwrap());

    put("kitti_calib", "kitti_000008", calib_text.as_bytes());
    // the structured targets start from a few bytes; the fuzzer finds the rest
    for target in ["pointcloud2", "image_raw", "camera_info"] {
        put(target, "empty", b"");
        put(target, "ones", &[1u8; 64]);
    }
}
