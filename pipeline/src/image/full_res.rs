//! OctoAI's `inpaint_full_res`, AUTOMATIC1111's "inpaint only masked": the masked area, with a
//! margin, is cut out, inpainted at the full output size and put back. Every step follows A1111
//! (`modules/processing.py`, `masking.py`, `images.py`) and, where A1111 calls PIL, PIL's
//! integer arithmetic, so that only the inpainting itself differs from a reference:
//!
//! 1. [`blur`]: A1111's default `mask_blur` of 4, a 21-tap Gaussian along x, then along y, each
//!    rounded to 8 bits (A1111 calls `cv2.GaussianBlur` twice; its fixed-point 8-bit arithmetic
//!    can differ from this f64 one by a level).
//! 2. The crop region: the blurred mask's bounding box of non-zero pixels, grown by the padding
//!    and clipped to the image, then grown to the output's aspect ratio (`expand`). A blank
//!    mask has none: there is nothing to inpaint.
//! 3. The image and the blurred mask, cropped, through A1111's "resize and fill" to the output
//!    size ([`resize_and_fill`]): these are what the pipeline inpaints.
//! 4. [`FullRes::paste`]: the result through "crop and resize" back to the region's size, pasted
//!    there, under the original image with alpha `255 - blurred mask` (PIL's premultiplied paste,
//!    un-premultiply and `alpha_composite`, to the bit).

use ::image::{GrayImage, ImageBuffer, Pixel, RgbImage};

use super::resample::{Axis, resize_lanczos, resize_lanczos_span};

/// A1111's default `mask_blur` (Gaussian sigma in pixels).
pub const MASK_BLUR: f64 = 4.0;

/// A crop region `[x1, x2) x [y1, y2)` in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Left edge.
    pub x1: u32,
    /// Top edge.
    pub y1: u32,
    /// Right edge (exclusive).
    pub x2: u32,
    /// Bottom edge (exclusive).
    pub y2: u32,
}

impl Region {
    fn width(&self) -> u32 {
        self.x2 - self.x1
    }

    fn height(&self) -> u32 {
        self.y2 - self.y1
    }
}

/// One inpainting at full resolution: where it goes and the blurred mask it blends through.
#[derive(Clone, Debug)]
pub struct FullRes {
    /// The crop region in the output frame.
    pub region: Region,
    /// The blurred mask, at the output size.
    pub blurred: GrayImage,
}

impl FullRes {
    /// Plans the crop for `mask` (at the output size) with `padding` pixels of context; `None`
    /// when the blurred mask is blank.
    pub fn plan(mask: &GrayImage, padding: u32) -> Option<FullRes> {
        let blurred = blur(mask, MASK_BLUR);
        let (width, height) = blurred.dimensions();
        let [x1, y1, x2, y2] = bounding_box(&blurred)?;
        let padded = [x1.saturating_sub(padding), y1.saturating_sub(padding), x2 + padding, y2 + padding];
        let clipped = [padded[0], padded[1], padded[2].min(width), padded[3].min(height)];
        let region = expand(clipped, width, height);
        Some(FullRes { region, blurred })
    }

    /// The image and the blurred mask cropped to the region and resized ("resize and fill") to
    /// the output size: the inpainting's init image and mask.
    pub fn inputs(&self, image: &RgbImage) -> (RgbImage, GrayImage) {
        let (width, height) = self.blurred.dimensions();
        let r = self.region;
        let image = ::image::imageops::crop_imm(image, r.x1, r.y1, r.width(), r.height()).to_image();
        let mask = ::image::imageops::crop_imm(&self.blurred, r.x1, r.y1, r.width(), r.height()).to_image();
        (resize_and_fill(&image, width, height), resize_and_fill(&mask, width, height))
    }

