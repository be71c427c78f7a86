//! `sensor_msgs/Image` and `sensor_msgs/CompressedImage` decoding without ROS types.
//!
//! Camera drivers publish many pixel formats; perception consumes one packed
//! 8-bit RGB image ([`RgbImage`]), so the conversion lives here, once, for the
//! ROS adapter and the bag reader alike.
//!
//! # Encodings
//!
//! The ROS names `rgb8`, `bgr8`, `rgba8`, `bgra8`, `mono8`, `mono16` are
//! understood, plus the OpenCV type names that `cv_bridge` users publish:
//! `8UC1` = mono8, `16UC1` = mono16 and `8UC3` = bgr8 (OpenCV stores colour
//! as BGR). Alpha is dropped; mono is replicated into R, G and B.
//!
//! `mono16` (depth, IR, HDR cameras) is mapped to 8 bits by min-max
//! normalisation over the frame, `round((v - min) * 255 / (max - min))`, so
//! that a depth or IR image that uses a narrow part of the 16-bit range is
//! still visible; a constant frame becomes black. 16-bit samples honour
//! `is_bigendian`; it is irrelevant for 8-bit encodings.
//!
//! JPEG and PNG payloads of `CompressedImage` decode to the same
//! [`RgbImage`] through [`decode_compressed`] (see [`compressed`]).

use std::str::FromStr;

pub mod compressed;
pub use compressed::decode_compressed;

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("unsupported image encoding `{0}`")]
    UnsupportedEncoding(String),
    #[error("image is empty ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("image step {step} is smaller than a row of {needed} bytes")]
    StepTooSmall { step: u32, needed: u64 },
    #[error("image data has {len} bytes but its layout needs {needed}")]
    DataTooShort { len: usize, needed: u64 },
    #[error("expected a {expected:?} image, got {found:?}")]
    WrongEncoding { expected: Encoding, found: Encoding },
    #[error("image size does not fit in memory addresses on this platform")]
    SizeOverflow,
    #[error("unsupported CompressedImage format {format:?}: {reason}")]
    UnsupportedCompressedFormat { format: String, reason: &'static str },
    #[error("CompressedImage format says {declared} but the data is {found}")]
    CodecMismatch { declared: &'static str, found: &'static str },
    #[error("CompressedImage format says {declared} but the {len} data bytes do not start with its signature")]
    NotCompressed { declared: &'static str, len: usize },
    #[error("{width}x{height} image exceeds the limit of {max_pixels} pixels")]
    TooLarge { width: u32, height: u32, max_pixels: u64 },
    #[error("{codec} data could not be decoded: {source}")]
    CompressedDecode {
        codec: &'static str,
        #[source]
        source: ::image::ImageError,
    },
    #[error("decoded image is {decoded:?}, its header said {header:?}")]
    SizeChanged { header: (u32, u32), decoded: (u32, u32) },
}

/// The pixel formats [`decode_rgb`] understands (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Mono8,
    Mono16,
}

impl Encoding {
    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            Self::Mono8 => 1,
            Self::Mono16 => 2,
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
        }
    }
}

impl FromStr for Encoding {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, ImageError> {
        Ok(match s {
            "rgb8" => Self::Rgb8,
            "bgr8" | "8UC3" => Self::Bgr8,
            "rgba8" => Self::Rgba8,
            "bgra8" => Self::Bgra8,
            "mono8" | "8UC1" => Self::Mono8,
            "mono16" | "16UC1" => Self::Mono16,
            other => return Err(ImageError::UnsupportedEncoding(crate::log_limit::printable(other))),
        })
    }
}

/// The parts of a `sensor_msgs/Image` that describe its pixels, borrowed from
/// wherever the message lives.
#[derive(Debug, Clone, Copy)]
pub struct ImageLayout<'a> {
    pub height: u32,
    pub width: u32,
    pub encoding: &'a str,
    pub is_bigendian: bool,
    pub step: u32,
    pub data: &'a [u8],
}

