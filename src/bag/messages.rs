//! Owned, ROS-free mirrors of the sensor messages we record, with a CDR
//! codec each, so the core library can read and write bags without r2r.
//!
//! Field names, types and order follow the Jazzy `.msg` files exactly
//! (`share/<pkg>/msg/*.msg`): CDR has no field names or tags, so the order
//! *is* the format. The bytes are interchangeable with what rclcpp, r2r,
//! `rosbags` and `mcap-ros2-support` produce for the same values.

use super::cdr::{CdrReader, CdrWriter};
use super::BagError;

/// A ROS 2 message type with a hand-written CDR codec.
pub trait RosMessage: Sized {
    /// Full ROS 2 type name as rosbag2 records it, e.g. `sensor_msgs/msg/PointCloud2`.
    const TYPE_NAME: &'static str;

    /// Writes the fields in `.msg` order; also used when nested in another message.
    fn write_fields(&self, w: &mut CdrWriter);

    /// Reads the fields in `.msg` order; also used when nested in another message.
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError>;

    /// Rough serialised size, so large messages are encoded without regrowing.
    fn size_hint(&self) -> usize {
        64
    }

    /// Serialises to little-endian CDR including the 4-byte encapsulation header.
    fn encode(&self) -> Vec<u8> {
        let mut w = CdrWriter::with_capacity(self.size_hint());
        self.write_fields(&mut w);
        w.into_bytes()
    }

    /// Deserialises a complete message (header included), rejecting
    /// truncated input and unexplained trailing bytes.
    fn decode(bytes: &[u8]) -> Result<Self, BagError> {
        let mut r = CdrReader::new(bytes)?;
        let msg = Self::read_fields(&mut r)?;
        r.finish()?;
        Ok(msg)
    }
}

/// `builtin_interfaces/msg/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    const NS_PER_SEC: i64 = 1_000_000_000;

    /// Splits nanoseconds since the epoch; negative times keep `nanosec` in
    /// `[0, 1e9)` as ROS defines it (-1.7 s is `{sec: -2, nanosec: 3e8}`).
    /// Seconds outside `i32` saturate (ROS 2 `Time` ends in 2038).
    pub fn from_nanos(ns: i64) -> Self {
        let sec = ns.div_euclid(Self::NS_PER_SEC).clamp(i32::MIN.into(), i32::MAX.into());
        Self { sec: sec as i32, nanosec: ns.rem_euclid(Self::NS_PER_SEC) as u32 }
    }

    pub fn to_nanos(self) -> i64 {
        i64::from(self.sec) * Self::NS_PER_SEC + i64::from(self.nanosec)
    }
}

impl RosMessage for Time {
    const TYPE_NAME: &'static str = "builtin_interfaces/msg/Time";
    fn write_fields(&self, w: &mut CdrWriter) {
        w.i32(self.sec);
        w.u32(self.nanosec);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { sec: r.i32()?, nanosec: r.u32()? })
    }
}

/// `std_msgs/msg/Header`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

impl RosMessage for Header {
    const TYPE_NAME: &'static str = "std_msgs/msg/Header";
    fn write_fields(&self, w: &mut CdrWriter) {
        self.stamp.write_fields(w);
        w.string(&self.frame_id);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { stamp: Time::read_fields(r)?, frame_id: r.string()? })
    }
}

/// `std_msgs/msg/String`: free text, e.g. the simulator's ground truth as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdString {
    pub data: String,
}

impl RosMessage for StdString {
    const TYPE_NAME: &'static str = "std_msgs/msg/String";
    fn write_fields(&self, w: &mut CdrWriter) {
        w.string(&self.data);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { data: r.string()? })
    }
    fn size_hint(&self) -> usize {
        16 + self.data.len()
    }
}

/// `sensor_msgs/msg/PointField`: the cloud decoder's own field type, so a
/// decoded bag message feeds [`crate::cloud::pointcloud2::decode`] directly.
pub use crate::cloud::pointcloud2::PointField;

