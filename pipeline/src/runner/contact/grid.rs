//! `contact.png`: the first thumbnails of the run in a grid, [`COLUMNS`] wide, each over its
//! caption (id and image index, seed, sampler, steps and time, prompt), under a one-line title.

use std::path::Path;

use ::image::{Rgb, RgbImage};

use super::caption::{CHAR_WIDTH, LINE_HEIGHT, draw_line};
use super::html::{Cell, format_time};
use super::record::Record;
use super::{ContactError, THUMB_SIDE};

/// Cells in a row.
pub(super) const COLUMNS: u32 = 8;
/// Space around and between cells, in pixels.
pub(super) const PAD: u32 = 6;
/// Caption lines under each thumbnail.
const CAPTION_LINES: u32 = 5;
/// The title's band at the top.
pub(super) const TITLE_HEIGHT: u32 = 2 * PAD + LINE_HEIGHT;
/// A cell's size: the thumbnail's square and its caption, with padding inside.
pub(super) const CELL_WIDTH: u32 = THUMB_SIDE + 2 * PAD;
pub(super) const CELL_HEIGHT: u32 = THUMB_SIDE + 3 * PAD + CAPTION_LINES * LINE_HEIGHT;
/// The narrowest picture (so that the title fits).
const MIN_WIDTH: u32 = 420;

const BACKGROUND: [u8; 3] = [236, 236, 232];
const CELL: [u8; 3] = [255, 255, 255];
const TEXT: [u8; 3] = [20, 20, 20];
const MUTED: [u8; 3] = [90, 90, 90];

/// The top-left corner of the `n`-th cell (0-based).
pub(super) fn cell_origin(n: usize) -> (u32, u32) {
    let (col, row) = (n as u32 % COLUMNS, n as u32 / COLUMNS);
    (PAD + col * (CELL_WIDTH + PAD), TITLE_HEIGHT + row * (CELL_HEIGHT + PAD))
}

/// Where the thumbnail of a `width` x `height` thumbnail goes in the `n`-th cell: centred in
/// the cell's square.
pub(super) fn thumb_origin(n: usize, width: u32, height: u32) -> (u32, u32) {
    let (x, y) = cell_origin(n);
    (x + PAD + (THUMB_SIDE - width.min(THUMB_SIDE)) / 2, y + PAD + (THUMB_SIDE - height.min(THUMB_SIDE)) / 2)
}

/// Draws the first `max_images` image cells of `cells` (thumbnails read from `dir`);
/// `total_images` is the run's image count, for the title.
pub(super) fn draw(
    dir: &Path,
    cells: &[Cell],
    max_images: usize,
    total_images: usize,
) -> Result<RgbImage, ContactError> {
    let shown: Vec<&Cell> = cells.iter().filter(|c| c.image.is_some()).take(max_images).collect();
    let columns = (shown.len() as u32).clamp(1, COLUMNS);
    let rows = (shown.len() as u32).div_ceil(COLUMNS).max(1);
    let width = (PAD + columns * (CELL_WIDTH + PAD)).max(MIN_WIDTH);
    let height = TITLE_HEIGHT + rows * (CELL_HEIGHT + PAD);
    let mut picture = RgbImage::from_pixel(width, height, Rgb(BACKGROUND));

    let title = match total_images {
        0 => "kiln contact sheet: no images yet".to_owned(),
        n if n > shown.len() => format!("kiln contact sheet: the first {} of {n} images", shown.len()),
        n => format!("kiln contact sheet: {n} image{}", if n == 1 { "" } else { "s" }),
    };
    let title_chars = ((width - 2 * PAD) / CHAR_WIDTH) as usize;
    draw_line(&mut picture, PAD, PAD, &title, title_chars, TEXT);

    let chars = ((CELL_WIDTH - 2 * PAD) / CHAR_WIDTH) as usize;
    for (n, cell) in shown.into_iter().enumerate() {
        let (Some((k, thumb)), Record::Images { id, prompt, sampler, steps, time_ms, .. }) =
            (cell.image, cell.record)
        else {
            continue;
        };
        let (x, y) = cell_origin(n);
        fill(&mut picture, x, y, CELL_WIDTH, CELL_HEIGHT, CELL);
        let path = dir.join(&thumb.file);
        let small = ::image::open(&path).map_err(|source| ContactError::Image { path, source })?.to_rgb8();
        let (tx, ty) = thumb_origin(n, small.width(), small.height());
        ::image::imageops::overlay(&mut picture, &small, tx.into(), ty.into());

        let lines = [
            (format!("{id} #{k}"), TEXT),
            (format!("seed {}", thumb.seed), TEXT),
            (sampler.clone(), MUTED),
            (
                format!("{steps} step{} · {}", if *steps == 1 { "" } else { "s" }, format_time(*time_ms)),
                MUTED,
            ),
            (prompt.clone(), MUTED),
        ];
        let text_top = y + 2 * PAD + THUMB_SIDE;
        for (i, (text, colour)) in lines.iter().enumerate() {
            draw_line(&mut picture, x + PAD, text_top + i as u32 * LINE_HEIGHT, text, chars, *colour);
        }
    }
    Ok(picture)
}