    /// `generated` (the inpainted crop, at the output size) put back into `original`.
    pub fn paste(&self, original: &RgbImage, generated: &RgbImage) -> RgbImage {
        let r = self.region;
        let patch = crop_and_resize(generated, r.width(), r.height());
        let mut out = original.clone();
        for (x, y, pixel) in out.enumerate_pixels_mut() {
            // The overlay: the original premultiplied by alpha a (PIL's masked paste of RGBa),
            // then un-premultiplied (PIL's RGBa -> RGBA, truncating).
            let a = 255 - u32::from(self.blurred.get_pixel(x, y).0[0]);
            let inside = x >= r.x1 && x < r.x2 && y >= r.y1 && y < r.y2;
            for c in 0..3 {
                let premultiplied = div255(u32::from(original.get_pixel(x, y).0[c]) * a);
                let overlay =
                    if a == 255 || a == 0 { premultiplied } else { (255 * premultiplied / a).min(255) };
                // PIL's alpha_composite of the overlay onto the pasted patch (alpha 255 inside
                // the region, transparent outside), 7 fraction bits.
                let (coef_src, coef_dst, dst) = if inside {
                    let g = u32::from(patch.get_pixel(x - r.x1, y - r.y1).0[c]);
                    (a * 128, (255 - a) * 128, g)
                } else if a == 0 {
                    (0, 0, 0)
                } else {
                    (255 * 128, 0, 0)
                };
                let sum = overlay * coef_src + dst * coef_dst + (0x80 << 7);
                pixel.0[c] = (shift_div255(sum) >> 7).min(255) as u8;
            }
        }
        out
    }
}

/// PIL's `DIV255`: `a / 255` rounded.
fn div255(a: u32) -> u32 {
    let t = a + 128;
    ((t >> 8) + t) >> 8
}

/// PIL's `SHIFTFORDIV255`.
fn shift_div255(a: u32) -> u32 {
    ((a >> 8) + a) >> 8
}

/// `mask` blurred along x then y by a Gaussian of `sigma` (A1111's kernel size
/// `2 int(2.5 sigma + 0.5) + 1`, OpenCV's weights and reflect-101 border), each pass rounded.
pub fn blur(mask: &GrayImage, sigma: f64) -> GrayImage {
    let n = 2 * (2.5 * sigma + 0.5) as usize + 1;
    let raw: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - (n - 1) as f64 / 2.0;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = raw.iter().sum();
    let kernel: Vec<f64> = raw.iter().map(|k| k / total).collect();
    let (width, height) = mask.dimensions();
    let pass = |source: &GrayImage, horizontal: bool| {
        GrayImage::from_fn(width, height, |x, y| {
            let (along, size) = if horizontal { (x, width) } else { (y, height) };
            let r = (n / 2) as i64;
            let value: f64 = kernel
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    let i = reflect101(along as i64 + j as i64 - r, size as i64);
                    let (sx, sy) = if horizontal { (i, y) } else { (x, i) };
                    w * f64::from(source.get_pixel(sx, sy).0[0])
                })
                .sum();
            ::image::Luma([value.round_ties_even().clamp(0.0, 255.0) as u8])
        })
    };
    pass(&pass(mask, true), false)
}

/// OpenCV's `BORDER_REFLECT_101` index (`gfedcb|abcdefgh|gfedcba`).
fn reflect101(mut i: i64, n: i64) -> u32 {
    if n == 1 {
        return 0;
    }
    while i < 0 || i >= n {
        i = if i < 0 { -i } else { 2 * n - 2 - i };
    }
    i as u32
}

/// PIL's `getbbox`: `[x1, y1, x2, y2)` of the non-zero pixels, `None` when there are none.
fn bounding_box(mask: &GrayImage) -> Option<[u32; 4]> {
    let mut bbox: Option<[u32; 4]> = None;
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] != 0 {
            let b = bbox.get_or_insert([x, y, x + 1, y + 1]);
            *b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
        }
    }
    bbox
}

/// A1111's `expand_crop_region`: the region grown (centred, then shifted and clipped to the
/// image) to the aspect ratio of the `width x height` output.
fn expand([x1, y1, x2, y2]: [u32; 4], width: u32, height: u32) -> Region {
    let (mut x1, mut y1, mut x2, mut y2) = (i64::from(x1), i64::from(y1), i64::from(x2), i64::from(y2));
    let (w, h) = (i64::from(width), i64::from(height));
    let ratio_region = (x2 - x1) as f64 / (y2 - y1) as f64;
    let ratio_output = f64::from(width) / f64::from(height);
    // One axis grows by `diff`, half before (rounded down), then is kept inside `0..size`.
    let grow = |lo: &mut i64, hi: &mut i64, diff: i64, size: i64| {
        *lo -= diff.div_euclid(2);
        *hi += diff - diff.div_euclid(2);
        if *hi >= size {
            let over = *hi - size;
            *hi -= over;
            *lo -= over;
        }
        if *lo < 0 {
            *hi -= *lo;
            *lo = 0;
        }
        if *hi >= size {
            *hi = size;
        }
    };
    if ratio_region > ratio_output {
        let diff = ((x2 - x1) as f64 / ratio_output - (y2 - y1) as f64) as i64;
        grow(&mut y1, &mut y2, diff, h);
    } else {
        let diff = ((y2 - y1) as f64 * ratio_output - (x2 - x1) as f64) as i64;
        grow(&mut x1, &mut x2, diff, w);
    }
    Region { x1: x1 as u32, y1: y1 as u32, x2: x2 as u32, y2: y2 as u32 }
}