impl RosMessage for PointField {
    const TYPE_NAME: &'static str = "sensor_msgs/msg/PointField";
    fn write_fields(&self, w: &mut CdrWriter) {
        w.string(&self.name);
        w.u32(self.offset);
        w.u8(self.datatype);
        w.u32(self.count);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { name: r.string()?, offset: r.u32()?, datatype: r.u8()?, count: r.u32()? })
    }
}

/// `sensor_msgs/msg/PointCloud2`. `data` is the raw point buffer
/// (`row_step * height` bytes); decoding points is the cloud module's job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointCloud2 {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub fields: Vec<PointField>,
    pub is_bigendian: bool,
    pub point_step: u32,
    pub row_step: u32,
    pub data: Vec<u8>,
    pub is_dense: bool,
}

impl PointCloud2 {
    /// An unordered cloud of packed little-endian f32 x, y, z, intensity
    /// points (KITTI's .bin layout, 16 bytes a point); a trailing partial
    /// point is not counted.
    pub fn xyzi_f32(header: Header, data: Vec<u8>) -> Self {
        let n = (data.len() / 16) as u32;
        PointCloud2 {
            header,
            height: 1,
            width: n,
            fields: ["x", "y", "z", "intensity"].iter().zip(0..).map(|(f, i)| PointField::new(f, 4 * i, PointField::FLOAT32)).collect(),
            is_bigendian: false,
            point_step: 16,
            row_step: 16 * n,
            data,
            is_dense: true,
        }
    }

    /// An unordered cloud of `points` in the layout of
    /// [`crate::cloud::pointcloud2::encode_xyzi`] (x, y, z, intensity, and
    /// ring / time when present).
    pub fn from_points(header: Header, points: &crate::cloud::Points) -> Self {
        let (fields, point_step, data) = crate::cloud::pointcloud2::encode_xyzi(points);
        let n = points.len() as u32;
        PointCloud2 { header, height: 1, width: n, fields, is_bigendian: false, point_step, row_step: point_step * n, data, is_dense: true }
    }
}

impl RosMessage for PointCloud2 {
    const TYPE_NAME: &'static str = "sensor_msgs/msg/PointCloud2";
    fn size_hint(&self) -> usize {
        self.data.len() + 64 + 32 * self.fields.len()
    }
    fn write_fields(&self, w: &mut CdrWriter) {
        self.header.write_fields(w);
        w.u32(self.height);
        w.u32(self.width);
        w.seq_len(self.fields.len());
        self.fields.iter().for_each(|f| f.write_fields(w));
        w.bool(self.is_bigendian);
        w.u32(self.point_step);
        w.u32(self.row_step);
        w.bytes(&self.data);
        w.bool(self.is_dense);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        let header = Header::read_fields(r)?;
        let (height, width) = (r.u32()?, r.u32()?);
        // 4 bytes is a lower bound on one serialised PointField (its name's length prefix).
        let fields = (0..r.seq_len(4)?).map(|_| PointField::read_fields(r)).collect::<Result<_, _>>()?;
        Ok(Self {
            header,
            height,
            width,
            fields,
            is_bigendian: r.bool()?,
            point_step: r.u32()?,
            row_step: r.u32()?,
            data: r.bytes()?,
            is_dense: r.bool()?,
        })
    }
}

/// `sensor_msgs/msg/Image`. Note `is_bigendian` is a `uint8` here, unlike
/// the `bool` in PointCloud2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    pub step: u32,
    pub data: Vec<u8>,
}

impl RosMessage for Image {
    const TYPE_NAME: &'static str = "sensor_msgs/msg/Image";
    fn size_hint(&self) -> usize {
        self.data.len() + 64 + self.encoding.len()
    }
    fn write_fields(&self, w: &mut CdrWriter) {
        self.header.write_fields(w);
        w.u32(self.height);
        w.u32(self.width);
        w.string(&self.encoding);
        w.u8(self.is_bigendian);
        w.u32(self.step);
        w.bytes(&self.data);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self {
            header: Header::read_fields(r)?,
            height: r.u32()?,
            width: r.u32()?,
            encoding: r.string()?,
            is_bigendian: r.u8()?,
            step: r.u32()?,
            data: r.bytes()?,
        })
    }
}

