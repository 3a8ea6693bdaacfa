//! `kiln render --contact-sheet`: a page and a picture to look at a batch run with.
//!
//! In the output directory:
//!
//! - `index.html` (and `page-2.html`, ... for big runs, [`PAGE_CELLS`] cells a page, linked
//!   previous / next): a self-contained page (inline CSS and JS, nothing from the network) with
//!   one cell per image, thumbnail and caption (id, image index, seed, sampler, steps, time,
//!   prompt), and one per error record with its message; a small inline script sorts the cells
//!   by run order, id, time or status (`index.html#sort=-time` opens sorted);
//! - `contact.png`: the first [`GRID_IMAGES`] thumbnails in a captioned grid, drawn in Rust;
//! - `thumbs/{id}_{k}.jpg`: the thumbnails both use (at most [`THUMB_SIDE`] pixels a side);
//! - `contact.jsonl`: the sidecar, one [`Record`] per finished request, so that a resumed run's
//!   sheet shows the earlier runs' requests too.
//!
//! Records are appended as requests finish (before their journal line, so that every journaled
//! request has its record; a record whose request is rerun after a kill is replaced); the page
//! and the picture are rewritten atomically (a temporary file, then a rename) at most every
//! [`REFRESH_INTERVAL`] while the run goes, and once at its end. Everything that comes from a
//! request is HTML-escaped ([`html::escape`], as Python's `html.escape`).

mod caption;
mod grid;
pub mod html;
mod record;
mod thumbnail;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::image::RgbImage;

pub use record::{Record, Thumb};

use crate::generate::Job;
use crate::request::RequestError;

/// The first page; later pages are `page-{n}.html`.
pub const INDEX_FILE: &str = "index.html";
/// The captioned thumbnail grid.
pub const GRID_FILE: &str = "contact.png";
/// The sidecar: one JSON record per finished request.
pub const SIDECAR_FILE: &str = "contact.jsonl";
/// The thumbnails' folder.
pub const THUMBS_DIR: &str = "thumbs";
/// The longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 160;
/// Cells (images and errors) on one HTML page.
pub const PAGE_CELLS: usize = 200;
/// Thumbnails in `contact.png`.
pub const GRID_IMAGES: usize = 64;
/// The least time between two rewrites during a run.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Why the contact sheet cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// A file of the sheet cannot be read, written or renamed.
    #[error("contact sheet: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A complete line of the sidecar is not a record kiln wrote.
    #[error(
        "contact sheet: {path}:{line}: not a contact-sheet record ({message}); remove the file to start the sheet afresh"
    )]
    Corrupt {
        /// The sidecar.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A thumbnail or the grid cannot be encoded or decoded.
    #[error("contact sheet: {path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: ::image::ImageError,
    },
}

/// The sheet of one output directory: the records so far and what is already written.
#[derive(Debug)]
pub struct ContactSheet {
    dir: PathBuf,
    sidecar: record::Sidecar,
    records: Vec<Record>,
    /// Cells written to the pages at the last rewrite (`None`: the pages must all be written).
    cells_written: Option<usize>,
    /// The run's image count when `contact.png` was last drawn (`None`: it must be drawn).
    grid_images_written: Option<usize>,
    last_write: Option<Instant>,
}

impl ContactSheet {
    /// Opens the sheet of `dir` (which must exist): reads the sidecar left by earlier runs
    /// (cutting off a partial last line) and creates the thumbnails' folder.
    pub fn open(dir: &Path) -> Result<ContactSheet, ContactError> {
        let thumbs = dir.join(THUMBS_DIR);
        std::fs::create_dir_all(&thumbs).map_err(|source| ContactError::Io { path: thumbs, source })?;
        let (sidecar, records) = record::Sidecar::open(&dir.join(SIDECAR_FILE))?;
        Ok(ContactSheet {
            dir: dir.to_path_buf(),
            sidecar,
            records,
            cells_written: None,
            grid_images_written: None,
            last_write: None,
        })
    }