/// A1111's `resize_image` mode 2, "resize and fill": Lanczos to fit inside `width x height`,
/// centred, and the uncovered bands filled by stretching the image's edge (PIL's resize of an
/// empty source span at the edge).
pub fn resize_and_fill<P>(image: &ImageBuffer<P, Vec<u8>>, width: u32, height: u32) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    let (iw, ih) = image.dimensions();
    let ratio = f64::from(width) / f64::from(height);
    let source_ratio = f64::from(iw) / f64::from(ih);
    let (fit_w, fit_h) =
        if ratio < source_ratio { (width, ih * width / iw) } else { (iw * height / ih, height) };
    let resized = resize_lanczos(image, fit_w, fit_h);
    let mut out = ImageBuffer::new(width, height);
    let (ox, oy) =
        (i64::from(width / 2) - i64::from(fit_w / 2), i64::from(height / 2) - i64::from(fit_h / 2));
    ::image::imageops::overlay(&mut out, &resized, ox, oy);
    if ratio < source_ratio {
        let fill = (height / 2).saturating_sub(fit_h / 2);
        if fill > 0 {
            let h = f64::from(resized.height());
            let top = resize_lanczos_span(&resized, Axis::Vertical, 0.0, 0.0, fill);
            let bottom = resize_lanczos_span(&resized, Axis::Vertical, h, h, fill);
            ::image::imageops::overlay(&mut out, &top, 0, 0);
            ::image::imageops::overlay(&mut out, &bottom, 0, i64::from(fill + fit_h));
        }
    } else if ratio > source_ratio {
        let fill = (width / 2).saturating_sub(fit_w / 2);
        if fill > 0 {
            let w = f64::from(resized.width());
            let left = resize_lanczos_span(&resized, Axis::Horizontal, 0.0, 0.0, fill);
            let right = resize_lanczos_span(&resized, Axis::Horizontal, w, w, fill);
            ::image::imageops::overlay(&mut out, &left, 0, 0);
            ::image::imageops::overlay(&mut out, &right, i64::from(fill + fit_w), 0);
        }
    }
    out
}

/// A1111's `resize_image` mode 1, "crop and resize": Lanczos to cover `width x height`, centred,
/// the overhang cut off.
fn crop_and_resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = image.dimensions();
    let ratio = f64::from(width) / f64::from(height);
    let source_ratio = f64::from(iw) / f64::from(ih);
    let fit_w = if ratio > source_ratio { width } else { iw * height / ih };
    let fit_h = if ratio <= source_ratio { height } else { ih * width / iw };
    let resized = resize_lanczos(image, fit_w, fit_h);
    let mut out = RgbImage::new(width, height);
    let (ox, oy) =
        (i64::from(width / 2) - i64::from(fit_w / 2), i64::from(height / 2) - i64::from(fit_h / 2));
    ::image::imageops::overlay(&mut out, &resized, ox, oy);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_mask_has_no_region_and_a_dot_is_blurred_away() {
        assert!(FullRes::plan(&GrayImage::new(32, 16), 8).is_none());
        let mut dot = GrayImage::new(32, 16);
        dot.put_pixel(5, 5, ::image::Luma([1]));
        assert!(FullRes::plan(&dot, 8).is_none(), "one level spread over 441 pixels rounds to zero");
    }

    #[test]
    fn the_region_grows_to_the_output_ratio_inside_the_image() {
        // A 10 x 10 box in a 64 x 32 frame: widened to 20 x 10 around its centre.
        assert_eq!(expand([20, 10, 30, 20], 64, 32), Region { x1: 15, y1: 10, x2: 35, y2: 20 });
        // At the right edge: shifted back inside.
        assert_eq!(expand([58, 10, 64, 20], 64, 32), Region { x1: 44, y1: 10, x2: 64, y2: 20 });
        // Rounding down and clipping at the top (values from A1111's function in Python).
        assert_eq!(expand([0, 0, 60, 10], 64, 16), Region { x1: 0, y1: 0, x2: 60, y2: 15 });
        assert_eq!(expand([0, 0, 10, 16], 64, 16), Region { x1: 0, y1: 0, x2: 64, y2: 16 });
    }
}
