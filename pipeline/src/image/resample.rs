//! PIL's Lanczos and bicubic resizes (`Image.resize(size, Image.LANCZOS / BICUBIC)`, Pillow's
//! `Resample.c`), reproduced bit for bit for 8-bit images: diffusers' `VaeImageProcessor.resize`
//! uses Lanczos, transformers' `CLIPImageProcessor` (PIL backend) bicubic.
//!
//! PIL's algorithm: per output pixel, a window of input pixels around `(x + 0.5) * scale` with
//! Lanczos-3 weights (stretched by the scale when shrinking), normalised in f64, then rounded to
//! 22-bit fixed point; a horizontal pass writes rounded, clipped 8-bit rows, and the vertical pass
//! reads them (Pillow 13 runs the vertical pass first when the height shrinks by more than twice
//! as many pixels as the width). The image crate's `Lanczos3` computes the same filter in f32 without the 8-bit
//! intermediate and differs from PIL by up to 8 levels on sharp edges, hence this port.

use ::image::{ImageBuffer, Pixel};

/// Fixed-point fraction bits of the weights (PIL: 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;
/// Lanczos-3 support radius in input pixels (at scale 1).
const SUPPORT: f64 = 3.0;

/// PIL's resampling filters kiln needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Filter {
    /// Lanczos-3 (`Image.LANCZOS`).
    Lanczos,
    /// Keys' cubic with a = -0.5 (`Image.BICUBIC`).
    Bicubic,
}

impl Filter {
    /// The support radius in input pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Lanczos => SUPPORT,
            Filter::Bicubic => 2.0,
        }
    }

    /// The weight at `x` input pixels from the centre (PIL's `lanczos_filter`, `bicubic_filter`).
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Lanczos => lanczos(x),
            Filter::Bicubic => bicubic(x),
        }
    }
}

/// One output pixel's window: the first input index and its fixed-point weights.
struct Window {
    start: usize,
    weights: Vec<i32>,
}

/// `image` resized to `width x height` with PIL's Lanczos filter; the same size is a copy, and an
/// empty image or target gives a black image of the target size.
pub(super) fn resize_lanczos<P>(
    image: &ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    resize(image, width, height, Filter::Lanczos)
}

/// `image` resized to `width x height` with PIL's `filter`, as [`resize_lanczos`] does.
pub(super) fn resize<P>(
    image: &ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
    filter: Filter,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    let (in_width, in_height) = image.dimensions();
    if (in_width, in_height) == (width, height) {
        return image.clone();
    }
    if in_width == 0 || in_height == 0 || width == 0 || height == 0 {
        return ImageBuffer::new(width, height);
    }
    let channels = usize::from(P::CHANNEL_COUNT);
    let (in_width, in_height, width, height) =
        (in_width as usize, in_height as usize, width as usize, height as usize);
    let horizontal = |pixels: &[u8], rows: usize| {
        resample(pixels, rows, in_width, channels, &windows(in_width, width, filter), Axis::Horizontal)
    };
    let vertical = |pixels: &[u8], columns: usize| {
        resample(pixels, in_height, columns, channels, &windows(in_height, height, filter), Axis::Vertical)
    };
    let source = image.as_raw(); // [in_height, in_width, C]
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    // pixels as the width does (older Pillow always went horizontal first).
    let (shrink_x, shrink_y) = (in_width as i64 - width as i64, in_height as i64 - height as i64);
    let rows = if width == in_width {
        vertical(source, in_width)
    } else if height == in_height {
        horizontal(source, in_height)
    } else if shrink_y > 0 && shrink_y > 2 * shrink_x {
        horizontal(&vertical(source, in_width), height) // [height, in_width, C] -> [height, width, C]
    } else {
        vertical(&horizontal(source, in_height), width) // [in_height, width, C] -> [height, width, C]
    };
    ImageBuffer::from_raw(width as u32, height as u32, rows)
        .unwrap_or_else(|| ImageBuffer::new(width as u32, height as u32))
}

