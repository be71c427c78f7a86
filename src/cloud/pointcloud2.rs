//! `sensor_msgs/PointCloud2` decoding and encoding without ROS types.
//!
//! The ROS adapter and the bag reader both hand the message's fields to
//! [`decode`] through a borrowed [`CloudLayout`], so the wire-format logic is
//! written (and tested) once and the core library stays free of ROS.
//!
//! # What is understood
//!
//! | field (first name found wins)          | datatypes                         | becomes                       |
//! |----------------------------------------|-----------------------------------|-------------------------------|
//! | `x`, `y`, `z`                          | float32, float64                  | metres as f32 (required)      |
//! | `intensity`, else `reflectance`        | float32, float64, uint8, uint16   | value as f32 (see [`super`])  |
//! | `ring`                                 | uint8, uint16                     | `ring`                        |
//! | `time`, else `t`, else `timestamp`     | float32, float64 (s), uint32 (ns) | `time`, seconds as f32        |
//!
//! Any other field is ignored, whatever its datatype. Recognised fields must
//! have `count == 1`, a supported datatype and lie inside `point_step`.
//!
//! Time: float32 seconds are kept as stored (Velodyne's offset within the
//! scan). uint32 is nanoseconds (Ouster's `t`, offset from the scan start) and
//! is scaled to seconds. float64 is what Hesai/Livox use for absolute epoch
//! time (~1.7e9 s), where an f32 is only good to 128 s; so float64 times are
//! stored relative to the first point's time, which is returned as
//! [`DecodeReport::time_origin_s`] (`stored = time + time_origin_s`).
//!
//! Points whose x, y or z is NaN or infinite (after narrowing to f32) are
//! dropped and counted, whether or not the message claims `is_dense`: drivers
//! are not reliable about that flag and downstream code assumes finite points.
//!
//! A cloud with no points (`width` or `height` 0) decodes to an empty cloud
//! without looking at its field table, because drivers publish
//! default-constructed messages to mean "nothing this cycle".

use std::marker::PhantomData;

pub use super::CloudError;
use super::Points;

/// One entry of a PointCloud2 field table (`sensor_msgs/PointField`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointField {
    pub name: String,
    pub offset: u32,
    pub datatype: u8,
    pub count: u32,
}

impl PointField {
    pub const INT8: u8 = 1;
    pub const UINT8: u8 = 2;
    pub const INT16: u8 = 3;
    pub const UINT16: u8 = 4;
    pub const INT32: u8 = 5;
    pub const UINT32: u8 = 6;
    pub const FLOAT32: u8 = 7;
    pub const FLOAT64: u8 = 8;

    /// A field with `count == 1`, the only count that is ever used in practice.
    pub fn new(name: &str, offset: u32, datatype: u8) -> Self {
        Self { name: name.to_owned(), offset, datatype, count: 1 }
    }
}

/// The parts of a `sensor_msgs/PointCloud2` that describe its points, borrowed
/// from wherever the message lives (an r2r message, a CDR buffer, a test).
#[derive(Debug, Clone, Copy)]
pub struct CloudLayout<'a> {
    pub height: u32,
    pub width: u32,
    pub fields: &'a [PointField],
    pub is_bigendian: bool,
    pub point_step: u32,
    pub row_step: u32,
    pub data: &'a [u8],
    pub is_dense: bool,
}

/// What [`decode`] saw besides the points it returned.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecodeReport {
    /// `height * width`: points in the message, kept or not.
    pub points_in: usize,
    /// Points dropped because x, y or z was NaN or infinite.
    pub non_finite: usize,
    /// Added to `Points::time` gives the stored time in seconds; non-zero only
    /// for float64 time fields (see the module docs).
    pub time_origin_s: f64,
}