    /// The records, in the order their requests finished.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Adds a finished request's images: writes their thumbnails and appends its record.
    pub fn add_images(
        &mut self,
        line: usize,
        id: &str,
        job: &Job,
        pictures: &[RgbImage],
        time_ms: f64,
    ) -> Result<(), ContactError> {
        let mut images = Vec::with_capacity(pictures.len());
        for (k, (picture, &seed)) in pictures.iter().zip(&job.seeds).enumerate() {
            let file = thumbnail::file_name(id, k);
            let (width, height) = thumbnail::write(picture, &self.dir.join(&file))?;
            images.push(Thumb { seed, file, width, height });
        }
        self.push(Record::Images {
            line,
            id: id.to_owned(),
            prompt: job.prompt.clone(),
            sampler: job.sampler.to_string(),
            steps: job.steps,
            width: job.width,
            height: job.height,
            time_ms,
            images,
        })
    }

    /// Adds a request's error record.
    pub fn add_error(&mut self, line: usize, id: &str, error: &RequestError) -> Result<(), ContactError> {
        self.push(Record::Error { line, id: id.to_owned(), message: error.to_string() })
    }

    /// Rewrites the page and the picture if [`REFRESH_INTERVAL`] has passed since the last
    /// rewrite (or there was none).
    pub fn refresh(&mut self) -> Result<(), ContactError> {
        match self.last_write {
            Some(at) if at.elapsed() < REFRESH_INTERVAL => Ok(()),
            _ => self.write(),
        }
    }

    /// Rewrites what changed since the last rewrite: the pages from the first changed one on
    /// (and the page before it, whose "next" link may be new), and `contact.png` when the image
    /// count changed (its title counts them all).
    pub fn write(&mut self) -> Result<(), ContactError> {
        let cells = html::cells(&self.records);
        let first_page = match self.cells_written {
            Some(written) if written == cells.len() => None,
            Some(written) => Some(written.saturating_sub(1) / PAGE_CELLS),
            None => Some(0),
        };
        let page_count = cells.len().div_ceil(PAGE_CELLS).max(1);
        for page in first_page.into_iter().flat_map(|first| first..page_count) {
            let text = html::page(&cells, page, PAGE_CELLS);
            write_atomically(&self.dir.join(html::page_file(page)), text.as_bytes())?;
        }
        self.cells_written = Some(cells.len());

        let images = cells.iter().filter(|c| c.image.is_some()).count();
        if self.grid_images_written != Some(images) {
            let picture = grid::draw(&self.dir, &cells, GRID_IMAGES, images)?;
            let path = self.dir.join(GRID_FILE);
            let mut bytes = Vec::new();
            picture
                .write_to(&mut std::io::Cursor::new(&mut bytes), ::image::ImageFormat::Png)
                .map_err(|source| ContactError::Image { path: path.clone(), source })?;
            write_atomically(&path, &bytes)?;
            self.grid_images_written = Some(images);
        }
        self.last_write = Some(Instant::now());
        Ok(())
    }

    /// Appends a record to the sidecar and the list; one with the same line and id (a request
    /// rerun after a kill between its record and its journal line) replaces it.
    fn push(&mut self, record: Record) -> Result<(), ContactError> {
        self.sidecar.append(&record)?;
        if let Some(old) = self.records.iter().position(|r| r.key() == record.key()) {
            self.records.remove(old);
            self.cells_written = None;
            self.grid_images_written = None;
        }
        self.records.push(record);
        Ok(())
    }
}