/// `image` resampled along one axis only: the source span `from..to` of that axis (in pixels,
/// fractional, possibly empty) to `size` pixels, as PIL's `resize` with a `box` that keeps the
/// other axis whole (one pass; A1111's "resize and fill" stretches an image's edge this way,
/// with an empty span at the edge).
pub(super) fn resize_lanczos_span<P>(
    image: &ImageBuffer<P, Vec<u8>>,
    axis: Axis,
    from: f64,
    to: f64,
    size: u32,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let channels = usize::from(P::CHANNEL_COUNT);
    let (width, height) = match axis {
        Axis::Horizontal => (size as usize, in_height),
        Axis::Vertical => (in_width, size as usize),
    };
    if in_width == 0 || in_height == 0 || width == 0 || height == 0 {
        return ImageBuffer::new(width as u32, height as u32);
    }
    let pixels = match axis {
        Axis::Horizontal => {
            let spans = windows_box(in_width, from, to, width, Filter::Lanczos);
            resample(image.as_raw(), in_height, in_width, channels, &spans, axis)
        }
        Axis::Vertical => {
            let spans = windows_box(in_height, from, to, height, Filter::Lanczos);
            resample(image.as_raw(), in_height, in_width, channels, &spans, axis)
        }
    };
    ImageBuffer::from_raw(width as u32, height as u32, pixels)
        .unwrap_or_else(|| ImageBuffer::new(width as u32, height as u32))
}

/// Which axis a pass resamples.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Axis {
    Horizontal,
    Vertical,
}

/// One pass over `pixels [rows, columns, channels]` along `axis`, with one window per output index.
fn resample(
    pixels: &[u8],
    rows: usize,
    columns: usize,
    channels: usize,
    windows: &[Window],
    axis: Axis,
) -> Vec<u8> {
    let row_len = columns * channels;
    let rounding = 1i32 << (PRECISION_BITS - 1);
    match axis {
        Axis::Horizontal => {
            let out_len = windows.len() * channels;
            let mut out = vec![0u8; rows * out_len]; // [rows, windows, C]
            let mut sums = vec![0i32; channels];
            for (source, target) in pixels.chunks_exact(row_len).zip(out.chunks_exact_mut(out_len)) {
                for (window, pixel) in windows.iter().zip(target.chunks_exact_mut(channels)) {
                    sums.fill(rounding);
                    let taps = source[window.start * channels..].chunks_exact(channels);
                    for (&weight, tap) in window.weights.iter().zip(taps) {
                        for (sum, &v) in sums.iter_mut().zip(tap) {
                            *sum += i32::from(v) * weight;
                        }
                    }
                    for (v, &sum) in pixel.iter_mut().zip(&sums) {
                        *v = clip8(sum);
                    }
                }
            }
            out
        }
        Axis::Vertical => {
            let mut out = vec![0u8; windows.len() * row_len]; // [windows, columns, C]
            let mut sums = vec![0i32; row_len];
            for (window, target) in windows.iter().zip(out.chunks_exact_mut(row_len)) {
                sums.fill(rounding);
                let taps = pixels[window.start * row_len..].chunks_exact(row_len);
                for (&weight, row) in window.weights.iter().zip(taps) {
                    for (sum, &v) in sums.iter_mut().zip(row) {
                        *sum += i32::from(v) * weight;
                    }
                }
                for (v, &sum) in target.iter_mut().zip(&sums) {
                    *v = clip8(sum);
                }
            }
            out
        }
    }
}

/// PIL's `clip8`: the fixed-point sum to a byte (floor, then clamp to 0..=255).
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size` (whole image box).
fn windows(in_size: usize, out_size: usize, filter: Filter) -> Vec<Window> {
    windows_box(in_size, 0.0, in_size as f64, out_size, filter)
}

/// [`windows`] for the source span `in0..in1` of an axis of `in_size` pixels.
fn windows_box(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Vec<Window> {
    let scale = (in1 - in0) / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inverse_scale = 1.0 / filter_scale; // PIL multiplies by the reciprocal; dividing can differ by an ulp
    (0..out_size)
        .map(|xx| {
            let center = in0 + (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero, as `as i64` does.
            let start = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64).max(start as i64) as usize;
            let raw: Vec<f64> =
                (start..end).map(|x| filter.weight((x as f64 - center + 0.5) * inverse_scale)).collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Window { start, weights }
        })
        .collect()
}

/// PIL's `lanczos_filter`: `sinc(x) * sinc(x / 3)` on [-3, 3).
fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) { sinc(x) * sinc(x / SUPPORT) } else { 0.0 }
}

/// PIL's `bicubic_filter`: Keys' cubic convolution with a = -0.5 on (-2, 2).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// `sin(pi x) / (pi x)`, 1 at 0.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}