/// Decodes a PointCloud2 into [`Points`].
///
/// The data must hold `(height - 1) * row_step + width * point_step` bytes:
/// the padding after the last row may be omitted, since nothing is read from
/// it and some serialisers trim it. Extra trailing bytes are ignored.
pub fn decode(layout: &CloudLayout) -> Result<(Points, DecodeReport), CloudError> {
    let n = u64::from(layout.height) * u64::from(layout.width);
    if n == 0 {
        return Ok((Points::default(), DecodeReport::default()));
    }
    if layout.point_step == 0 {
        return Err(CloudError::ZeroPointStep { width: layout.width });
    }
    let fields = Fields::resolve(layout)?;
    let geom = Geometry::check(layout)?;
    let n = usize::try_from(n).map_err(|_| CloudError::SizeOverflow)?;

    let time = fields.time.map(|(reader, unit)| {
        let origin = match unit {
            TimeUnit::Seconds if reader.scalar == Scalar::F64 => {
                let first = layout.data.get(..geom.point_step).map_or(0.0, |p| reader.read(p));
                if first.is_finite() {
                    first
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        let scale = if unit == TimeUnit::Nanoseconds { 1e-9 } else { 1.0 };
        TimeReader { reader, scale, origin }
    });
    let extras = Extras { ring: fields.ring, time };

    // Dispatching on datatype per field and point is a large share of the
    // decode time (measured: ~30% for intensity alone), so clouds whose x, y,
    // z share one float type (every driver in use) get a loop compiled for
    // exactly that type and endianness, and the most common layout (all
    // float32 little-endian: KITTI, Velodyne, Ouster, Livox) one for its
    // intensity too. Mixed layouts use per-field readers.
    let [x, y, z] = fields.xyz;
    let (scalar, i) = (x.scalar, fields.intensity);
    let uniform = y.scalar == scalar && z.scalar == scalar;
    let f32_le_intensity = i.is_none_or(|r| r.scalar == Scalar::F32 && !r.big_endian);
    let xyz = [x.offset, y.offset, z.offset];
    let (data, be) = (layout.data, layout.is_bigendian);
    macro_rules! uniform {
        ($c:ty, $be:literal, $i:expr) => {
            decode_rows(&Uniform::<$c, _, $be> { xyz, i: $i, coord: PhantomData }, &extras, &geom, data, n)
        };
    }
    let (points, non_finite) = match (uniform, scalar, be) {
        (true, Scalar::F32, false) if f32_le_intensity => uniform!(f32, false, F32LeIntensity(i.map(|r| r.offset))),
        (true, Scalar::F32, false) => uniform!(f32, false, i),
        (true, Scalar::F32, true) => uniform!(f32, true, i),
        (true, Scalar::F64, false) => uniform!(f64, false, i),
        (true, Scalar::F64, true) => uniform!(f64, true, i),
        _ => decode_rows(&Generic { xyz: fields.xyz, i }, &extras, &geom, data, n),
    };
    let report = DecodeReport { points_in: n, non_finite, time_origin_s: extras.time.map_or(0.0, |t| t.origin) };
    Ok((points, report))
}

/// Encodes `points` as little-endian float32 `x` (offset 0), `y` (4), `z` (8),
/// `intensity` (12), point_step 16 — the layout most drivers publish. When
/// present, `ring` is appended as uint16 at offset 16 followed by 2 bytes of
/// padding, then `time` as float32 (at 16 without ring, 20 with it), so every
/// field stays 4-byte aligned: point_step is 16, 20 or 24.
///
/// Returns `(fields, point_step, data)`; the message is one row of
/// `data.len() / point_step` points. Arrays are expected to be equal length;
/// if they are not, the cloud is cut to the shortest.
pub fn encode_xyzi(points: &Points) -> (Vec<PointField>, u32, Vec<u8>) {
    let mut fields = ["x", "y", "z", "intensity"]
        .iter()
        .zip((0u32..).step_by(4))
        .map(|(name, off)| PointField::new(name, off, PointField::FLOAT32))
        .collect::<Vec<_>>();
    let mut step = 16;
    if points.ring.is_some() {
        fields.push(PointField::new("ring", step, PointField::UINT16));
        step += 4;
    }
    if points.time.is_some() {
        fields.push(PointField::new("time", step, PointField::FLOAT32));
        step += 4;
    }

    let mut data = Vec::with_capacity(points.len() * step as usize);
    for p in (0..).map_while(|i| points.get(i)) {
        for v in [p.x, p.y, p.z, p.intensity] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        if points.ring.is_some() {
            data.extend_from_slice(&p.ring.to_le_bytes());
            data.extend_from_slice(&[0, 0]);
        }
        if points.time.is_some() {
            data.extend_from_slice(&p.time.to_le_bytes());
        }
    }
    (fields, step, data)
}

// ---------------------------------------------------------------------------
// Layout validation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn from_datatype(datatype: u8) -> Option<Self> {
        Some(match datatype {
            PointField::INT8 => Self::I8,
            PointField::UINT8 => Self::U8,
            PointField::INT16 => Self::I16,
            PointField::UINT16 => Self::U16,
            PointField::INT32 => Self::I32,
            PointField::UINT32 => Self::U32,
            PointField::FLOAT32 => Self::F32,
            PointField::FLOAT64 => Self::F64,
            _ => return None,
        })
    }

    fn size(self) -> u32 {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    Seconds,
    Nanoseconds,
}

/// The recognised fields, each turned into a reader whose offset is known to
/// lie inside a point.
struct Fields {
    xyz: [Reader; 3],
    intensity: Option<Reader>,
    ring: Option<Reader>,
    time: Option<(Reader, TimeUnit)>,
}

impl Fields {
    fn resolve(layout: &CloudLayout) -> Result<Self, CloudError> {
        use Scalar::*;
        let reader = |names: &[&str], allowed: &[Scalar]| -> Result<Option<Reader>, CloudError> {
            // Priority follows `names`, not the order of the field table.
            let Some(f) = names.iter().find_map(|n| layout.fields.iter().find(|f| f.name == *n)) else {
                return Ok(None);
            };
            if f.count != 1 {
                return Err(CloudError::BadFieldCount { field: f.name.clone(), count: f.count });
            }
            let scalar = Scalar::from_datatype(f.datatype)
                .filter(|s| allowed.contains(s))
                .ok_or_else(|| CloudError::UnsupportedDatatype { field: f.name.clone(), datatype: f.datatype })?;
            if u64::from(f.offset) + u64::from(scalar.size()) > u64::from(layout.point_step) {
                return Err(CloudError::FieldOutOfBounds {
                    field: f.name.clone(),
                    offset: f.offset,
                    size: scalar.size(),
                    point_step: layout.point_step,
                });
            }
            let offset = usize::try_from(f.offset).map_err(|_| CloudError::SizeOverflow)?;
            Ok(Some(Reader { offset, scalar, big_endian: layout.is_bigendian }))
        };
        let coord = |name: &'static str| reader(&[name], &[F32, F64])?.ok_or(CloudError::MissingField(name));
        let time = reader(&["time", "t", "timestamp"], &[F32, F64, U32])?;
        Ok(Self {
            xyz: [coord("x")?, coord("y")?, coord("z")?],
            intensity: reader(&["intensity", "reflectance"], &[F32, F64, U8, U16])?,
            ring: reader(&["ring"], &[U8, U16])?,
            time: time.map(|r| (r, if r.scalar == U32 { TimeUnit::Nanoseconds } else { TimeUnit::Seconds })),
        })
    }
}

/// Row and point sizes, checked against the data so that the decode loop can
/// slice without further checks failing.
struct Geometry {
    height: usize,
    point_step: usize,
    row_step: usize,
    row_len: usize,
}

impl Geometry {
    fn check(layout: &CloudLayout) -> Result<Self, CloudError> {
        // u32 x u32 always fits in u64; only the sum below needs checking.
        let row_len = u64::from(layout.width) * u64::from(layout.point_step);
        if u64::from(layout.row_step) < row_len {
            return Err(CloudError::RowStepTooSmall {
                row_step: layout.row_step,
                width: layout.width,
                point_step: layout.point_step,
            });
        }
        let needed = u64::from(layout.height)
            .checked_sub(1)
            .and_then(|rows| rows.checked_mul(u64::from(layout.row_step)))
            .and_then(|b| b.checked_add(row_len))
            .ok_or(CloudError::SizeOverflow)?;
        let len = layout.data.len();
        if u64::try_from(len).is_ok_and(|len| len < needed) {
            return Err(CloudError::DataTooShort { len, needed });
        }
        let size = |v: u64| usize::try_from(v).map_err(|_| CloudError::SizeOverflow);
        Ok(Self {
            height: size(layout.height.into())?,
            point_step: size(layout.point_step.into())?,
            row_step: size(layout.row_step.into())?,
            row_len: size(row_len)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Reading

/// `N` bytes at `offset` of one point. Offsets were checked against
/// point_step, so the zero fallback never fires; it is there so that a logic
/// error can never turn into a panic on sensor data.
#[inline(always)]
fn bytes<const N: usize>(point: &[u8], offset: usize) -> [u8; N] {
    point.get(offset..offset.saturating_add(N)).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
}

macro_rules! num {
    ($t:ty, $point:expr, $offset:expr, $be:expr) => {{
        let b = bytes::<{ std::mem::size_of::<$t>() }>($point, $offset);
        if $be {
            <$t>::from_be_bytes(b)
        } else {
            <$t>::from_le_bytes(b)
        }
    }};
}

/// Reads one field of any datatype as f64 (exact for all of them).
#[derive(Debug, Clone, Copy)]
struct Reader {
    offset: usize,
    scalar: Scalar,
    big_endian: bool,
}

impl Reader {
    #[inline(always)]
    fn read(self, p: &[u8]) -> f64 {
        let (o, be) = (self.offset, self.big_endian);
        match self.scalar {
            Scalar::I8 => f64::from(num!(i8, p, o, be)),
            Scalar::U8 => f64::from(num!(u8, p, o, be)),
            Scalar::I16 => f64::from(num!(i16, p, o, be)),
            Scalar::U16 => f64::from(num!(u16, p, o, be)),
            Scalar::I32 => f64::from(num!(i32, p, o, be)),
            Scalar::U32 => f64::from(num!(u32, p, o, be)),
            Scalar::F32 => f64::from(num!(f32, p, o, be)),
            Scalar::F64 => num!(f64, p, o, be),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct TimeReader {
    reader: Reader,
    scale: f64,
    origin: f64,
}

/// The optional channels besides intensity, read in passes of their own.
struct Extras {
    ring: Option<Reader>,
    time: Option<TimeReader>,
}

/// Reads x, y, z and intensity of one point.
trait XyzI {
    fn read(&self, p: &[u8]) -> [f32; 4];
}

/// A coordinate type, read with the endianness fixed at compile time.
trait Coord {
    fn read<const BE: bool>(p: &[u8], offset: usize) -> f32;
}

impl Coord for f32 {
    #[inline(always)]
    fn read<const BE: bool>(p: &[u8], offset: usize) -> f32 {
        num!(f32, p, offset, BE)
    }
}

impl Coord for f64 {
    #[inline(always)]
    fn read<const BE: bool>(p: &[u8], offset: usize) -> f32 {
        num!(f64, p, offset, BE) as f32
    }
}

/// Intensity of a point, 0 when the cloud has none.
trait Intensity {
    fn read(&self, p: &[u8]) -> f32;
}

/// Intensity of any datatype, dispatched per point.
impl Intensity for Option<Reader> {
    #[inline(always)]
    fn read(&self, p: &[u8]) -> f32 {
        self.map_or(0.0, |r| r.read(p) as f32)
    }
}

/// Little-endian float32 intensity at this offset (or none).
struct F32LeIntensity(Option<usize>);

impl Intensity for F32LeIntensity {
    #[inline(always)]
    fn read(&self, p: &[u8]) -> f32 {
        self.0.map_or(0.0, |o| f32::read::<false>(p, o))
    }
}

/// x, y, z of one type and endianness.
struct Uniform<C, I, const BE: bool> {
    xyz: [usize; 3],
    i: I,
    coord: PhantomData<C>,
}

impl<C: Coord, I: Intensity, const BE: bool> XyzI for Uniform<C, I, BE> {
    #[inline(always)]
    fn read(&self, p: &[u8]) -> [f32; 4] {
        let [x, y, z] = self.xyz.map(|o| C::read::<BE>(p, o));
        [x, y, z, self.i.read(p)]
    }
}

/// Any mix of coordinate types, dispatched per field and point.
struct Generic {
    xyz: [Reader; 3],
    i: Option<Reader>,
}

impl XyzI for Generic {
    #[inline(always)]
    fn read(&self, p: &[u8]) -> [f32; 4] {
        let [x, y, z] = self.xyz.map(|r| r.read(p) as f32);
        [x, y, z, Intensity::read(&self.i, p)]
    }
}

/// The decode loop; returns the points and how many non-finite ones it dropped.
///
/// Every point is first written at its own index, which needs neither a
/// per-point branch nor a bounds check; the rare non-finite points are then
/// removed in a second pass that only runs when there are any.
fn decode_rows<R: XyzI>(xyzi: &R, extras: &Extras, geom: &Geometry, data: &[u8], n: usize) -> (Points, usize) {
    // Geometry::check guaranteed every row is in `data`, so no row is skipped.
    let rows = || (0..geom.height).filter_map(|r| data.get(r * geom.row_step..r * geom.row_step + geom.row_len));
    let points = || rows().flat_map(|row| row.chunks_exact(geom.point_step));

    let (mut x, mut y, mut z, mut intensity) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let mut out = x.iter_mut().zip(&mut y).zip(&mut z).zip(&mut intensity);
    let (mut written, mut non_finite) = (0, 0);
    for row in rows() {
        for (p, (((xo, yo), zo), io)) in row.chunks_exact(geom.point_step).zip(&mut out) {
            let [a, b, c, d] = xyzi.read(p);
            (*xo, *yo, *zo, *io) = (a, b, c, d);
            non_finite += usize::from(!(a.is_finite() && b.is_finite() && c.is_finite()));
            written += 1;
        }
    }
    // Ring datatypes are u8/u16, so the cast is exact.
    let ring = extras.ring.map(|r| collect(points(), n, |p| r.read(p) as u16));
    let time = extras.time.map(|t| collect(points(), n, |p| (t.reader.read(p) * t.scale - t.origin) as f32));

    let mut pts = Points { x, y, z, intensity, ring, time };
    // Only shortens anything if a row went missing, which the checks exclude.
    for v in [&mut pts.x, &mut pts.y, &mut pts.z, &mut pts.intensity] {
        v.truncate(written);
    }
    if non_finite > 0 {
        let keep: Vec<bool> = pts
            .x
            .iter()
            .zip(&pts.y)
            .zip(&pts.z)
            .map(|((x, y), z)| x.is_finite() && y.is_finite() && z.is_finite())
            .collect();
        pts.retain_mask(&keep);
    }
    (pts, non_finite)
}

/// One optional channel, read in its own pass over the points.
fn collect<'d, T>(points: impl Iterator<Item = &'d [u8]>, n: usize, read: impl Fn(&[u8]) -> T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.extend(points.map(read));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{kitti_bin, test_data::kitti_dir, Point};

    const F32: u8 = PointField::FLOAT32;
    const F64: u8 = PointField::FLOAT64;
    const U8: u8 = PointField::UINT8;
    const U16: u8 = PointField::UINT16;
    const U32: u8 = PointField::UINT32;

    /// A hand-built PointCloud2: a field table plus zeroed data that
    /// [`Msg::set`] fills in through the table, honouring the endianness.
    #[derive(Clone)]
    struct Msg {
        fields: Vec<PointField>,
        point_step: u32,
        row_step: u32,
        width: u32,
        height: u32,
        big_endian: bool,
        dense: bool,
        data: Vec<u8>,
    }

    impl Msg {
        fn new(fields: &[(&str, u8, u32)], point_step: u32, width: u32, height: u32) -> Self {
            let fields = fields.iter().map(|&(n, dt, off)| PointField::new(n, off, dt)).collect();
            let row_step = width * point_step;
            let data = vec![0; (row_step * height) as usize];
            Self { fields, point_step, row_step, width, height, big_endian: false, dense: true, data }
        }

        fn with_row_step(mut self, row_step: u32) -> Self {
            self.row_step = row_step;
            self.data = vec![0; (row_step * self.height) as usize];
            self
        }

        fn big_endian(mut self) -> Self {
            self.big_endian = true;
            self
        }

        /// Writes `v` into field `name` of point `i` (row-major).
        fn set(&mut self, i: u32, name: &str, v: f64) {
            let f = self.fields.iter().find(|f| f.name == name).expect("field in table").clone();
            let (row, col) = (i / self.width, i % self.width);
            let at = (row * self.row_step + col * self.point_step + f.offset) as usize;
            let be = self.big_endian;
            macro_rules! b {
                ($v:expr) => {
                    if be {
                        $v.to_be_bytes().to_vec()
                    } else {
                        $v.to_le_bytes().to_vec()
                    }
                };
            }
            let bytes = match f.datatype {
                PointField::INT8 => b!(v as i8),
                U8 => b!(v as u8),
                PointField::INT16 => b!(v as i16),
                U16 => b!(v as u16),
                PointField::INT32 => b!(v as i32),
                U32 => b!(v as u32),
                F32 => b!(v as f32),
                F64 => b!(v),
                other => panic!("test wrote unknown datatype {other}"),
            };
            self.data[at..at + bytes.len()].copy_from_slice(&bytes);
        }

        fn set_xyzi(&mut self, i: u32, [x, y, z, intensity]: [f64; 4]) {
            self.set(i, "x", x);
            self.set(i, "y", y);
            self.set(i, "z", z);
            self.set(i, "intensity", intensity);
        }

        fn layout(&self) -> CloudLayout<'_> {
            CloudLayout {
                height: self.height,
                width: self.width,
                fields: &self.fields,
                is_bigendian: self.big_endian,
                point_step: self.point_step,
                row_step: self.row_step,
                data: &self.data,
                is_dense: self.dense,
            }
        }

        fn decode(&self) -> Result<(Points, DecodeReport), CloudError> {
            decode(&self.layout())
        }
    }

    fn ok(msg: &Msg) -> (Points, DecodeReport) {
        msg.decode().expect("valid test cloud decodes")
    }

    /// Three points whose coordinates say which point they are.
    fn sample(i: u32) -> [f64; 4] {
        let f = f64::from(i);
        [1.0 + f, -2.0 - f, 0.5 * f, 10.0 * f + 3.0]
    }

    fn assert_sample(p: &Points, n: u32) {
        assert_eq!(p.len(), n as usize);
        for i in 0..n {
            let [x, y, z, it] = sample(i).map(|v| v as f32);
            assert_eq!(p.get(i as usize).map(|q| [q.x, q.y, q.z, q.intensity]), Some([x, y, z, it]), "point {i}");
        }
    }

    #[test]
    fn standard_f32_xyzi() {
        let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12)], 16, 3, 1);
        (0..3).for_each(|i| m.set_xyzi(i, sample(i)));
        let (p, r) = ok(&m);
        assert_sample(&p, 3);
        assert_eq!(r, DecodeReport { points_in: 3, non_finite: 0, time_origin_s: 0.0 });
        assert!(p.ring.is_none() && p.time.is_none());
    }

    #[test]
    fn f64_xyz_in_any_order_with_f64_intensity() {
        let mut m = Msg::new(&[("intensity", F64, 0), ("z", F64, 8), ("x", F64, 16), ("y", F64, 24)], 32, 3, 1);
        (0..3).for_each(|i| m.set_xyzi(i, sample(i)));
        assert_sample(&ok(&m).0, 3);
    }

    #[test]
    fn mixed_f32_and_f64_coordinates() {
        let mut m = Msg::new(&[("x", F64, 0), ("y", F32, 8), ("z", F32, 12), ("intensity", F32, 16)], 20, 3, 1);
        (0..3).for_each(|i| m.set_xyzi(i, sample(i)));
        assert_sample(&ok(&m).0, 3);
    }

    #[test]
    fn integer_intensity_is_its_value() {
        for (dt, v) in [(U8, 200.0), (U16, 40_000.0)] {
            let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", dt, 12)], 16, 1, 1);
            m.set_xyzi(0, [1.0, 2.0, 3.0, v]);
            assert_eq!(ok(&m).0.intensity, vec![v as f32], "datatype {dt}");
        }
    }

    #[test]
    fn reflectance_is_an_intensity_alias_and_intensity_wins() {
        let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("reflectance", F32, 12)], 16, 1, 1);
        m.set(0, "reflectance", 0.25);
        assert_eq!(ok(&m).0.intensity, vec![0.25]);

        let fields = [("reflectance", F32, 0), ("x", F32, 4), ("y", F32, 8), ("z", F32, 12), ("intensity", U8, 16)];
        let mut m = Msg::new(&fields, 17, 1, 1);
        m.set(0, "reflectance", 0.25);
        m.set(0, "intensity", 7.0);
        assert_eq!(ok(&m).0.intensity, vec![7.0]);
    }

    #[test]
    fn missing_intensity_gives_zeros() {
        for dt in [F32, F64] {
            let s = if dt == F32 { 4 } else { 8 };
            let mut m = Msg::new(&[("x", dt, 0), ("y", dt, s), ("z", dt, 2 * s)], 3 * s, 2, 1);
            m.set(1, "z", 5.0);
            let p = ok(&m).0;
            assert_eq!(p.intensity, vec![0.0, 0.0]);
            assert_eq!(p.z, vec![0.0, 5.0]);
        }
    }

    #[test]
    fn ring_as_u8_and_u16() {
        for (dt, v) in [(U8, 31.0), (U16, 127.0)] {
            let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("ring", dt, 12)], 16, 2, 1);
            m.set(1, "ring", v);
            assert_eq!(ok(&m).0.ring, Some(vec![0, v as u16]));
        }
    }

    #[test]
    fn velodyne_layout_with_ring_and_f32_time() {
        let fields =
            [("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12), ("ring", U16, 16), ("time", F32, 18)];
        let mut m = Msg::new(&fields, 22, 3, 1);
        for i in 0..3 {
            m.set_xyzi(i, sample(i));
            m.set(i, "ring", f64::from(i + 5));
            m.set(i, "time", -0.1 + 0.01 * f64::from(i));
        }
        let (p, r) = ok(&m);
        assert_sample(&p, 3);
        assert_eq!(p.ring, Some(vec![5, 6, 7]));
        assert_eq!(p.time, Some(vec![-0.1, -0.09, -0.08]));
        assert_eq!(r.time_origin_s, 0.0);
    }

    #[test]
    fn ouster_t_nanoseconds_become_seconds() {
        let fields = [("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 16), ("t", U32, 20)];
        let mut m = Msg::new(&fields, 48, 2, 1);
        m.set(0, "t", 0.0);
        m.set(1, "t", 50_000_000.0);
        let (p, r) = ok(&m);
        assert_eq!(p.time, Some(vec![0.0, 0.05]));
        assert_eq!(r.time_origin_s, 0.0);
    }

    #[test]
    fn f64_timestamps_are_rebased_on_the_first_point() {
        let fields = [("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12), ("timestamp", F64, 16)];
        let mut m = Msg::new(&fields, 24, 3, 1);
        let t0 = 1_700_000_000.123_456;
        (0..3).for_each(|i| m.set(i, "timestamp", t0 + 0.001 * f64::from(i)));
        let (p, r) = ok(&m);
        assert_eq!(r.time_origin_s, t0);
        let t = p.time.expect("time channel");
        for (i, got) in t.iter().enumerate() {
            assert!((f64::from(*got) - 0.001 * i as f64).abs() < 1e-6, "point {i}: {got}");
        }
    }

    #[test]
    fn time_field_priority_is_time_then_t_then_timestamp() {
        let fields =
            [("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("timestamp", F64, 12), ("t", U32, 20), ("time", F32, 24)];
        let mut m = Msg::new(&fields, 28, 1, 1);
        m.set(0, "timestamp", 5.0);
        m.set(0, "t", 7.0);
        m.set(0, "time", 0.5);
        assert_eq!(ok(&m).0.time, Some(vec![0.5]));
        m.fields.retain(|f| f.name != "time");
        assert_eq!(ok(&m).0.time, Some(vec![7e-9]));
    }

    #[test]
    fn big_endian_every_datatype() {
        let fields =
            [("x", F64, 0), ("y", F32, 8), ("z", F64, 12), ("intensity", U16, 20), ("ring", U16, 22), ("t", U32, 24)];
        let mut m = Msg::new(&fields, 28, 3, 1).big_endian();
        for i in 0..3 {
            m.set_xyzi(i, sample(i));
            m.set(i, "ring", 300.0 + f64::from(i));
            m.set(i, "t", 1e6 * f64::from(i));
        }
        let p = ok(&m).0;
        assert_sample(&p, 3);
        assert_eq!(p.ring, Some(vec![300, 301, 302]));
        assert_eq!(p.time, Some(vec![0.0, 0.001, 0.002]));

        // Same bytes read as little endian must not silently agree.
        m.big_endian = false;
        assert_ne!(m.decode().map(|r| r.0.ring).ok(), Some(Some(vec![300, 301, 302])));

        let mut m =
            Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12)], 16, 3, 1).big_endian();
        (0..3).for_each(|i| m.set_xyzi(i, sample(i)));
        assert_sample(&ok(&m).0, 3);
    }

    #[test]
    fn padded_point_step() {
        let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 16)], 32, 3, 1);
        (0..3).for_each(|i| m.set_xyzi(i, sample(i)));
        m.data.iter_mut().skip(12).step_by(32).for_each(|b| *b = 0xAB); // garbage in the padding
        assert_sample(&ok(&m).0, 3);
    }

    #[test]
    fn organised_cloud_with_row_padding() {
        let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12)], 16, 3, 2)
            .with_row_step(3 * 16 + 8);
        (0..6).for_each(|i| m.set_xyzi(i, sample(i)));
        let (p, r) = ok(&m);
        assert_sample(&p, 6);
        assert_eq!(r.points_in, 6);

        // The last row's padding may be omitted, but no more than that.
        m.data.truncate(m.data.len() - 8);
        assert_sample(&ok(&m).0, 6);
        m.data.pop();
        assert!(matches!(m.decode(), Err(CloudError::DataTooShort { len: 103, needed: 104 })));
    }

    #[test]
    fn non_finite_points_are_dropped_and_counted_even_if_dense() {
        let mut m = Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12)], 16, 3, 2);
        (0..6).for_each(|i| m.set_xyzi(i, sample(i)));
        m.set(1, "x", f64::NAN);
        m.set(3, "y", f64::INFINITY);
        m.set(4, "z", f64::NEG_INFINITY);
        m.set(5, "intensity", f64::NAN); // intensity does not make a point invalid
        for dense in [false, true] {
            m.dense = dense;
            let (p, r) = ok(&m);
            assert_eq!(p.x, vec![1.0, 3.0, 6.0]);
            assert!(p.intensity[2].is_nan());
            assert_eq!((r.points_in, r.non_finite), (6, 3));
        }
    }

    #[test]
    fn f64_beyond_f32_range_counts_as_non_finite() {
        let mut m = Msg::new(&[("x", F64, 0), ("y", F64, 8), ("z", F64, 16)], 24, 2, 1);
        m.set(0, "x", 1e300);
        let (p, r) = ok(&m);
        assert_eq!((p.len(), r.non_finite), (1, 1));
    }

    #[test]
    fn unknown_fields_are_ignored_whatever_their_type() {
        let fields =
            [("rgb", F32, 0), ("x", F32, 4), ("label", 99, 8), ("y", F32, 12), ("z", F32, 16), ("intensity", F32, 20)];
        let mut m = Msg::new(&fields, 24, 3, 1);
        m.fields.push(PointField { name: "normals".into(), offset: 1000, datatype: 0, count: 3 });
        (0..3).for_each(|i| m.set_xyzi(i, sample(i)));
        assert_sample(&ok(&m).0, 3);
    }

    #[test]
    fn empty_clouds_decode_to_nothing() {
        let m = Msg::new(&[], 0, 0, 0);
        let (p, r) = ok(&m);
        assert!(p.is_empty());
        assert_eq!(r, DecodeReport::default());
        let m = Msg::new(&[("x", F32, 0)], 4, 10, 0);
        assert!(ok(&m).0.is_empty());
    }

    // --- malformed messages -------------------------------------------------

    fn xyz_f32() -> Msg {
        Msg::new(&[("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12)], 16, 2, 1)
    }

    #[test]
    fn missing_coordinates() {
        for name in ["x", "y", "z"] {
            let mut m = xyz_f32();
            m.fields.retain(|f| f.name != name);
            let err = m.decode().expect_err("must fail");
            assert!(matches!(err, CloudError::MissingField(n) if n == name), "{err}");
            assert!(err.to_string().contains(&format!("`{name}`")));
        }
    }

    #[test]
    fn field_beyond_point_step() {
        let mut m = xyz_f32();
        m.fields[2].offset = 13;
        assert!(matches!(
            m.decode(),
            Err(CloudError::FieldOutOfBounds { ref field, offset: 13, size: 4, point_step: 16 }) if field == "z"
        ));
        let mut m = xyz_f32();
        m.fields[3].datatype = F64; // 12 + 8 > 16
        assert!(matches!(m.decode(), Err(CloudError::FieldOutOfBounds { size: 8, .. })));
        let mut m = xyz_f32();
        m.fields[0].offset = u32::MAX;
        assert!(matches!(m.decode(), Err(CloudError::FieldOutOfBounds { .. })));
    }

    #[test]
    fn unsupported_datatypes() {
        for dt in [0, PointField::INT8, U8, PointField::INT16, U16, PointField::INT32, U32, 9, 255] {
            let mut m = xyz_f32();
            m.fields[1].datatype = dt;
            assert!(
                matches!(m.decode(), Err(CloudError::UnsupportedDatatype { ref field, datatype }) if field == "y" && datatype == dt),
                "datatype {dt}"
            );
        }
        let mut m = xyz_f32();
        m.fields[3].datatype = PointField::INT32;
        assert!(matches!(m.decode(), Err(CloudError::UnsupportedDatatype { ref field, .. }) if field == "intensity"));
        m.fields[3] = PointField::new("ring", 12, F32);
        assert!(matches!(m.decode(), Err(CloudError::UnsupportedDatatype { ref field, .. }) if field == "ring"));
    }

    #[test]
    fn count_must_be_one() {
        for count in [0, 2, 3] {
            let mut m = xyz_f32();
            m.fields[0].count = count;
            assert!(
                matches!(m.decode(), Err(CloudError::BadFieldCount { ref field, count: c }) if field == "x" && c == count)
            );
        }
    }

    #[test]
    fn row_step_smaller_than_a_row() {
        let mut m = xyz_f32();
        m.row_step = 31;
        assert!(matches!(m.decode(), Err(CloudError::RowStepTooSmall { row_step: 31, width: 2, point_step: 16 })));
    }

    #[test]
    fn data_shorter_than_layout() {
        let mut m = xyz_f32();
        m.data.truncate(31);
        assert!(matches!(m.decode(), Err(CloudError::DataTooShort { len: 31, needed: 32 })));
        m.data.clear();
        assert!(matches!(m.decode(), Err(CloudError::DataTooShort { len: 0, needed: 32 })));
    }

    #[test]
    fn zero_point_step_with_points() {
        let mut m = xyz_f32();
        m.point_step = 0;
        assert!(matches!(m.decode(), Err(CloudError::ZeroPointStep { width: 2 })));
    }

    #[test]
    fn huge_sizes_fail_cleanly_without_allocating() {
        let mut m = xyz_f32();
        (m.width, m.height, m.point_step, m.row_step) = (u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        assert!(matches!(m.decode(), Err(CloudError::RowStepTooSmall { .. })));
        (m.width, m.point_step) = (1, 16);
        assert!(
            matches!(m.decode(), Err(CloudError::DataTooShort { needed, .. }) if needed == u64::from(u32::MAX - 1) * u64::from(u32::MAX) + 16)
        );
        (m.width, m.height, m.row_step) = (u32::MAX / 16, 1, u32::MAX);
        assert!(matches!(m.decode(), Err(CloudError::DataTooShort { .. })));
    }

    /// xorshift64: deterministic and dependency-free randomness for the fuzz loop.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// Mostly small values (realistic layouts), sometimes extremes.
        fn size(&mut self) -> u32 {
            match self.below(8) {
                0 => u32::MAX - self.below(4) as u32,
                1 => self.next() as u32,
                _ => self.below(48) as u32,
            }
        }
    }

    #[test]
    fn fuzzed_messages_never_panic() {
        let fields =
            [("x", F32, 0), ("y", F32, 4), ("z", F32, 8), ("intensity", F32, 12), ("ring", U16, 16), ("time", F32, 20)];
        let mut base = Msg::new(&fields, 24, 4, 3).with_row_step(100);
        for i in 0..12 {
            base.set_xyzi(i, sample(i));
            base.set(i, "ring", f64::from(i));
            base.set(i, "time", f64::from(i) * 1e-3);
        }
        let names = ["x", "y", "z", "intensity", "reflectance", "ring", "time", "t", "timestamp", "rgb", ""];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut oks, mut errs) = (0, 0);
        for _ in 0..2_000 {
            let mut m = base.clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(7) {
                    0 => {
                        for _ in 0..1 + rng.below(16) {
                            let i = rng.below(m.data.len() as u64) as usize;
                            m.data[i] = rng.next() as u8;
                        }
                    }
                    1 => m.data.truncate(rng.below(m.data.len() as u64 + 1) as usize),
                    2 => m.point_step = rng.size(),
                    3 => m.row_step = rng.size(),
                    4 => (m.width, m.height) = (rng.size(), rng.size()),
                    5 => m.big_endian = !m.big_endian,
                    _ => {
                        m.fields = (0..rng.below(8))
                            .map(|_| PointField {
                                name: names[rng.below(names.len() as u64) as usize].into(),
                                offset: rng.size(),
                                datatype: rng.below(11) as u8,
                                count: rng.below(3) as u32,
                            })
                            .collect()
                    }
                }
            }
            match m.decode() {
                Ok((p, r)) => {
                    oks += 1;
                    assert_eq!(p.len() + r.non_finite, r.points_in);
                    assert_eq!(p.y.len(), p.len());
                    assert_eq!(p.z.len(), p.len());
                    assert_eq!(p.intensity.len(), p.len());
                    assert!(p.ring.as_ref().is_none_or(|v| v.len() == p.len()));
                    assert!(p.time.as_ref().is_none_or(|v| v.len() == p.len()));
                    assert!(p.x.iter().chain(&p.y).chain(&p.z).all(|v| v.is_finite()));
                }
                Err(e) => {
                    errs += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        // Both outcomes must be exercised, or the loop is testing nothing.
        assert!(oks > 100 && errs > 100, "ok {oks}, err {errs}");
    }

    // --- real data ----------------------------------------------------------

    #[test]
    fn kitti_cloud_round_trips_through_pointcloud2() {
        let Some(dir) = kitti_dir() else { return };
        let pts = kitti_bin::read(dir.join("000008.bin")).expect("read KITTI cloud");
        assert_eq!(pts.len(), 17_238);

        let (fields, step, data) = encode_xyzi(&pts);
        assert_eq!((step, data.len()), (16, 17_238 * 16));
        let layout = CloudLayout {
            height: 1,
            width: pts.len() as u32,
            fields: &fields,
            is_bigendian: false,
            point_step: step,
            row_step: data.len() as u32,
            data: &data,
            is_dense: true,
        };
        let (back, report) = decode(&layout).expect("decode encoded KITTI cloud");
        assert_eq!(report, DecodeReport { points_in: 17_238, non_finite: 0, time_origin_s: 0.0 });
        assert_eq!(back, pts);
    }

    #[test]
    fn encode_with_ring_and_time_round_trips() {
        let mut pts = Points::with_capacity(3, true, true);
        for i in 0..3u16 {
            let f = f32::from(i);
            pts.push(Point { x: f, y: -f, z: 0.5, intensity: 9.0, ring: i + 1, time: f * 1e-3 });
        }
        let (fields, step, data) = encode_xyzi(&pts);
        assert_eq!(step, 24);
        assert_eq!(
            fields.iter().map(|f| (f.name.as_str(), f.offset)).collect::<Vec<_>>(),
            [("x", 0), ("y", 4), ("z", 8), ("intensity", 12), ("ring", 16), ("time", 20)]
        );
        let layout = CloudLayout {
            height: 1,
            width: 3,
            fields: &fields,
            is_bigendian: false,
            point_step: step,
            row_step: 72,
            data: &data,
            is_dense: true,
        };
        assert_eq!(decode(&layout).expect("decode").0, pts);

        pts.ring = None;
        let (fields, step, _) = encode_xyzi(&pts);
        assert_eq!((step, fields[4].name.as_str(), fields[4].offset), (20, "time", 16));
    }
}