/// `sensor_msgs/msg/RegionOfInterest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionOfInterest {
    pub x_offset: u32,
    pub y_offset: u32,
    pub height: u32,
    pub width: u32,
    pub do_rectify: bool,
}

impl RosMessage for RegionOfInterest {
    const TYPE_NAME: &'static str = "sensor_msgs/msg/RegionOfInterest";
    fn write_fields(&self, w: &mut CdrWriter) {
        w.u32(self.x_offset);
        w.u32(self.y_offset);
        w.u32(self.height);
        w.u32(self.width);
        w.bool(self.do_rectify);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { x_offset: r.u32()?, y_offset: r.u32()?, height: r.u32()?, width: r.u32()?, do_rectify: r.bool()? })
    }
}

/// `sensor_msgs/msg/CameraInfo`. Matrices are row-major: `k` 3x3, `r` 3x3,
/// `p` 3x4.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraInfo {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub distortion_model: String,
    pub d: Vec<f64>,
    pub k: [f64; 9],
    pub r: [f64; 9],
    pub p: [f64; 12],
    pub binning_x: u32,
    pub binning_y: u32,
    pub roi: RegionOfInterest,
}

impl RosMessage for CameraInfo {
    const TYPE_NAME: &'static str = "sensor_msgs/msg/CameraInfo";
    fn size_hint(&self) -> usize {
        320 + 8 * self.d.len()
    }
    fn write_fields(&self, w: &mut CdrWriter) {
        self.header.write_fields(w);
        w.u32(self.height);
        w.u32(self.width);
        w.string(&self.distortion_model);
        w.f64_seq(&self.d);
        w.f64_array(&self.k);
        w.f64_array(&self.r);
        w.f64_array(&self.p);
        w.u32(self.binning_x);
        w.u32(self.binning_y);
        self.roi.write_fields(w);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self {
            header: Header::read_fields(r)?,
            height: r.u32()?,
            width: r.u32()?,
            distortion_model: r.string()?,
            d: r.f64_seq()?,
            k: r.f64_array()?,
            r: r.f64_array()?,
            p: r.f64_array()?,
            binning_x: r.u32()?,
            binning_y: r.u32()?,
            roi: RegionOfInterest::read_fields(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(frame: &str) -> Header {
        Header { stamp: Time { sec: 1, nanosec: 2 }, frame_id: frame.into() }
    }

    fn cloud() -> PointCloud2 {
        PointCloud2::xyzi_f32(header("velodyne"), (0..32).collect())
    }

    fn image() -> Image {
        Image {
            header: header("cam"),
            height: 2,
            width: 3,
            encoding: "bgr8".into(),
            is_bigendian: 0,
            step: 9,
            data: (0..18).collect(),
        }
    }

    fn camera_info(d: Vec<f64>) -> CameraInfo {
        CameraInfo {
            header: header("c"),
            height: 375,
            width: 1242,
            distortion_model: "plumb_bob".into(),
            d,
            k: std::array::from_fn(|i| i as f64 + 0.5),
            r: std::array::from_fn(|i| if i % 4 == 0 { 1.0 } else { 0.0 }),
            p: std::array::from_fn(|i| -(i as f64)),
            binning_x: 1,
            binning_y: 2,
            roi: RegionOfInterest { x_offset: 1, y_offset: 2, height: 3, width: 4, do_rectify: true },
        }
    }

    fn round_trip<M: RosMessage + PartialEq + std::fmt::Debug>(m: &M) {
        assert_eq!(&M::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn round_trips() {
        round_trip(&Time { sec: -5, nanosec: 999_999_999 });
        round_trip(&header(""));
        round_trip(&header("odd"));
        round_trip(&PointField::new("intensity", 12, PointField::FLOAT32));
        round_trip(&cloud());
        round_trip(&PointCloud2 { fields: vec![], data: vec![], ..cloud() });
        round_trip(&image());
        round_trip(&Image { encoding: String::new(), data: vec![], ..image() });
        round_trip(&camera_info(vec![]));
        round_trip(&camera_info(vec![0.1, -0.2, 0.0, 0.001, 0.3]));
        round_trip(&CameraInfo { distortion_model: "ab".into(), ..camera_info(vec![1.0]) });
    }

    #[test]
    fn time_nanos() {
        assert_eq!(Time::from_nanos(-1_700_000_000), Time { sec: -2, nanosec: 300_000_000 });
        assert_eq!(Time::from_nanos(1_700_000_000_123).to_nanos(), 1_700_000_000_123);
        assert_eq!(Time::from_nanos(i64::MAX).sec, i32::MAX);
    }

    // Golden bytes produced by Python `rosbags` 0.11.9 (typestore ROS2_JAZZY, serialize_cdr).
    #[test]
    fn matches_rosbags_bytes() {
        let h = header("ab");
        assert_eq!(h.encode(), [0, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 97, 98, 0]);
        let pc = PointCloud2 {
            header: h.clone(),
            height: 1,
            width: 1,
            fields: vec![PointField::new("x", 4, PointField::FLOAT32)],
            is_bigendian: false,
            point_step: 4,
            row_step: 4,
            data: vec![1, 2, 3, 4],
            is_dense: true,
        };
        #[rustfmt::skip]
        let expected = [
            0, 1, 0, 0, // CDR_LE
            1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 97, 98, 0, // stamp, frame_id "ab"
            0, 1, 0, 0, 0, 1, 0, 0, 0, // pad, height, width
            1, 0, 0, 0, 2, 0, 0, 0, 120, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, // fields: [x, 4, FLOAT32, 1]
            0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, // is_bigendian, pad, point_step, row_step
            4, 0, 0, 0, 1, 2, 3, 4, 1, // data, is_dense
        ];
        assert_eq!(pc.encode(), expected);
        // empty distortion_model and d: the 8-byte alignment of k must still land on payload offset 40
        let ci = CameraInfo {
            header: h,
            height: 2,
            width: 3,
            binning_x: 1,
            binning_y: 2,
            roi: RegionOfInterest { x_offset: 1, y_offset: 2, height: 3, width: 4, do_rectify: true },
            ..Default::default()
        };
        let bytes = ci.encode();
        assert_eq!(bytes.len(), 309);
        #[rustfmt::skip]
        assert_eq!(&bytes[..40], &[0, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 97, 98, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0,
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[285..], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1]);
    }

    /// xorshift64: deterministic, dependency-free randomness for the mutation loop.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Corrupt messages (flipped bytes, truncation, inserted garbage, huge
    /// lengths) must decode to `Ok` or `Err`, never panic or over-allocate.
    #[test]
    fn mutations_never_panic() {
        let seeds = [cloud().encode(), image().encode(), camera_info(vec![0.5; 5]).encode(), header("frame").encode()];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut errors = 0;
        for case in 0..2000 {
            let mut b = seeds[case % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    _ if b.is_empty() => b.push(rng.next() as u8),
                    0 => {
                        let i = rng.below(b.len());
                        b[i] ^= 1 << rng.below(8);
                    }
                    1 => b.truncate(rng.below(b.len())),
                    2 => {
                        let i = rng.below(b.len() + 1);
                        b.insert(i, rng.next() as u8);
                    }
                    _ if b.len() >= 4 => {
                        // plant a large u32, as a corrupt length field would be
                        let i = rng.below(b.len() - 3);
                        b[i..i + 4].copy_from_slice(&(rng.next() as u32 | 0x8000_0000).to_le_bytes());
                    }
                    _ => {}
                }
            }
            let results = [
                PointCloud2::decode(&b).is_err(),
                Image::decode(&b).is_err(),
                CameraInfo::decode(&b).is_err(),
                Header::decode(&b).is_err(),
            ];
            errors += results.iter().filter(|&&e| e).count();
        }
        // sanity: the mutations really do produce errors most of the time
        assert!(errors > 4000, "only {errors} decode errors");
    }
}
