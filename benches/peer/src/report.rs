//! The results table (markdown, one row per case × dtype) and the notes under it: each engine's
//! errors in full, load times, and the output comparison's details.

use crate::cases::Precision;
use crate::inputs::{Agreement, agreement};
use crate::timing::{Run, Summary};

/// What one engine did for one row: a run, or the error that stopped it.
pub type Outcome = Result<Run, String>;

/// One row of the table.
pub struct Row {
    pub case: &'static str,
    pub precision: Precision,
    pub kiln: Outcome,
    pub candle: Outcome,
}

impl Row {
    fn agreement(&self) -> Option<Agreement> {
        match (&self.kiln, &self.candle) {
            (Ok(Run { output: Some(k), .. }), Ok(Run { output: Some(c), .. })) if k.len() == c.len() => {
                Some(agreement(k, c))
            }
            _ => None,
        }
    }
}

/// A time cell: `median (min–max)` in seconds, `loaded` when dry, `unsupported` on error.
fn time_cell(outcome: &Outcome) -> String {
    match outcome {
        Err(_) => "unsupported".to_string(),
        Ok(run) => match Summary::of(&run.times) {
            Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
            None => "loaded (dry)".to_string(),
        },
    }
}

fn median(outcome: &Outcome) -> Option<f64> {
    outcome.as_ref().ok().and_then(|r| Summary::of(&r.times)).map(|s| s.median)
}

/// Per case, each engine at its fastest dtype run (a table when some case ran more than one
/// dtype): candle has no CPU bf16, so kiln's bf16 row is compared with candle's f32 row here.
fn fastest(rows: &[Row]) -> String {
    let mut cases: Vec<&str> = rows.iter().map(|r| r.case).collect();
    cases.dedup();
    if cases.len() == rows.len() {
        return String::new();
    }
    let best = |case: &str, pick: fn(&Row) -> &Outcome| {
        rows.iter()
            .filter(|r| r.case == case)
            .filter_map(|r| median(pick(r)).map(|m| (m, r.precision)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    let mut out = String::from(
        "
Each engine at its fastest dtype (same run):

| case | kiln s (dtype) | candle s (dtype) | kiln/candle | kiln faster by |
|---|---|---|---|---|
",
    );
    for case in cases {
        let (k, c) = (best(case, |r| &r.kiln), best(case, |r| &r.candle));
        let cell =
            |b: Option<(f64, Precision)>| b.map_or("–".to_string(), |(m, p)| format!("{m:.2} ({p})"));
        let (ratio, faster) = match (k, c) {
            (Some((k, _)), Some((c, _))) if k > 0.0 && c > 0.0 => {
                (format!("{:.2}", k / c), format!("{:.2}x", c / k))
            }
            _ => ("–".to_string(), "–".to_string()),
        };
        out.push_str(&format!("| {case} | {} | {} | {ratio} | {faster} |\n", cell(k), cell(c)));
    }
    out
}

/// The table, then the notes.
pub fn render(rows: &[Row], notes: &[String]) -> String {
    let mut out = String::new();
    out.push_str("| case | dtype | kiln s (median, min–max) | candle s (median, min–max) | kiln/candle | output rel. diff |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        let ratio = match (median(&row.kiln), median(&row.candle)) {
            (Some(k), Some(c)) if c > 0.0 => format!("{:.2}", k / c),
            _ => "–".to_string(),
        };
        let diff = match row.agreement() {
            Some(a) if a.non_finite => "non-finite!".to_string(),
            Some(a) => format!("{:.1e}", a.rel_rms),
            None => "–".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {ratio} | {diff} |\n",
            row.case,
            row.precision,
            time_cell(&row.kiln),
            time_cell(&row.candle)
        ));
    }
    out.push_str(
        "\nkiln/candle: ratio of the medians (< 1: kiln faster). Output rel. diff: rms(kiln − candle) / \
         rms(candle) over the whole output, NHWC.\n",
    );
    out.push_str(&fastest(rows));
    for row in rows {
        let label = format!("{} {}", row.case, row.precision);
        for (engine, outcome) in [("kiln", &row.kiln), ("candle", &row.candle)] {
            match outcome {
                Err(e) => out.push_str(&format!("- {label} {engine}: unsupported: {e}\n")),
                Ok(run) => {
                    out.push_str(&format!("- {label} {engine}: load {:.1} s (not timed)\n", run.load_secs));
                }
            }
        }
        if let Some(a) = row.agreement() {
            out.push_str(&format!(
                "- {label}: rel. rms diff {:.2e}, max |diff| {:.2e}, candle output rms {:.3} (std {:.3}){}\n",
                a.rel_rms,
                a.max_abs,
                a.rms,
                a.std,
                if a.non_finite { ", NON-FINITE values" } else { "" }
            ));
        }
    }
    let mut seen: Vec<&String> = Vec::new();
    for note in notes {
        if !seen.contains(&note) {
            out.push_str(&format!("- Note: {note}\n"));
            seen.push(note);
        }
    }
    out
}
