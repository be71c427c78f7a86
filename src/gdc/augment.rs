//! Random photometric and geometric changes of bank images (issue 16 item 4:
//! banks that transfer from simulated crops to real ones). Each copy of an
//! image gets, in this order, drawn from a seeded [`Rng`] (the same seed
//! gives the same copies):
//! - a crop keeping 80–100 % of the side (object stays mostly in view),
//!   and a horizontal flip with probability ½;
//! - colour jitter: brightness ×[0.7, 1.3], contrast ×[0.7, 1.3] about the
//!   mean grey, saturation ×[0.6, 1.4], per-channel gain ×[0.9, 1.1]
//!   (white balance);
//! - with probability ½ a Gaussian blur, σ ∈ [0.3, 1.5] px;
//! - with probability ½ Gaussian noise, σ ∈ [2, 10] grey levels.
//!
//! Values are clamped to 0–255 and rounded. The strengths are those of
//! common ImageNet training recipes, milder for colour since the classes'
//! colours carry no information in the simulator either.

use crate::dataset::sim::Rng;
use crate::image::RgbImage;

/// One randomly changed copy of `img`.
pub fn augmented(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let (w, h) = (img.width as usize, img.height as usize);
    if w == 0 || h == 0 {
        return img.clone();
    }
    // crop and flip
    let keep = rng.range(0.8, 1.0);
    let (cw, ch) = (((w as f64) * keep).round().max(1.0) as usize, ((h as f64) * keep).round().max(1.0) as usize);
    let (x0, y0) = (rng.below(w - cw + 1), rng.below(h - ch + 1));
    let flip = rng.chance(0.5);
    let mut px: Vec<f32> = Vec::with_capacity(cw * ch * 3);
    for y in y0..y0 + ch {
        for x in 0..cw {
            let sx = if flip { x0 + cw - 1 - x } else { x0 + x };
            let i = (y * w + sx) * 3;
            px.extend(img.data[i..i + 3].iter().map(|&v| f32::from(v)));
        }
    }
    // colour jitter
    let brightness = rng.range(0.7, 1.3) as f32;
    let contrast = rng.range(0.7, 1.3) as f32;
    let saturation = rng.range(0.6, 1.4) as f32;
    let gains: [f32; 3] = [rng.range(0.9, 1.1) as f32, rng.range(0.9, 1.1) as f32, rng.range(0.9, 1.1) as f32];
    let mean_grey = px.chunks_exact(3).map(grey).sum::<f32>() / (cw * ch) as f32;
    for p in px.chunks_exact_mut(3) {
        let g = grey(p);
        for (c, v) in p.iter_mut().enumerate() {
            let saturated = g + saturation * (*v - g);
            *v = ((saturated - mean_grey) * contrast + mean_grey) * brightness * gains[c];
        }
    }
    if rng.chance(0.5) {
        px = gaussian_blur(&px, cw, ch, rng.range(0.3, 1.5) as f32);
    }
    if rng.chance(0.5) {
        let sigma = rng.range(2.0, 10.0);
        px.iter_mut().for_each(|v| *v += (sigma * rng.normal()) as f32);
    }
    RgbImage { width: cw as u32, height: ch as u32, data: px.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect() }
}

/// `copies` augmented copies of `img`, from a stream of `seed` and `index`
/// (the image's position), so each image's copies do not depend on the others.
pub fn augmented_copies(img: &RgbImage, copies: usize, seed: u64, index: u64) -> Vec<RgbImage> {
    let mut rng = Rng::stream(seed, index);
    (0..copies).map(|_| augmented(img, &mut rng)).collect()
}

fn grey(p: &[f32]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Separable Gaussian blur of interleaved RGB, edges clamped.
fn gaussian_blur(px: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let r = (2.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-r..=r).map(|k| (-((k * k) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let norm: f32 = kernel.iter().sum();
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (k, wk) in (-r..=r).zip(&kernel) {
                        let (sx, sy) = if horizontal {
                            ((x as isize + k).clamp(0, w as isize - 1) as usize, y)
                        } else {
                            (x, (y as isize + k).clamp(0, h as isize - 1) as usize)
                        };
                        acc += wk * src[(sy * w + sx) * 3 + c];
                    }
                    out[(y * w + x) * 3 + c] = acc / norm;
                }
            }
        }
        out
    };
    pass(&pass(px, true), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let data = (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 128])).collect();
        RgbImage { width: w, height: h, data }
    }

    #[test]
    fn copies_are_reproducible_varied_and_keep_most_of_the_image() {
        let img = gradient(60, 50);
        let a = augmented_copies(&img, 8, 3, 0);
        assert_eq!(a, augmented_copies(&img, 8, 3, 0));
        assert_ne!(a, augmented_copies(&img, 8, 3, 1));
        for c in &a {
            assert!((48..=60).contains(&c.width) && (40..=50).contains(&c.height), "{}x{}", c.width, c.height);
            assert_eq!(c.data.len(), (c.width * c.height * 3) as usize);
            assert_ne!(c, &img);
        }
        // flat images stay flat under blur; a blur keeps the mean
        let flat = RgbImage { width: 10, height: 10, data: vec![100; 300] };
        let blurred = gaussian_blur(&flat.data.iter().map(|&v| f32::from(v)).collect::<Vec<_>>(), 10, 10, 1.2);
        assert!(blurred.iter().all(|v| (v - 100.0).abs() < 1e-3));
    }
}
