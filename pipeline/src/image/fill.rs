//! Outpainting fill: gives the masked area plausible colour from the unmasked pixels before
//! img2img, so the model starts from the surroundings' colours rather than from black or noise.
//!
//! Push-pull (Gortler et al., "The Lumigraph", 1996): "push" builds a pyramid where each coarser
//! pixel averages its known (unmasked) children, and is known when any child is; "pull" walks back
//! down, giving each unknown pixel the bilinear interpolation of the finished coarser level. The
//! result is a smooth extension of the nearby colours (a masked hole inside a constant field
//! becomes that constant), in O(pixels) time and memory (the pyramid adds a third).

use ::image::{GrayImage, Rgb, RgbImage};

use super::MASK_THRESHOLD;

/// The colour of an image with no unmasked pixel at all: mid grey.
const MID_GREY: u8 = 128;

/// One pyramid level: colours (meaningful where `known`) and which pixels are known.
struct Level {
    width: usize,
    height: usize,
    color: Vec<[f32; 3]>,
    known: Vec<bool>,
}

/// `image` with every masked pixel (mask value at least [`MASK_THRESHOLD`]) replaced by a push-pull
/// fill of the unmasked ones; unmasked pixels are returned unchanged. A mask of another size is
/// sampled at the nearest pixel; an empty mask masks nothing; an all-masked image becomes mid grey.
pub fn fill_masked(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let (width, height) = image.dimensions();
    let (mask_width, mask_height) = mask.dimensions();
    if width == 0 || height == 0 || mask_width == 0 || mask_height == 0 {
        return image.clone();
    }
    let masked = |x: u32, y: u32| {
        let mx = (u64::from(x) * u64::from(mask_width) / u64::from(width)) as u32;
        let my = (u64::from(y) * u64::from(mask_height) / u64::from(height)) as u32;
        mask.get_pixel(mx, my).0[0] >= MASK_THRESHOLD
    };
    let base = Level {
        width: width as usize,
        height: height as usize,
        color: image.pixels().map(|p| p.0.map(f32::from)).collect(),
        known: (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| !masked(x, y))
            .collect(),
    };
    let unmasked = base.known.clone();
    if base.known.iter().all(|&k| k) {
        return image.clone();
    }
    if !base.known.iter().any(|&k| k) {
        return RgbImage::from_pixel(width, height, Rgb([MID_GREY; 3]));
    }

    let mut pyramid = vec![base];
    while let Some(top) = pyramid.last().filter(|l| l.width > 1 || l.height > 1) {
        let coarser = push(top);
        pyramid.push(coarser);
    }
    for k in (0..pyramid.len() - 1).rev() {
        let (fine, coarse) = pyramid.split_at_mut(k + 1);
        pull(&mut fine[k], &coarse[0]);
    }

    let mut out = image.clone();
    for (i, pixel) in out.pixels_mut().enumerate() {
        if !unmasked[i] {
            pixel.0 = pyramid[0].color[i].map(|v| v.round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// The next coarser level: each pixel averages the known pixels of its (up to) 2 x 2 children.
fn push(fine: &Level) -> Level {
    let (width, height) = (fine.width.div_ceil(2), fine.height.div_ceil(2));
    let mut color = vec![[0.0; 3]; width * height];
    let mut known = vec![false; width * height];
    for y in 0..height {
        for x in 0..width {
            let mut sum = [0.0f32; 3];
            let mut count = 0.0f32;
            for fy in 2 * y..(2 * y + 2).min(fine.height) {
                for fx in 2 * x..(2 * x + 2).min(fine.width) {
                    let i = fy * fine.width + fx;
                    if fine.known[i] {
                        for (s, c) in sum.iter_mut().zip(fine.color[i]) {
                            *s += c;
                        }
                        count += 1.0;
                    }
                }
            }
            if count > 0.0 {
                color[y * width + x] = sum.map(|s| s / count);
                known[y * width + x] = true;
            }
        }
    }
    Level { width, height, color, known }
}

/// Fills the unknown pixels of `fine` by bilinear interpolation of the finished `coarse` level
/// (pixel centres aligned: fine x sits at coarse (x + 0.5) / 2 - 0.5).
fn pull(fine: &mut Level, coarse: &Level) {
    let taps = |n: usize, coarse_n: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let position = (i as f32 + 0.5) / 2.0 - 0.5;
                let floor = position.floor();
                let lo = (floor.max(0.0) as usize).min(coarse_n - 1);
                let hi = ((floor + 1.0).max(0.0) as usize).min(coarse_n - 1);
                (lo, hi, position - floor)
            })
            .collect()
    };
    let columns = taps(fine.width, coarse.width);
    let rows = taps(fine.height, coarse.height);
    for (y, &(y0, y1, fy)) in rows.iter().enumerate() {
        for (x, &(x0, x1, fx)) in columns.iter().enumerate() {
            let i = y * fine.width + x;
            if fine.known[i] {
                continue;
            }
            let at = |cx: usize, cy: usize| coarse.color[cy * coarse.width + cx];
            let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
            fine.color[i] = std::array::from_fn(|ch| {
                let top = a[ch] * (1.0 - fx) + b[ch] * fx;
                let bottom = c[ch] * (1.0 - fx) + d[ch] * fx;
                top * (1.0 - fy) + bottom * fy
            });
            fine.known[i] = true;
        }
    }
}