/// Writes `path` through a temporary file beside it and a rename, so that a reader (a browser
/// reloading the page) never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ContactError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)
        .map_err(|source| ContactError::Io { path: temporary.clone(), source })?;
    std::fs::rename(&temporary, path).map_err(|source| ContactError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestError;

    fn error(n: usize) -> RequestError {
        RequestError::field("width", format!("bad width on line {n}"), "value_error")
    }

    fn job(seeds: Vec<u32>) -> Job {
        let text =
            r#"{"prompt": "a <red> boat", "width": 512, "height": 512, "steps": 3, "sampler": "DDIM"}"#;
        let request = crate::request::parse_line(text, 1).request.unwrap();
        let mut job = request.resolve(kiln_runtime::checkpoint::Family::Sd15).unwrap().job;
        job.seeds = seeds;
        job
    }

    fn gradient(width: u32, height: u32, shift: u8) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| ::image::Rgb([x as u8 ^ shift, y as u8, (x + y) as u8]))
    }

    #[test]
    fn pages_are_added_as_cells_pass_a_page_and_earlier_pages_get_their_next_link() {
        let dir = tempfile::tempdir().unwrap();
        let mut sheet = ContactSheet::open(dir.path()).unwrap();
        for n in 0..PAGE_CELLS {
            sheet.add_error(n + 1, &format!("e{n}"), &error(n)).unwrap();
        }
        sheet.write().unwrap();
        let index = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        assert_eq!(index.matches("<figure ").count(), PAGE_CELLS);
        assert!(!index.contains("page-2.html") && !dir.path().join("page-2.html").exists());
        assert!(dir.path().join(GRID_FILE).exists(), "drawn with no images yet");

        sheet.add_error(PAGE_CELLS + 1, "last", &error(PAGE_CELLS)).unwrap();
        sheet.refresh().unwrap();
        assert!(!dir.path().join("page-2.html").exists(), "a refresh within the interval writes nothing");
        sheet.write().unwrap();
        let index = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        assert!(index.contains(r#"href="page-2.html""#), "page 1 links the new page");
        let second = std::fs::read_to_string(dir.path().join("page-2.html")).unwrap();
        assert!(second.contains(r#"data-id="last""#) && second.contains(r#"href="index.html""#));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn images_get_thumbnails_and_a_reopened_sheet_keeps_them_with_reruns_replacing_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut sheet = ContactSheet::open(dir.path()).unwrap();
        let pictures = [gradient(512, 512, 0), gradient(512, 512, 0x55)];
        sheet.add_images(1, "boat", &job(vec![7, 8]), &pictures, 1234.0).unwrap();
        sheet.add_error(2, "bad", &error(2)).unwrap();
        sheet.write().unwrap();
        drop(sheet);

        let mut sheet = ContactSheet::open(dir.path()).unwrap();
        assert_eq!(sheet.records().len(), 2);
        let Record::Images { prompt, sampler, steps, images, time_ms, .. } = &sheet.records()[0] else {
            panic!("{:?}", sheet.records()[0]);
        };
        assert_eq!(
            (prompt.as_str(), sampler.as_str(), *steps, *time_ms),
            ("a <red> boat", "DDIM", 3, 1234.0)
        );
        assert_eq!(images.iter().map(|t| t.seed).collect::<Vec<_>>(), [7, 8]);
        for thumb in images {
            let small = ::image::open(dir.path().join(&thumb.file)).unwrap().to_rgb8();
            assert_eq!(small.dimensions(), (THUMB_SIDE, THUMB_SIDE), "{}", thumb.file);
        }
        // The same request again (its journal line was lost to a kill): it replaces the first.
        sheet.add_images(1, "boat", &job(vec![9]), &pictures[..1], 99.0).unwrap();
        sheet.write().unwrap();
        assert_eq!(sheet.records().len(), 2);
        assert_eq!(sheet.records()[0].id(), "bad");
        let index = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        assert_eq!(index.matches("<figure ").count(), 2, "one error, one image");
        assert!(index.contains("seed 9") && !index.contains("seed 7"));
        assert!(index.contains("a &lt;red&gt; boat") && !index.contains("<red>"));
        assert_eq!(ContactSheet::open(dir.path()).unwrap().records(), sheet.records());
    }
}
