//! The sheet's HTML pages: one cell per image or error record, [`super::PAGE_CELLS`] a page,
//! with the CSS and the sorting script inline (`page.css`, `page.js`), so that a page needs
//! nothing but its thumbnails.

use std::fmt::Write as _;

use super::record::{Record, Thumb};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// One cell of the grid: an image of a response, or an error record.
#[derive(Clone, Copy, Debug)]
pub struct Cell<'a> {
    /// Its place in the run's order (0-based, over all pages).
    pub order: usize,
    /// The request's record.
    pub record: &'a Record,
    /// The image's index in its request and its thumbnail; `None` for an error record.
    pub image: Option<(usize, &'a Thumb)>,
}

/// The cells of `records`, in order: one per image, one per error record.
pub fn cells(records: &[Record]) -> Vec<Cell<'_>> {
    let mut cells = Vec::new();
    for record in records {
        match record {
            Record::Images { images, .. } => {
                for (k, thumb) in images.iter().enumerate() {
                    cells.push(Cell { order: cells.len(), record, image: Some((k, thumb)) });
                }
            }
            Record::Error { .. } => cells.push(Cell { order: cells.len(), record, image: None }),
        }
    }
    cells
}

/// The file of page `page` (0-based): `index.html`, then `page-2.html`, `page-3.html`, ...
pub fn page_file(page: usize) -> String {
    if page == 0 { super::INDEX_FILE.to_owned() } else { format!("page-{}.html", page + 1) }
}

/// Escapes text for HTML element content and quoted attribute values, as Python's
/// `html.escape(text, quote=True)` does: `&`, `<`, `>`, `"` and `'`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration for a caption: milliseconds under a second, else seconds.
pub fn format_time(ms: f64) -> String {
    if ms < 1000.0 { format!("{ms:.0} ms") } else { format!("{:.1} s", ms / 1000.0) }
}

