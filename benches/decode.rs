//! Decode throughput of the sensor-message decoders on realistic inputs.
//!
//! The node decodes every lidar and camera message on the hot path, so these
//! numbers bound the frame rate the rest of the pipeline can see:
//!
//! * `pointcloud2/kitti_f32_step16`: the real KITTI frame (17,238 points) as
//!   the common little-endian float32 x,y,z,intensity layout (fast path);
//! * `pointcloud2/kitti_f64_step32`: the same points as float64 x,y,z plus a
//!   float32 intensity in a padded 32-byte point (float64 loop, intensity
//!   read through the per-datatype reader);
//! * `pointcloud2/kitti_x7_f32_step16`: the frame repeated 7 times (~120k
//!   points, a 128-beam lidar scan). Its per-point rate is lower mostly
//!   because each decode allocates fresh ~0.5 MB arrays, which glibc maps
//!   anew (page faults on first write) every time; running with
//!   `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456` shows the decode
//!   itself close to the small-cloud rate. The node pays this too, per frame;
//! * `image/bgr8_1242x375`: a KITTI-sized BGR frame to packed RGB.
//!
//! The KITTI file is found as in the unit tests, at
//! `$CARGO_MANIFEST_DIR/../shared/data/kitti_000008`; without it the cloud
//! benchmarks are skipped with a note (a failure when `CI` is set).

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use eloss_perception::cloud::pointcloud2::{decode, encode_xyzi, CloudLayout, PointField};
use eloss_perception::cloud::{kitti_bin, Points};
use eloss_perception::image::{decode_rgb, ImageLayout};

fn kitti_bin_path() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kitti_000008");
    if dir.is_dir() {
        return Some(dir.join("000008.bin"));
    }
    if std::env::var_os("CI").is_some() {
        panic!("KITTI data missing at {} (required when CI is set)", dir.display());
    }
    eprintln!("note: skipping point cloud benchmarks, KITTI data not found at {}", dir.display());
    None
}

/// An owned PointCloud2 (one row) to borrow layouts from.
struct Cloud {
    fields: Vec<PointField>,
    point_step: u32,
    data: Vec<u8>,
}

impl Cloud {
    fn layout(&self) -> CloudLayout<'_> {
        CloudLayout {
            height: 1,
            width: (self.data.len() / self.point_step as usize) as u32,
            fields: &self.fields,
            is_bigendian: false,
            point_step: self.point_step,
            row_step: self.data.len() as u32,
            data: &self.data,
            is_dense: true,
        }
    }
}

fn f32_step16(points: &Points) -> Cloud {
    let (fields, point_step, data) = encode_xyzi(points);
    Cloud { fields, point_step, data }
}

/// x, y, z as float64 at 0, 8, 16, intensity float32 at 24, 4 bytes padding.
fn f64_step32(points: &Points) -> Cloud {
    let fields = vec![
        PointField::new("x", 0, PointField::FLOAT64),
        PointField::new("y", 8, PointField::FLOAT64),
        PointField::new("z", 16, PointField::FLOAT64),
        PointField::new("intensity", 24, PointField::FLOAT32),
    ];
    let mut data = Vec::with_capacity(points.len() * 32);
    for p in (0..).map_while(|i| points.get(i)) {
        for v in [p.x, p.y, p.z] {
            data.extend_from_slice(&f64::from(v).to_le_bytes());
        }
        data.extend_from_slice(&p.intensity.to_le_bytes());
        data.extend_from_slice(&[0; 4]);
    }
    Cloud { fields, point_step: 32, data }
}

fn clouds(c: &mut Criterion) {
    let Some(path) = kitti_bin_path() else { return };
    let points = kitti_bin::read(&path).expect("read the KITTI cloud");
    let mut x7 = Points::default();
    for _ in 0..7 {
        (0..).map_while(|i| points.get(i)).for_each(|p| x7.push(p));
    }

    let mut group = c.benchmark_group("pointcloud2");
    for (name, cloud, n) in [
        ("kitti_f32_step16", f32_step16(&points), points.len()),
        ("kitti_f64_step32", f64_step32(&points), points.len()),
        ("kitti_x7_f32_step16", f32_step16(&x7), x7.len()),
    ] {
        let layout = cloud.layout();
        assert_eq!(decode(&layout).map(|(p, _)| p.len()).ok(), Some(n), "{name} decodes");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| b.iter(|| decode(black_box(&layout))));
    }
    group.finish();
}

fn images(c: &mut Criterion) {
    let (width, height) = (1242u32, 375u32);
    let data: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    let layout = ImageLayout { height, width, encoding: "bgr8", is_bigendian: false, step: width * 3, data: &data };
    let mut group = c.benchmark_group("image");
    group.throughput(Throughput::Elements(u64::from(width * height)));
    group.bench_function("bgr8_1242x375", |b| b.iter(|| decode_rgb(black_box(&layout))));
    group.finish();
}

criterion_group!(benches, clouds, images);
criterion_main!(benches);
