//! `sensor_msgs/CompressedImage` decoding: JPEG and PNG payloads to the same
//! [`RgbImage`] the raw decoder returns.
//!
//! # Format strings
//!
//! Drivers write the codec alone (`jpeg`, `jpg`, `png`, any case);
//! `image_transport`'s `compressed` plugin writes
//! `<raw encoding>; <codec> compressed <buffer order>`, e.g.
//! `rgb8; jpeg compressed bgr8`, `bgr8; png compressed bgr8`,
//! `mono8; jpeg compressed ` or `16UC1; png compressed `. The buffer order
//! names the OpenCV buffer that was handed to the encoder; the file itself
//! is a standard JPEG/PNG either way, and the reference decoder
//! (`compressed_image_transport`) reads it as one, so colours come out as
//! the file stores them and the order is not used. `compressedDepth`
//! (a private header in front of a 16-bit PNG) is depth, not a camera
//! image, and is refused.
//!
//! # What comes out
//!
//! Colour images as RGB (alpha dropped; 16-bit colour scaled to 8 bits);
//! grey images replicated into R, G and B; 16-bit grey min-max normalised
//! exactly like the raw `mono16` decoder, so a raw and a PNG-compressed copy
//! of one image decode alike.
//!
//! # Bounds
//!
//! The payload's magic bytes must name the codec the format string names.
//! The header is read first and an image of more than `max_pixels` pixels
//! is refused before anything of its size is allocated; the decoder then
//! runs under an allocation limit derived from that size. Malformed or
//! truncated data gives an error, never a panic.

use super::{decode_rgb, ImageError, ImageLayout, RgbImage};
use ::image::{DynamicImage, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// The codecs a `CompressedImage` may carry here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Jpeg,
    Png,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
        }
    }

    /// The codec whose signature starts `data`, if any.
    pub fn sniff(data: &[u8]) -> Option<Self> {
        if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else {
            None
        }
    }
}

/// The (sender-chosen) format string is quoted back escaped and capped.
fn unsupported(format: &str, reason: &'static str) -> ImageError {
    ImageError::UnsupportedCompressedFormat { format: crate::log_limit::printable(format), reason }
}

/// The codec a `CompressedImage.format` string names (see the module docs).
pub fn parse_format(format: &str) -> Result<Codec, ImageError> {
    if format.contains("compressedDepth") {
        return Err(unsupported(format, "compressedDepth is a depth image, not a camera image"));
    }
    let codec_part = match format.split_once(';') {
        Some((_, rest)) => {
            let mut words = rest.split_whitespace();
            let codec = words.next();
            if words.next() != Some("compressed") {
                return Err(unsupported(format, "expected `<encoding>; <codec> compressed [<order>]`"));
            }
            codec.unwrap_or_default()
        }
        None => format.trim(),
    };
    match codec_part.to_ascii_lowercase().as_str() {
        "jpeg" | "jpg" => Ok(Codec::Jpeg),
        "png" => Ok(Codec::Png),
        "" => Err(unsupported(format, "no codec named (expected jpeg or png)")),
        _ => Err(unsupported(format, "only jpeg and png are supported")),
    }
}