/// Page `page` (0-based) of `cells`, `per_page` cells a page, with links to the pages before
/// and after it.
pub fn page(cells: &[Cell], page: usize, per_page: usize) -> String {
    let per_page = per_page.max(1);
    let start = (page * per_page).min(cells.len());
    let end = (start + per_page).min(cells.len());
    let shown = &cells[start..end];
    let images = shown.iter().filter(|c| c.image.is_some()).count();
    let errors = shown.len() - images;

    let mut nav = String::new();
    if page > 0 {
        let _ = write!(nav, r#"<a rel="prev" href="{}">&larr; page {page}</a> "#, page_file(page - 1));
    }
    let _ = write!(nav, "<span>page {}</span>", page + 1);
    if end < cells.len() {
        let _ = write!(nav, r#" <a rel="next" href="{}">page {} &rarr;</a>"#, page_file(page + 1), page + 2);
    }
    let range =
        if shown.is_empty() { "no cells yet".to_owned() } else { format!("cells {}–{end}", start + 1) };

    let mut out = String::with_capacity(1024 + shown.len() * 600);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kiln contact sheet, page {number}</title>
<style>
{STYLE}</style>
</head>
<body>
<header>
<h1>kiln contact sheet</h1>
<p id="summary">{range}: {images} image{images_s}, {errors} error{errors_s}</p>
<nav>{nav}</nav>
<p id="sort">sort by
<button type="button" data-sort="order">run order</button>
<button type="button" data-sort="id">id</button>
<button type="button" data-sort="time">time</button>
<button type="button" data-sort="status">status</button>
</p>
</header>
<main id="grid">
"#,
        number = page + 1,
        images_s = if images == 1 { "" } else { "s" },
        errors_s = if errors == 1 { "" } else { "s" },
    );
    for cell in shown {
        cell_html(&mut out, cell);
    }
    let _ = write!(
        out,
        "</main>\n<footer><nav>{nav}</nav></footer>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

/// One `<figure>`: the thumbnail and its caption, or the error message.
fn cell_html(out: &mut String, cell: &Cell) {
    let id = escape(cell.record.id());
    let line = cell.record.line();
    match (cell.record, cell.image) {
        (Record::Images { prompt, sampler, steps, width, height, time_ms, .. }, Some((k, thumb))) => {
            let prompt = escape(prompt);
            let _ = write!(
                out,
                r#"<figure class="cell ok" data-order="{order}" data-id="{id}" data-k="{k}" data-time="{time_ms}" data-status="ok">
<img src="{src}" width="{tw}" height="{th}" alt="{id} #{k}">
<figcaption><span class="id">{id}</span> <span class="k">#{k}</span> · seed {seed}<br>{sampler} · {steps} step{steps_s} · {time} · {width}×{height}<br><span class="prompt" title="{prompt}">{prompt}</span></figcaption>
</figure>
"#,
                order = cell.order,
                src = escape(&thumb.file),
                tw = thumb.width,
                th = thumb.height,
                seed = thumb.seed,
                sampler = escape(sampler),
                steps_s = if *steps == 1 { "" } else { "s" },
                time = format_time(*time_ms),
            );
        }
        (record, _) => {
            let message = match record {
                Record::Error { message, .. } => escape(message),
                Record::Images { .. } => String::new(),
            };
            let _ = write!(
                out,
                r#"<figure class="cell error" data-order="{order}" data-id="{id}" data-k="0" data-time="" data-status="error">
<div class="message">{message}</div>
<figcaption><span class="id">{id}</span> · line {line} · error</figcaption>
</figure>
"#,
                order = cell.order,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        let images = |line: usize, n: usize| Record::Images {
            line,
            id: format!("r{line}"),
            prompt: "a <boat>".into(),
            sampler: "K_EULER".into(),
            steps: 1,
            width: 512,
            height: 512,
            time_ms: 1500.0,
            images: (0..n)
                .map(|k| Thumb {
                    seed: k as u32,
                    file: format!("thumbs/r{line}_{k}.jpg"),
                    width: 160,
                    height: 160,
                })
                .collect(),
        };
        vec![
            Record::Error { line: 1, id: "e&1".into(), message: "body.width: too <big>".into() },
            images(2, 3),
            images(3, 1),
        ]
    }

    #[test]
    fn each_image_and_each_error_is_a_cell_in_run_order() {
        let records = records();
        let cells = cells(&records);
        let summary: Vec<(usize, &str, Option<usize>)> =
            cells.iter().map(|c| (c.order, c.record.id(), c.image.map(|(k, _)| k))).collect();
        assert_eq!(
            summary,
            [
                (0, "e&1", None),
                (1, "r2", Some(0)),
                (2, "r2", Some(1)),
                (3, "r2", Some(2)),
                (4, "r3", Some(0))
            ]
        );
    }

    #[test]
    fn pages_hold_their_share_and_link_their_neighbours() {
        let records = records();
        let cells = cells(&records);
        let pages: Vec<String> = (0..3).map(|p| page(&cells, p, 2)).collect();
        let figures = |html: &str| html.matches("<figure ").count();
        assert_eq!(pages.iter().map(|p| figures(p)).collect::<Vec<_>>(), [2, 2, 1]);
        assert!(!pages[0].contains(r#"rel="prev""#) && pages[0].contains(r#"href="page-2.html""#));
        assert!(pages[1].contains(r#"href="index.html""#) && pages[1].contains(r#"href="page-3.html""#));
        assert!(pages[2].contains(r#"href="page-2.html""#) && !pages[2].contains(r#"rel="next""#));
        assert!(pages[2].contains(r#"data-order="4""#), "the order counts over all pages");
        assert!(pages[0].contains("cells 1–2: 1 image, 1 error"), "{}", pages[0]);
        assert_eq!((page_file(0), page_file(4)), ("index.html".to_owned(), "page-5.html".to_owned()));
        let empty = page(&[], 0, 200);
        assert!(empty.contains("no cells yet") && !empty.contains("<figure "));
    }

    #[test]
    fn request_text_is_escaped_everywhere_and_the_page_needs_no_network() {
        let records = records();
        let cells = cells(&records);
        let html = page(&cells, 0, 200);
        assert!(!html.contains("<boat>") && !html.contains("<big>") && !html.contains("e&1"));
        assert!(html.contains(r#"title="a &lt;boat&gt;""#));
        assert!(html.contains(r#"data-id="e&amp;1""#));
        assert!(html.contains("body.width: too &lt;big&gt;"));
        assert!(html.contains("K_EULER · 1 step · 1.5 s"), "{html}");
        for remote in ["http:", "https:", "//cdn", "@import"] {
            assert!(!html.contains(remote), "the page loads {remote}");
        }
    }

    /// `fixtures/contact/escape.json` (tools/make_contact_fixtures.py): Python's
    /// `html.escape(text, quote=True)` of hostile and seeded random texts.
    #[test]
    fn escaping_equals_pythons_html_escape() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/contact/escape.json");
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(cases.len() > 30, "{} cases", cases.len());
        for case in &cases {
            let (text, escaped) = (case["text"].as_str().unwrap(), case["escaped"].as_str().unwrap());
            assert_eq!(escape(text), escaped, "text {text:?}");
        }
    }

    #[test]
    fn times_read_as_milliseconds_or_seconds() {
        assert_eq!(format_time(42.4), "42 ms");
        assert_eq!(format_time(1234.0), "1.2 s");
    }
}
