//! Canny edges as OpenCV's `cv2.Canny(rgb, low, high)` finds them in an 8-bit colour image
//! (aperture 3, L1 gradient magnitude): the preprocessing OctoAI's and diffusers' ControlNet
//! examples apply, reproduced pixel for pixel (`fixtures/controlnet/canny`, made with OpenCV).
//!
//! 1. 3×3 Sobel derivatives of each channel, borders replicated.
//! 2. Per pixel, the channel with the largest `|dx| + |dy|` (the first on ties) gives the
//!    gradient.
//! 3. Non-maximum suppression along the gradient's direction quantised to 0°, 45°, 90° or 135°
//!    with OpenCV's fixed-point tangent test (tan 22.5° in Q15); magnitudes outside the image
//!    count as 0. The neighbour before the pixel must be strictly smaller, the one after at most
//!    equal (strictly smaller on diagonals).
//! 4. Hysteresis: a surviving pixel above `high` is an edge; one above `low` is an edge when
//!    8-connected to an edge through such pixels.

use image::{GrayImage, RgbImage};

/// tan(22.5°) in Q15, rounded as OpenCV's `TG22`.
const TG22: i64 = 13573;
const SHIFT: u32 = 15;

/// `cv2.Canny(image, low, high)` on an RGB image: 255 on edges, 0 elsewhere.
pub fn canny(image: &RgbImage, low: f64, high: f64) -> GrayImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut out = GrayImage::new(image.width(), image.height());
    if w == 0 || h == 0 {
        return out;
    }
    let (mut low, mut high) = (low.floor() as i32, high.floor() as i32);
    if low > high {
        std::mem::swap(&mut low, &mut high);
    }
    let (dx, dy, mag) = gradients(image);
    // Magnitude with a zero border, so neighbours outside the image count as 0.
    let stride = w + 2;
    let mut padded = vec![0i32; stride * (h + 2)];
    for y in 0..h {
        padded[(y + 1) * stride + 1..(y + 1) * stride + 1 + w].copy_from_slice(&mag[y * w..(y + 1) * w]);
    }
    let at = |y: usize, x: usize| padded[(y + 1) * stride + x + 1];

    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        None,
        Weak,
        Edge,
    }
    let mut marks = vec![Mark::None; w * h];
    let mut stack = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let m = at(y, x);
            if m <= low {
                continue;
            }
            let (xs, ys) = (i64::from(dx[y * w + x]), i64::from(dy[y * w + x]));
            let ax = xs.abs();
            let ay = ys.abs() << SHIFT;
            let tg22x = ax * TG22;
            let (xi, yi) = (x as isize, y as isize);
            let get = |yy: isize, xx: isize| padded[((yy + 1) as usize) * stride + (xx + 1) as usize];
            let maximum = if ay < tg22x {
                m > get(yi, xi - 1) && m >= get(yi, xi + 1)
            } else {
                let tg67x = tg22x + (ax << (SHIFT + 1));
                if ay > tg67x {
                    m > get(yi - 1, xi) && m >= get(yi + 1, xi)
                } else {
                    let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                    m > get(yi - 1, xi - s) && m > get(yi + 1, xi + s)
                }
            };
            if maximum {
                if m > high {
                    marks[y * w + x] = Mark::Edge;
                    stack.push((x, y));
                } else {
                    marks[y * w + x] = Mark::Weak;
                }
            }
        }
    }
    while let Some((x, y)) = stack.pop() {
        for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                if marks[ny * w + nx] == Mark::Weak {
                    marks[ny * w + nx] = Mark::Edge;
                    stack.push((nx, ny));
                }
            }
        }
    }
    for (pixel, mark) in out.iter_mut().zip(&marks) {
        *pixel = if *mark == Mark::Edge { 255 } else { 0 };
    }
    out
}

/// The Canny map of `image` as an RGB image (each channel the edge map), the control image a
/// Canny ControlNet takes.
pub fn canny_rgb(image: &RgbImage, low: f64, high: f64) -> RgbImage {
    let edges = canny(image, low, high);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let v = edges.get_pixel(x, y)[0];
        image::Rgb([v, v, v])
    })
}

/// Per pixel: the Sobel `dx`, `dy` of the channel with the largest `|dx| + |dy|`, and that sum.
fn gradients(image: &RgbImage) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let raw = image.as_raw();
    let px = |y: isize, x: isize, c: usize| -> i32 {
        let y = y.clamp(0, h as isize - 1) as usize;
        let x = x.clamp(0, w as isize - 1) as usize;
        i32::from(raw[(y * w + x) * 3 + c])
    };
    let (mut dx, mut dy, mut mag) = (vec![0; w * h], vec![0; w * h], vec![0; w * h]);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            for c in 0..3 {
                let gx = px(y - 1, x + 1, c) + 2 * px(y, x + 1, c) + px(y + 1, x + 1, c)
                    - px(y - 1, x - 1, c)
                    - 2 * px(y, x - 1, c)
                    - px(y + 1, x - 1, c);
                let gy = px(y + 1, x - 1, c) + 2 * px(y + 1, x, c) + px(y + 1, x + 1, c)
                    - px(y - 1, x - 1, c)
                    - 2 * px(y - 1, x, c)
                    - px(y - 1, x + 1, c);
                let m = gx.abs() + gy.abs();
                if c == 0 || m > mag[i] {
                    (dx[i], dy[i], mag[i]) = (gx, gy, m);
                }
            }
        }
    }
    (dx, dy, mag)
}