/// Packed 8-bit RGB, row-major, no padding: `data.len() == width * height * 3`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data.get(i..i + 3)?.try_into().ok()
    }
}

/// Decodes any supported encoding to packed RGB.
pub fn decode_rgb(layout: &ImageLayout) -> Result<RgbImage, ImageError> {
    let encoding: Encoding = layout.encoding.parse()?;
    let rows = Rows::check(layout, encoding)?;
    let out_row = rows.width * 3;
    let mut data = vec![0u8; out_row * rows.height];

    // Per-encoding loops over whole rows: the per-pixel work is a byte
    // shuffle, so keeping the match outside the loops is what makes it fast.
    let pairs = data.chunks_exact_mut(out_row).zip(rows.iter());
    match encoding {
        Encoding::Rgb8 => pairs.for_each(|(o, i)| o.copy_from_slice(i)),
        Encoding::Bgr8 => pairs.for_each(|(o, i)| shuffle::<3>(o, i, [2, 1, 0])),
        Encoding::Rgba8 => pairs.for_each(|(o, i)| shuffle::<4>(o, i, [0, 1, 2])),
        Encoding::Bgra8 => pairs.for_each(|(o, i)| shuffle::<4>(o, i, [2, 1, 0])),
        Encoding::Mono8 => pairs.for_each(|(o, i)| {
            o.chunks_exact_mut(3).zip(i).for_each(|(px, &v)| px.fill(v));
        }),
        Encoding::Mono16 => {
            let raw = mono16_samples(&rows, layout.is_bigendian);
            let (lo, hi) = raw.iter().fold((u16::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let range = u32::from(hi.saturating_sub(lo));
            for (px, &v) in data.chunks_exact_mut(3).zip(&raw) {
                let scaled = (u32::from(v.saturating_sub(lo)) * 255 + range / 2).checked_div(range).unwrap_or(0);
                px.fill(u8::try_from(scaled).unwrap_or(u8::MAX));
            }
        }
    }
    Ok(RgbImage { width: layout.width, height: layout.height, data })
}

/// The raw 16-bit samples of a mono16 image, row-major without padding, for
/// consumers (depth) that need more than the 8-bit view.
pub fn decode_mono16(layout: &ImageLayout) -> Result<Vec<u16>, ImageError> {
    let encoding: Encoding = layout.encoding.parse()?;
    if encoding != Encoding::Mono16 {
        return Err(ImageError::WrongEncoding { expected: Encoding::Mono16, found: encoding });
    }
    let rows = Rows::check(layout, encoding)?;
    Ok(mono16_samples(&rows, layout.is_bigendian))
}

/// Copies pixel `N`-byte groups of `input` into RGB triples of `out`, taking
/// the source bytes named by `order`.
#[inline(always)]
fn shuffle<const N: usize>(out: &mut [u8], input: &[u8], order: [usize; 3]) {
    for (o, i) in out.chunks_exact_mut(3).zip(input.chunks_exact(N)) {
        for (dst, &src) in o.iter_mut().zip(&order) {
            *dst = i.get(src).copied().unwrap_or(0);
        }
    }
}

fn mono16_samples(rows: &Rows, big_endian: bool) -> Vec<u16> {
    let mut out = Vec::with_capacity(rows.width * rows.height);
    for row in rows.iter() {
        out.extend(row.chunks_exact(2).map(|b| {
            let b = [b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        }));
    }
    out
}

/// The validated row geometry of an image.
struct Rows<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    step: usize,
    row_len: usize,
}

impl<'a> Rows<'a> {
    /// Checks that `data` holds `(height - 1) * step + width * bpp` bytes (the
    /// last row's padding may be omitted, as nothing is read from it).
    fn check(layout: &ImageLayout<'a>, encoding: Encoding) -> Result<Self, ImageError> {
        if layout.width == 0 || layout.height == 0 {
            return Err(ImageError::Empty { width: layout.width, height: layout.height });
        }
        // u32 x u32 fits in u64; only the sum needs checking.
        let row_len = u64::from(layout.width) * u64::from(encoding.bytes_per_pixel());
        if u64::from(layout.step) < row_len {
            return Err(ImageError::StepTooSmall { step: layout.step, needed: row_len });
        }
        let needed = (u64::from(layout.height) - 1)
            .checked_mul(u64::from(layout.step))
            .and_then(|b| b.checked_add(row_len))
            .ok_or(ImageError::SizeOverflow)?;
        let len = layout.data.len();
        if u64::try_from(len).is_ok_and(|len| len < needed) {
            return Err(ImageError::DataTooShort { len, needed });
        }
        let size = |v: u64| usize::try_from(v).map_err(|_| ImageError::SizeOverflow);
        Ok(Self {
            data: layout.data,
            width: size(layout.width.into())?,
            height: size(layout.height.into())?,
            step: size(layout.step.into())?,
            row_len: size(row_len)?,
        })
    }

    /// Each row's pixel bytes, padding excluded. Sizes were checked, so the
    /// `get` never fails; it only keeps the code free of panicking indexing.
    fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.height).filter_map(move |r| self.data.get(r * self.step..r * self.step + self.row_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout<'a>(encoding: &'a str, step: u32, data: &'a [u8]) -> ImageLayout<'a> {
        ImageLayout { height: 2, width: 3, encoding, is_bigendian: false, step, data }
    }

    /// The 3x2 test picture as RGB: red, green, blue / white, black, grey.
    const RGB: [[u8; 3]; 6] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [10, 20, 30]];

    fn pixels(img: &RgbImage) -> Vec<[u8; 3]> {
        (0..img.height).flat_map(|y| (0..img.width).map(move |x| (x, y))).filter_map(|(x, y)| img.pixel(x, y)).collect()
    }

    /// The test picture in `encoding`, each row followed by `pad` junk bytes.
    fn picture(order: &[usize], alpha: bool, pad: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for row in RGB.chunks(3) {
            for px in row {
                data.extend(order.iter().map(|&c| px[c]));
                if alpha {
                    data.push(128);
                }
            }
            data.extend(std::iter::repeat_n(0xEE, pad));
        }
        data
    }

    #[test]
    fn colour_encodings_come_out_as_rgb() {
        for (enc, order, alpha) in [
            ("rgb8", [0, 1, 2], false),
            ("bgr8", [2, 1, 0], false),
            ("8UC3", [2, 1, 0], false),
            ("rgba8", [0, 1, 2], true),
            ("bgra8", [2, 1, 0], true),
        ] {
            let bpp = if alpha { 4 } else { 3 };
            let data = picture(&order, alpha, 0);
            let img = decode_rgb(&layout(enc, 3 * bpp, &data)).expect(enc);
            assert_eq!((img.width, img.height, img.data.len()), (3, 2, 18), "{enc}");
            assert_eq!(pixels(&img), RGB, "{enc}");
        }
    }

    #[test]
    fn mono8_is_replicated() {
        for enc in ["mono8", "8UC1"] {
            let data = [0, 100, 255, 1, 2, 3];
            let img = decode_rgb(&layout(enc, 3, &data)).expect(enc);
            assert_eq!(pixels(&img), data.map(|v| [v; 3]), "{enc}");
        }
    }

    #[test]
    fn mono16_is_min_max_normalised() {
        let samples: [u16; 6] = [1000, 1100, 1200, 1300, 1400, 1500];
        let data: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        for enc in ["mono16", "16UC1"] {
            let img = decode_rgb(&layout(enc, 6, &data)).expect(enc);
            assert_eq!(pixels(&img), [0u8, 51, 102, 153, 204, 255].map(|v| [v; 3]), "{enc}");
            assert_eq!(decode_mono16(&layout(enc, 6, &data)).expect(enc), samples);
        }
        let flat = [7u8, 7].repeat(6);
        assert!(decode_rgb(&layout("mono16", 6, &flat)).expect("flat").data.iter().all(|&v| v == 0));
    }

    #[test]
    fn big_endian_mono16() {
        let samples: [u16; 6] = [0x0102, 0x0304, 0, 0xFFFF, 0x8000, 1];
        let data: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
        let l = ImageLayout { is_bigendian: true, ..layout("mono16", 6, &data) };
        assert_eq!(decode_mono16(&l).expect("be"), samples);
        let img = decode_rgb(&l).expect("be rgb");
        assert_eq!(img.pixel(2, 0), Some([0; 3]));
        assert_eq!(img.pixel(0, 1), Some([255; 3]));
        assert_eq!(img.pixel(1, 1), Some([128; 3])); // 0x8000 * 255 / 0xFFFF rounds to 128
    }

    #[test]
    fn step_padding_is_skipped() {
        let data = picture(&[2, 1, 0], false, 5);
        let img = decode_rgb(&layout("bgr8", 14, &data)).expect("padded");
        assert_eq!(pixels(&img), RGB);
        // The last row's padding may be missing; one byte less is an error.
        let trimmed = &data[..data.len() - 5];
        assert_eq!(pixels(&decode_rgb(&layout("bgr8", 14, trimmed)).expect("trimmed")), RGB);
        let short = &data[..data.len() - 6];
        assert!(matches!(
            decode_rgb(&layout("bgr8", 14, short)),
            Err(ImageError::DataTooShort { len: 22, needed: 23 })
        ));

        let mut data: Vec<u8> = [1u16, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        data.extend([0xEE, 0xEE]);
        data.extend([4u16, 5, 6].iter().flat_map(|v| v.to_le_bytes()));
        assert_eq!(decode_mono16(&layout("mono16", 8, &data)).expect("padded mono16"), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn unsupported_encoding() {
        for enc in ["yuv422", "bayer_rggb8", "RGB8", "32FC1", ""] {
            let err = decode_rgb(&layout(enc, 9, &[0; 18])).expect_err(enc);
            assert!(matches!(&err, ImageError::UnsupportedEncoding(e) if e == enc), "{err}");
        }
    }

    #[test]
    fn mono16_decode_rejects_other_encodings() {
        assert!(matches!(
            decode_mono16(&layout("mono8", 3, &[0; 6])),
            Err(ImageError::WrongEncoding { expected: Encoding::Mono16, found: Encoding::Mono8 })
        ));
    }

    #[test]
    fn malformed_geometry() {
        assert!(matches!(
            decode_rgb(&layout("rgb8", 9, &[0; 17])),
            Err(ImageError::DataTooShort { len: 17, needed: 18 })
        ));
        assert!(matches!(
            decode_rgb(&layout("rgb8", 8, &[0; 18])),
            Err(ImageError::StepTooSmall { step: 8, needed: 9 })
        ));
        let empty = ImageLayout { width: 0, ..layout("rgb8", 9, &[0; 18]) };
        assert!(matches!(decode_rgb(&empty), Err(ImageError::Empty { width: 0, height: 2 })));
        let empty = ImageLayout { height: 0, ..layout("mono16", 9, &[]) };
        assert!(matches!(decode_mono16(&empty), Err(ImageError::Empty { .. })));
        let huge = ImageLayout { width: u32::MAX, height: u32::MAX, step: u32::MAX, ..layout("mono8", 0, &[0; 18]) };
        assert!(matches!(decode_rgb(&huge), Err(ImageError::DataTooShort { .. })));
        let huge = ImageLayout { width: u32::MAX, height: u32::MAX, step: u32::MAX, ..layout("rgba8", 0, &[0; 18]) };
        assert!(matches!(decode_rgb(&huge), Err(ImageError::StepTooSmall { .. })));
    }

    #[test]
    fn pixel_outside_is_none() {
        let img = RgbImage { width: 1, height: 1, data: vec![1, 2, 3] };
        assert_eq!(img.pixel(0, 0), Some([1, 2, 3]));
        assert_eq!(img.pixel(1, 0), None);
        assert_eq!(img.pixel(0, 1), None);
    }
}
