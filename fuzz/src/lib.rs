//! One function per fuzz target: what the node does with bytes from outside.
//!
//! Each function takes the fuzzer's raw input and must return without
//! panicking, whatever the input; errors are the expected answer to bad
//! input. The fuzz targets in `fuzz_targets/` call these functions, and the
//! test suite (`tests/fuzz_corpora.rs`) replays the committed corpora through
//! the same functions, so a crash found once stays fixed.
//!
//! Structured inputs (a PointCloud2 layout, an Image layout, a CameraInfo)
//! are read with `arbitrary`'s `Unstructured` so the fuzzer explores field tables and sizes
//! instead of spending its time on the CDR framing; the CDR and MCAP targets
//! take the bytes as they arrive.

use arbitrary::{Arbitrary, Result, Unstructured};
use eloss_perception::bag::messages::{CameraInfo, Image, PointCloud2, RosMessage};
use eloss_perception::bag::tf::TFMessage;
use eloss_perception::camera::{CameraInfoLayout, PinholeCamera};
use eloss_perception::cloud::pointcloud2::{self, CloudLayout, PointField};
use eloss_perception::image::{self, ImageLayout};

/// Pixel limit for compressed images, as the node's default (a 4K frame fits).
pub const MAX_COMPRESSED_PIXELS: u64 = 4096 * 3072;

/// Field names the PointCloud2 decoder looks for, and one it ignores.
const FIELD_NAMES: [&str; 10] = ["x", "y", "z", "intensity", "reflectance", "ring", "time", "t", "timestamp", "rgb"];
/// Encodings the Image decoder knows, and one it does not.
const ENCODINGS: [&str; 10] = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "16UC1", "8UC3", "yuv422"];
/// CompressedImage formats as drivers write them.
const FORMATS: [&str; 6] = ["jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8", "", "tiff"];

struct CloudInput {
    height: u32,
    width: u32,
    fields: Vec<PointField>,
    is_bigendian: bool,
    point_step: u32,
    row_step: u32,
    is_dense: bool,
    data: Vec<u8>,
}

impl CloudInput {
    fn take(mut u: Unstructured<'_>) -> Result<Self> {
        let n_fields = u.int_in_range(0..=12)?;
        let mut fields = Vec::with_capacity(n_fields);
        for _ in 0..n_fields {
            let name = match u.ratio(1, 16)? {
                true => String::arbitrary(&mut u)?,
                false => (*u.choose(&FIELD_NAMES)?).to_owned(),
            };
            fields.push(PointField { name, offset: u.arbitrary()?, datatype: u.arbitrary()?, count: u.arbitrary()? });
        }
        Ok(Self {
            height: u.arbitrary()?,
            width: u.arbitrary()?,
            fields,
            is_bigendian: u.arbitrary()?,
            point_step: u.arbitrary()?,
            row_step: u.arbitrary()?,
            is_dense: u.arbitrary()?,
            data: u.take_rest().to_vec(),
        })
    }
}

/// `sensor_msgs/PointCloud2` decoding (`cloud::pointcloud2::decode`).
pub fn pointcloud2(bytes: &[u8]) {
    let Ok(input) = CloudInput::take(Unstructured::new(bytes)) else { return };
    let layout = CloudLayout {
        height: input.height,
        width: input.width,
        fields: &input.fields,
        is_bigendian: input.is_bigendian,
        point_step: input.point_step,
        row_step: input.row_step,
        data: &input.data,
        is_dense: input.is_dense,
    };
    if let Ok((points, report)) = pointcloud2::decode(&layout) {
        // every point is read from at least 4 bytes of its own (x, y, z lie
        // inside point_step, rows do not overlap): the output is bounded by
        // the input, whatever height and width claim
        assert!(points.len() <= report.points_in);
        assert!(points.len() <= input.data.len() / 4, "{} points from {} bytes", points.len(), input.data.len());
    }
}

struct ImageInput {
    height: u32,
    width: u32,
    encoding: String,
    is_bigendian: bool,
    step: u32,
    data: Vec<u8>,
}

impl ImageInput {
    fn take(mut u: Unstructured<'_>) -> Result<Self> {
        let encoding = match u.ratio(1, 16)? {
            true => String::arbitrary(&mut u)?,
            false => (*u.choose(&ENCODINGS)?).to_owned(),
        };
        Ok(Self {
            height: u.arbitrary()?,
            width: u.arbitrary()?,
            encoding,
            is_bigendian: u.arbitrary()?,
            step: u.arbitrary()?,
            data: u.take_rest().to_vec(),
        })
    }
}

/// `sensor_msgs/Image` decoding (`image::decode_rgb`, `image::decode_mono16`).
pub fn image_raw(bytes: &[u8]) {
    let Ok(input) = ImageInput::take(Unstructured::new(bytes)) else { return };
    let layout = ImageLayout {
        height: input.height,
        width: input.width,
        encoding: &input.encoding,
        is_bigendian: input.is_bigendian,
        step: input.step,
        data: &input.data,
    };
    if let Ok(rgb) = image::decode_rgb(&layout) {
        assert_eq!(rgb.data.len() as u64, u64::from(rgb.width) * u64::from(rgb.height) * 3);
        // the output is never larger than what the input paid for (mono8: 1 byte in, 3 out)
        assert!(rgb.data.len() <= input.data.len() * 3);
    }
    let _ = image::decode_mono16(&layout);
}

/// `sensor_msgs/CompressedImage` decoding (`image::decode_compressed`): the
/// first byte picks a format string, the rest is the payload.
pub fn image_compressed(bytes: &[u8]) {
    let Some((&format, data)) = bytes.split_first() else { return };
    let format = FORMATS[usize::from(format) % FORMATS.len()];
    if let Ok(rgb) = image::decode_compressed(format, data, MAX_COMPRESSED_PIXELS) {
        assert!(u64::from(rgb.width) * u64::from(rgb.height) <= MAX_COMPRESSED_PIXELS);
    }
}

