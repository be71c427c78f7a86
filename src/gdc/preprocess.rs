//! Image → network input, matching the reference image processors:
//! shorter side resized (bicubic, antialiased when shrinking, like PIL),
//! centre crop, scale, per-channel normalisation, CHW float tensor.
//!
//! Presets: [`Preprocess::dinov2`] = Hugging Face `BitImageProcessor` as
//! shipped with facebook/dinov2-* (256 → 224, ImageNet mean/std);
//! [`Preprocess::efficientnet_lite0`] = the recipe its weights were trained
//! with (torchvision: 256 → 224, `(x - 127) / 128`). Resampling
//! is the `image` crate's Catmull-Rom (the same a = -0.5 cubic as PIL's
//! BICUBIC, also scaled by the shrink factor); PIL rounds to 8 bits between
//! its two passes and we do not, so results differ by about one grey level
//! (measured in tests/dinov2_preprocess.rs).

use crate::image::RgbImage;
use ::image::{imageops, ImageBuffer, Rgb};
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("image is empty ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("image data has {len} bytes, {width}x{height} RGB needs {need}")]
    Size { width: u32, height: u32, len: usize, need: usize },
}

/// How the centre crop's offset `(size - crop) / 2` becomes an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropRounding {
    /// Hugging Face image processors: integer division.
    Floor,
    /// torchvision `CenterCrop`: Python's `round`, ties to even.
    HalfEven,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// The shorter image side is resized to this many pixels (aspect kept).
    pub shorter_side: u32,
    /// Side of the square centre crop taken after resizing.
    pub crop: u32,
    /// Multiplied into the 0..255 pixel values before normalisation.
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop_rounding: CropRounding,
}

impl Preprocess {
    /// facebook/dinov2-* `preprocessor_config.json`: shortest_edge 256,
    /// crop 224, rescale 1/255, ImageNet mean/std, resample BICUBIC.
    pub fn dinov2() -> Self {
        Self {
            shorter_side: 256,
            crop: 224,
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            crop_rounding: CropRounding::Floor,
        }
    }

    /// EfficientNet-Lite0's training recipe: 256 → 224, `(x - 127) / 128`.
    pub fn efficientnet_lite0() -> Self {
        Self { shorter_side: 256, crop: 224, scale: 1.0, mean: [127.0; 3], std: [128.0; 3], crop_rounding: CropRounding::HalfEven }
    }

    /// Output size after resizing, as the reference computes it: the longer
    /// side scales with the same factor and is truncated to an integer.
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let s = self.shorter_side as u64;
        if width <= height {
            (self.shorter_side, (s * height as u64 / width as u64) as u32)
        } else {
            ((s * width as u64 / height as u64) as u32, self.shorter_side)
        }
    }

    /// Offset of a centre crop of `crop` pixels along a side of `size >= crop`.
    pub fn crop_offset(&self, size: u32, crop: u32) -> u32 {
        match self.crop_rounding {
            CropRounding::Floor => (size - crop) / 2,
            CropRounding::HalfEven => ((size - crop) as f64 / 2.0).round_ties_even() as u32,
        }
    }

    /// One image → [3, crop, crop] float tensor on the CPU.
    pub fn apply(&self, img: &RgbImage) -> Result<Tensor, PreprocessError> {
        let (w, h) = (img.width, img.height);
        if w == 0 || h == 0 {
            return Err(PreprocessError::Empty { width: w, height: h });
        }
        let need = w as usize * h as usize * 3;
        let buf: ImageBuffer<Rgb<u8>, &[u8]> = ImageBuffer::from_raw(w, h, img.data.as_slice())
            .ok_or(PreprocessError::Size { width: w, height: h, len: img.data.len(), need })?;
        let (rw, rh) = self.resized_size(w, h);
        let resized = imageops::resize(&buf, rw, rh, imageops::FilterType::CatmullRom);
        let c = self.crop.min(rw).min(rh);
        let (left, top) = (self.crop_offset(rw, c), self.crop_offset(rh, c));
        let mut chw = vec![0f32; 3 * (c * c) as usize];
        let plane = (c * c) as usize;
        for y in 0..c {
            for x in 0..c {
                let px = resized.get_pixel(left + x, top + y).0;
                for ch in 0..3 {
                    chw[ch * plane + (y * c + x) as usize] = (px[ch] as f32 * self.scale - self.mean[ch]) / self.std[ch];
                }
            }
        }
        Ok(Tensor::from_slice(&chw).view([3, c as i64, c as i64]))
    }

    /// A batch → [n, 3, crop, crop]; every image must give the same crop size.
    pub fn batch(&self, imgs: &[RgbImage]) -> Result<Tensor, PreprocessError> {
        let ts = imgs.iter().map(|i| self.apply(i)).collect::<Result<Vec<_>, _>>()?;
        Ok(if ts.is_empty() { Tensor::zeros([0, 3, self.crop as i64, self.crop as i64], (Kind::Float, tch::Device::Cpu)) } else { Tensor::stack(&ts, 0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_reference_rule() {
        let p = Preprocess::dinov2();
        assert_eq!(p.resized_size(1242, 375), (847, 256));
        assert_eq!(p.resized_size(100, 300), (256, 768));
        assert_eq!(p.resized_size(50, 50), (256, 256));
        assert_eq!(p.resized_size(768, 576), (341, 256));
        assert_eq!(p.resized_size(300, 451), (256, 384));
    }

    #[test]
    fn crop_offsets_round_as_each_reference_does() {
        let (hf, tv) = (Preprocess::dinov2(), Preprocess::efficientnet_lite0());
        // (341 - 224) / 2 = 58.5: both 58; (343 - 224) / 2 = 59.5: floor 59, ties-to-even 60
        assert_eq!((hf.crop_offset(341, 224), tv.crop_offset(341, 224)), (58, 58));
        assert_eq!((hf.crop_offset(343, 224), tv.crop_offset(343, 224)), (59, 60));
        let constant = RgbImage { width: 40, height: 30, data: vec![127; 40 * 30 * 3] };
        let t = Preprocess::efficientnet_lite0().apply(&constant).unwrap();
        assert!(t.abs().max().double_value(&[]) < 1e-6, "127 normalises to 0");
    }

    #[test]
    fn constant_image_normalises_exactly_and_bad_sizes_are_errors() {
        let p = Preprocess::dinov2();
        let img = RgbImage { width: 40, height: 30, data: [200u8, 100, 50].repeat(40 * 30) };
        let t = p.apply(&img).unwrap();
        assert_eq!(t.size(), [3, 224, 224]);
        for ch in 0..3 {
            let want = ([200.0f32, 100.0, 50.0][ch] / 255.0 - p.mean[ch]) / p.std[ch];
            let got = t.get(ch as i64).mean(Kind::Float).double_value(&[]);
            assert!((got - want as f64).abs() < 1e-5, "channel {ch}: {got} vs {want}");
        }
        assert!(matches!(p.apply(&RgbImage { width: 0, height: 5, data: vec![] }), Err(PreprocessError::Empty { .. })));
        assert!(matches!(p.apply(&RgbImage { width: 4, height: 4, data: vec![0; 10] }), Err(PreprocessError::Size { .. })));
        assert_eq!(p.batch(&[img.clone(), img]).unwrap().size(), [2, 3, 224, 224]);
    }
}