/// Decodes a `CompressedImage` payload to packed RGB, refusing images of
/// more than `max_pixels` pixels before decoding them.
pub fn decode_compressed(format: &str, data: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let codec = parse_format(format)?;
    match Codec::sniff(data) {
        Some(found) if found == codec => {}
        Some(found) => return Err(ImageError::CodecMismatch { declared: codec.name(), found: found.name() }),
        None => return Err(ImageError::NotCompressed { declared: codec.name(), len: data.len() }),
    }
    let decode_err = |source| ImageError::CompressedDecode { codec: codec.name(), source };
    let (width, height) =
        ImageReader::with_format(Cursor::new(data), codec.image_format()).into_dimensions().map_err(decode_err)?;
    if width == 0 || height == 0 {
        return Err(ImageError::Empty { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ImageError::TooLarge { width, height, max_pixels });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // 16-bit RGBA output (8 bytes a pixel) plus the decoder's working
    // buffers, which are of the same order
    limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(16 << 20));
    let mut reader = ImageReader::with_format(Cursor::new(data), codec.image_format());
    reader.limits(limits);
    let decoded = reader.decode().map_err(decode_err)?;
    if (decoded.width(), decoded.height()) != (width, height) {
        return Err(ImageError::SizeChanged { header: (width, height), decoded: (decoded.width(), decoded.height()) });
    }
    Ok(match decoded {
        DynamicImage::ImageRgb8(img) => RgbImage { width, height, data: img.into_raw() },
        DynamicImage::ImageLuma16(img) => {
            // the raw mono16 path, so both transports normalise alike
            let data: Vec<u8> = img.as_raw().iter().flat_map(|v| v.to_le_bytes()).collect();
            let layout =
                ImageLayout { height, width, encoding: "mono16", is_bigendian: false, step: width.saturating_mul(2), data: &data };
            decode_rgb(&layout)?
        }
        other => RgbImage { width, height, data: other.to_rgb8().into_raw() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::{ImageBuffer, Luma, Rgb};

    /// A 37x23 test picture: red left third, smooth gradients elsewhere
    /// (odd sizes exercise JPEG's partial blocks and PNG's row filters).
    fn picture() -> ::image::RgbImage {
        ImageBuffer::from_fn(37, 23, |x, y| {
            if x < 12 {
                Rgb([230, 20, 20])
            } else {
                Rgb([(x * 6) as u8, (y * 10) as u8, ((x + y) * 4) as u8])
            }
        })
    }

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn png() -> Vec<u8> {
        encode(DynamicImage::ImageRgb8(picture()), ImageFormat::Png)
    }

    fn jpeg() -> Vec<u8> {
        encode(DynamicImage::ImageRgb8(picture()), ImageFormat::Jpeg)
    }

    const MAX: u64 = 4096 * 4096;

    #[test]
    fn png_is_exact_under_every_format_spelling() {
        let want = picture();
        for format in ["png", "PNG", "rgb8; png compressed bgr8", "bgr8; png compressed bgr8", "bgra8; png compressed bgra8"] {
            let img = decode_compressed(format, &png(), MAX).expect(format);
            assert_eq!((img.width, img.height), (37, 23), "{format}");
            assert_eq!(img.data, want.as_raw().as_slice(), "{format}");
        }
    }

    #[test]
    fn jpeg_is_close_and_keeps_colours() {
        let want = picture();
        for format in ["jpeg", "jpg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"] {
            let img = decode_compressed(format, &jpeg(), MAX).expect(format);
            assert_eq!((img.width, img.height), (37, 23));
            let err: f64 = img.data.iter().zip(want.as_raw()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>()
                / img.data.len() as f64;
            assert!(err < 6.0, "{format}: mean abs error {err}");
            // red stays red: no channel swap
            let [r, g, b] = img.pixel(4, 10).unwrap();
            assert!(r > 200 && g < 60 && b < 60, "{format}: {:?}", [r, g, b]);
        }
    }

    #[test]
    fn grey_images_are_replicated_and_mono16_normalised() {
        let grey = ImageBuffer::from_fn(9, 5, |x, y| Luma([(x * 20 + y) as u8]));
        let bytes = encode(DynamicImage::ImageLuma8(grey.clone()), ImageFormat::Png);
        let img = decode_compressed("mono8; png compressed ", &bytes, MAX).unwrap();
        assert_eq!(img.pixel(3, 2), Some([62; 3]));
        let samples: Vec<u16> = (0..45).map(|i| 1000 + 10 * i).collect();
        let deep: ImageBuffer<Luma<u16>, _> = ImageBuffer::from_raw(9, 5, samples.clone()).unwrap();
        let bytes = encode(DynamicImage::ImageLuma16(deep), ImageFormat::Png);
        let img = decode_compressed("16UC1; png compressed ", &bytes, MAX).unwrap();
        let raw: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        let layout = ImageLayout { height: 5, width: 9, encoding: "mono16", is_bigendian: false, step: 18, data: &raw };
        assert_eq!(img, decode_rgb(&layout).unwrap());
        assert_eq!((img.pixel(0, 0), img.pixel(8, 4)), (Some([0; 3]), Some([255; 3])));
    }

    #[test]
    fn unsupported_formats_are_named() {
        for format in ["", "  ", "tiff", "rgb8; webp compressed bgr8", "16UC1; compressedDepth png", "rgb8;", "rgb8; png"] {
            let e = decode_compressed(format, &png(), MAX).expect_err(format);
            assert!(matches!(e, ImageError::UnsupportedCompressedFormat { .. }), "{format}: {e}");
        }
        let long = "x".repeat(10_000);
        let e = decode_compressed(&long, &png(), MAX).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn payload_must_match_the_declared_codec() {
        assert!(matches!(
            decode_compressed("jpeg", &png(), MAX),
            Err(ImageError::CodecMismatch { declared: "jpeg", found: "png" })
        ));
        assert!(matches!(decode_compressed("png", &jpeg(), MAX), Err(ImageError::CodecMismatch { .. })));
        for data in [&[][..], b"hello", &[0xFF, 0xD8]] {
            assert!(matches!(decode_compressed("jpeg", data, MAX), Err(ImageError::NotCompressed { .. })));
        }
    }

    /// CRC-32 (IEEE), for re-signing a patched PNG chunk.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// Headers claiming huge images are refused from the header alone
    /// (decoding 10^10 pixels would take minutes and gigabytes).
    #[test]
    fn huge_headers_are_refused_before_decoding() {
        let mut p = png();
        // IHDR data sits at bytes 16..29, its CRC at 29..33
        p[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        p[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&p[12..29]);
        p[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode_compressed("png", &p, MAX).unwrap_err();
        assert!(matches!(e, ImageError::TooLarge { width: 100_000, height: 100_000, .. }), "{e}");

        let mut j = jpeg();
        let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0 marker");
        // FF C0, length (2), precision (1), height (2), width (2)
        j[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        j[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        let e = decode_compressed("jpeg", &j, MAX).unwrap_err();
        assert!(matches!(e, ImageError::TooLarge { width: 60_000, height: 60_000, .. }), "{e}");

        // and the limit is the caller's: 37x23 = 851 pixels
        assert!(matches!(decode_compressed("png", &png(), 850), Err(ImageError::TooLarge { .. })));
        assert!(decode_compressed("png", &png(), 851).is_ok());
    }

    /// Cut or corrupted payloads: PNG missing any pixel data errors, JPEG
    /// may decode a damaged picture, but nothing panics and any image that
    /// comes back has the header's size.
    #[test]
    fn truncated_and_corrupt_payloads_never_panic() {
        let p = png();
        // the last 12 bytes are the empty IEND chunk: without it all pixel
        // data is still there, and the png crate (rightly) decodes it
        let iend = p.len() - 12;
        assert_eq!(&p[iend + 4..iend + 8], b"IEND");
        for cut in 0..p.len() {
            if let Ok(img) = decode_compressed("png", &p[..cut], MAX) {
                assert!(cut >= iend && img.data == picture().as_raw().as_slice(), "PNG cut at {cut}");
            }
        }
        assert!((0..iend).all(|cut| decode_compressed("png", &p[..cut], MAX).is_err()));
        let j = jpeg();
        for cut in 0..j.len() {
            if let Ok(img) = decode_compressed("jpeg", &j[..cut], MAX) {
                assert_eq!((img.width, img.height, img.data.len()), (37, 23, 37 * 23 * 3), "JPEG cut at {cut}");
            }
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for (data, format) in [(p, "png"), (j, "jpeg")] {
            for _ in 0..400 {
                let mut b = data.clone();
                for _ in 0..4 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let i = (state % b.len() as u64) as usize;
                    b[i] ^= (state >> 56) as u8 | 1;
                }
                // a flipped size byte may ask for a bigger image: keep each decode small
                if let Ok(img) = decode_compressed(format, &b, 1 << 16) {
                    assert_eq!(img.data.len() as u64, u64::from(img.width) * u64::from(img.height) * 3);
                }
            }
        }
    }
}