struct CameraInput {
    width: u32,
    height: u32,
    distortion_model: String,
    d: Vec<f64>,
    k: [f64; 9],
    r: [f64; 9],
    p: [f64; 12],
    points: Vec<[f64; 3]>,
}

impl CameraInput {
    fn take(mut u: Unstructured<'_>) -> Result<Self> {
        let distortion_model = match u.int_in_range(0u8..=4)? {
            0 => String::new(),
            1 => "plumb_bob".to_owned(),
            2 => "rational_polynomial".to_owned(),
            3 => "equidistant".to_owned(),
            _ => String::arbitrary(&mut u)?,
        };
        Ok(Self {
            width: u.arbitrary()?,
            height: u.arbitrary()?,
            distortion_model,
            d: u.arbitrary()?,
            k: u.arbitrary()?,
            r: u.arbitrary()?,
            p: u.arbitrary()?,
            points: Vec::arbitrary_take_rest(u)?,
        })
    }
}

/// `sensor_msgs/CameraInfo` validation and projection (`camera::PinholeCamera`).
pub fn camera_info(bytes: &[u8]) {
    let Ok(input) = CameraInput::take(Unstructured::new(bytes)) else { return };
    let layout = CameraInfoLayout {
        width: input.width,
        height: input.height,
        distortion_model: &input.distortion_model,
        d: &input.d,
        k: input.k,
        r: input.r,
        p: input.p,
    };
    if let Ok(camera) = PinholeCamera::from_camera_info(&layout) {
        for point in input.points.iter().take(64) {
            if let Some([u, v]) = camera.project(*point) {
                assert!(u.is_finite() && v.is_finite(), "projection of {point:?} gave ({u}, {v})");
            }
        }
    }
}

/// CDR payloads of every message type the bag reader and the node decode:
/// the first byte picks the type; decoded clouds, images and calibrations go
/// on through the same decoders the node uses.
pub fn cdr_messages(bytes: &[u8]) {
    let Some((&kind, cdr)) = bytes.split_first() else { return };
    match kind % 4 {
        0 => {
            if let Ok(msg) = PointCloud2::decode(cdr) {
                let layout = CloudLayout {
                    height: msg.height,
                    width: msg.width,
                    fields: &msg.fields,
                    is_bigendian: msg.is_bigendian,
                    point_step: msg.point_step,
                    row_step: msg.row_step,
                    data: &msg.data,
                    is_dense: msg.is_dense,
                };
                let _ = pointcloud2::decode(&layout);
            }
        }
        1 => {
            if let Ok(msg) = Image::decode(cdr) {
                let layout = ImageLayout {
                    height: msg.height,
                    width: msg.width,
                    encoding: &msg.encoding,
                    is_bigendian: msg.is_bigendian != 0,
                    step: msg.step,
                    data: &msg.data,
                };
                let _ = image::decode_rgb(&layout);
            }
        }
        2 => {
            if let Ok(msg) = CameraInfo::decode(cdr) {
                let layout = CameraInfoLayout {
                    width: msg.width,
                    height: msg.height,
                    distortion_model: &msg.distortion_model,
                    d: &msg.d,
                    k: msg.k,
                    r: msg.r,
                    p: msg.p,
                };
                let _ = PinholeCamera::from_camera_info(&layout);
            }
        }
        _ => {
            let _ = TFMessage::decode(cdr);
        }
    }
}

/// A whole MCAP file as `eloss replay` and the bag tools open it: summary,
/// topics, every message decoded as the type its channel declares.
pub fn mcap_bag(bytes: &[u8]) {
    use eloss_perception::bag::BagReader;
    let Ok(dir) = tempfile_dir() else { return };
    let path = dir.join("fuzz.mcap");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    if let Ok(reader) = BagReader::open(&path) {
        let _ = reader.topics();
        if let Ok(messages) = reader.messages() {
            for message in messages.take(10_000) {
                let Ok(message) = message else { continue };
                match message.type_name.as_str() {
                    PointCloud2::TYPE_NAME => drop(message.decode::<PointCloud2>()),
                    Image::TYPE_NAME => drop(message.decode::<Image>()),
                    CameraInfo::TYPE_NAME => drop(message.decode::<CameraInfo>()),
                    TFMessage::TYPE_NAME => drop(message.decode::<TFMessage>()),
                    _ => {}
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// A per-process scratch directory under the system temp dir.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("eloss_fuzz_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A GDC class bank file (`gdc.bank_path`, the generator's saved bank).
pub fn gdc_bank(bytes: &[u8]) {
    use eloss_perception::gdc::bank::GaussianBank;
    if let Ok(bank) = GaussianBank::from_bytes(bytes) {
        // a bank that loads must save again and load to the same classes
        let saved = bank.to_bytes().expect("a loaded bank saves");
        let again = GaussianBank::from_bytes(&saved).expect("a saved bank loads");
        assert_eq!(bank.classes().len(), again.classes().len());
    }
}

/// A KITTI calibration file (`camera.calib_file`), after the size and
/// file-type checks of `untrusted_file`.
pub fn kitti_calib(bytes: &[u8]) {
    use eloss_perception::dataset::kitti::calib::Calibration;
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Ok(calib) = Calibration::parse(text) {
        let _ = calib.lidar_to_cam([1.0, 2.0, 3.0]);
        let _ = calib.cam_to_lidar([1.0, 2.0, 3.0]);
    }
}
