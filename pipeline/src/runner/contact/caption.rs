//! Caption text on an [`RgbImage`], in the 6 x 10 X11 misc-fixed bitmap font (public domain;
//! embedded-graphics' ISO 8859-1 subset: characters outside it draw as `?`).

use std::convert::Infallible;

use ::image::{Rgb, RgbImage};
use embedded_graphics::Pixel;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::iso_8859_1::FONT_6X10;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Drawable, OriginDimensions, Point, RgbColor, Size};
use embedded_graphics::text::{Baseline, Text};

/// The width of one character, in pixels.
pub(super) const CHAR_WIDTH: u32 = 6;
/// The height of one line of text, in pixels (the glyphs' 10 and one of leading).
pub(super) const LINE_HEIGHT: u32 = 11;

/// An [`RgbImage`] as an embedded-graphics drawing surface; pixels outside it are dropped.
struct Canvas<'a>(&'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> Result<(), Infallible> {
        let (width, height) = self.0.dimensions();
        for Pixel(point, colour) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) else { continue };
            if x < width && y < height {
                self.0.put_pixel(x, y, Rgb([colour.r(), colour.g(), colour.b()]));
            }
        }
        Ok(())
    }
}

/// `text` as one line of at most `max_chars` characters: control characters (newlines, tabs)
/// become spaces and a longer text ends in `..`.
pub(super) fn fit(text: &str, max_chars: usize) -> String {
    let flat: Vec<char> = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.len() <= max_chars {
        return flat.into_iter().collect();
    }
    let kept = max_chars.saturating_sub(2);
    flat[..kept].iter().chain(['.', '.'].iter().take(max_chars - kept)).collect()
}

/// Draws `text`, cut to `max_chars` ([`fit`]), with its top-left corner at (`x`, `y`).
pub(super) fn draw_line(image: &mut RgbImage, x: u32, y: u32, text: &str, max_chars: usize, colour: [u8; 3]) {
    let style = MonoTextStyle::new(&FONT_6X10, Rgb888::new(colour[0], colour[1], colour[2]));
    let line = fit(text, max_chars);
    let origin = Point::new(x as i32, y as i32);
    let Ok(_) = Text::with_baseline(&line, origin, style, Baseline::Top).draw(&mut Canvas(image));
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

    /// The bounding box (x0, y0, x1, y1), inclusive, of the pixels that are not white.
    fn ink(image: &RgbImage) -> Option<(u32, u32, u32, u32)> {
        let mut bounds: Option<(u32, u32, u32, u32)> = None;
        for (x, y, p) in image.enumerate_pixels() {
            if *p != WHITE {
                let b = bounds.get_or_insert((x, y, x, y));
                *b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
            }
        }
        bounds
    }

    #[test]
    fn text_draws_inside_its_cells_in_its_colour() {
        let mut image = RgbImage::from_pixel(40, 20, WHITE);
        draw_line(&mut image, 3, 4, "Hg", 10, [200, 10, 20]);
        let (x0, y0, x1, y1) = ink(&image).expect("two glyphs leave ink");
        assert!(x0 >= 3 && x1 < 3 + 2 * CHAR_WIDTH && y0 >= 4 && y1 < 4 + 10, "{:?}", (x0, y0, x1, y1));
        assert!(image.pixels().all(|p| *p == WHITE || *p == Rgb([200, 10, 20])));
        let mut other = RgbImage::from_pixel(40, 20, WHITE);
        draw_line(&mut other, 3, 4, "Hh", 10, [200, 10, 20]);
        assert_ne!(image, other, "different glyphs differ");
    }

    #[test]
    fn long_text_is_cut_and_drawing_past_the_edge_is_safe() {
        assert_eq!(fit("a boat\non\tthe sea", 40), "a boat on the sea");
        assert_eq!(fit("abcdefgh", 5), "abc..");
        assert_eq!(fit("abcdefgh", 1), ".");
        assert_eq!(fit("ü漢字x", 3), "ü..");
        let mut image = RgbImage::from_pixel(8, 8, WHITE);
        draw_line(&mut image, 5, 5, "WWWW", 4, [0, 0, 0]);
        assert!(ink(&image).is_some());
    }
}