fn fill(picture: &mut RgbImage, x: u32, y: u32, width: u32, height: u32, colour: [u8; 3]) {
    for yy in y..(y + height).min(picture.height()) {
        for xx in x..(x + width).min(picture.width()) {
            picture.put_pixel(xx, yy, Rgb(colour));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::html::cells;
    use super::super::record::Thumb;
    use super::super::thumbnail;
    use super::*;

    /// A seeded noise picture (never flat).
    fn noise(width: u32, height: u32, seed: u32) -> RgbImage {
        let mut state = seed.max(1);
        RgbImage::from_fn(width, height, |_, _| {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            };
            Rgb([next(), next(), next()])
        })
    }

    fn record(dir: &Path, line: usize, pictures: &[RgbImage]) -> Record {
        let id = format!("req{line}");
        let images = pictures
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let file = thumbnail::file_name(&id, k);
                let (width, height) = thumbnail::write(p, &dir.join(&file)).unwrap();
                Thumb { seed: 100 + k as u32, file, width, height }
            })
            .collect();
        Record::Images {
            line,
            id,
            prompt: "a small red boat".into(),
            sampler: "K_EULER".into(),
            steps: 2,
            width: 512,
            height: 512,
            time_ms: 250.0,
            images,
        }
    }

    #[test]
    fn thumbnails_sit_in_their_cells_over_inked_captions_and_errors_take_no_cell() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("thumbs")).unwrap();
        let pictures: Vec<RgbImage> =
            (0..10).map(|s| noise(320, if s == 3 { 480 } else { 320 }, s + 1)).collect();
        let records = vec![
            record(dir.path(), 1, &pictures[..4]),
            Record::Error { line: 2, id: "bad".into(), message: "nope".into() },
            record(dir.path(), 3, &pictures[4..]),
        ];
        let cells = cells(&records);
        let picture = draw(dir.path(), &cells, 9, 10).unwrap();
        assert_eq!(picture.width(), PAD + COLUMNS * (CELL_WIDTH + PAD));
        assert_eq!(picture.height(), TITLE_HEIGHT + 2 * (CELL_HEIGHT + PAD), "9 images: two rows");

        let image_cells: Vec<&Cell> = cells.iter().filter(|c| c.image.is_some()).collect();
        for (n, cell) in image_cells.iter().enumerate() {
            let thumb = cell.image.unwrap().1;
            let (x, y) = cell_origin(n);
            if n >= 9 {
                let corner = *picture.get_pixel(x + PAD, y + PAD);
                assert_eq!(corner, Rgb(BACKGROUND), "only the first 9 are drawn");
                continue;
            }
            let small = ::image::open(dir.path().join(&thumb.file)).unwrap().to_rgb8();
            let (tx, ty) = thumb_origin(n, small.width(), small.height());
            let placed =
                ::image::imageops::crop_imm(&picture, tx, ty, small.width(), small.height()).to_image();
            assert_eq!(placed, small, "thumbnail {n} at ({tx}, {ty})");
            let caption_top = y + 2 * PAD + THUMB_SIDE;
            let inked = (caption_top..caption_top + LINE_HEIGHT)
                .flat_map(|yy| (x..x + CELL_WIDTH).map(move |xx| (xx, yy)))
                .filter(|&(xx, yy)| *picture.get_pixel(xx, yy) == Rgb(TEXT))
                .count();
            assert!(inked > 20, "cell {n}'s first caption line has text ({inked} pixels)");
        }
        // The tall image is centred horizontally in its square.
        assert_eq!(thumb_origin(3, 107, 160).0, cell_origin(3).0 + PAD + 26);
    }

    #[test]
    fn an_empty_run_draws_a_title_only_and_a_missing_thumbnail_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let picture = draw(dir.path(), &[], 64, 0).unwrap();
        assert_eq!((picture.width(), picture.height()), (MIN_WIDTH, TITLE_HEIGHT + CELL_HEIGHT + PAD));
        let mut records = vec![record(dir.path(), 1, &[])];
        if let Record::Images { images, .. } = &mut records[0] {
            images.push(Thumb { seed: 1, file: "thumbs/gone_0.jpg".into(), width: 160, height: 160 });
        }
        let err = draw(dir.path(), &cells(&records), 64, 1).unwrap_err();
        assert!(err.to_string().contains("gone_0.jpg"), "{err}");
    }
}
