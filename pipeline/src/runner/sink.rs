//! Where a run's records go: the journal, the summary, the contact sheet, saved images, and a
//! line on standard error for each failure.

use std::path::Path;

use super::renderer::{Done, Outcome, encode_response};
use super::{
    Journal, Prepared, Progress, RunError, RunOptions, Summary, UnusableCheckpoint, contact, image_path,
};
use crate::request::{ErrorRecord, RequestError};

/// The run's outputs.
pub(super) struct Sink {
    pub journal: Journal,
    pub summary: Summary,
    pub progress: Progress,
    /// `--contact-sheet`'s sheet; `None` without the flag.
    pub contact: Option<contact::ContactSheet>,
}

impl Sink {
    /// Appends a request's error record.
    pub fn fail(&mut self, line: usize, id: &str, error: RequestError) -> Result<(), RunError> {
        self.progress.message(&format!("line {line} (id {id:?}): {error}"));
        if let Some(sheet) = &mut self.contact {
            sheet.add_error(line, id, &error)?;
        }
        self.journal.append(id, &ErrorRecord { id: id.to_owned(), error })?;
        self.summary.failed += 1;
        Ok(())
    }

    /// Leaves a line without a record because its checkpoint (`path`) cannot be opened or
    /// loaded: the fault is the file's, not the request's, so a rerun renders the line once the
    /// file is fixed. Said on standard error once per checkpoint.
    pub fn unusable_checkpoint(&mut self, path: &Path, reason: &str) {
        if UnusableCheckpoint::tally(&mut self.summary.unusable, path, reason) {
            self.progress.message(&format!(
                "cannot use the checkpoint {}: {reason}; its requests get no record and are left \
                 for a rerun",
                path.display()
            ));
        }
    }

    /// Writes what rendering the request on `line` came to.
    pub fn record(
        &mut self,
        line: usize,
        prepared: Prepared,
        outcome: Outcome,
        options: &RunOptions,
    ) -> Result<(), RunError> {
        match outcome {
            Outcome::Done(done) => self.respond(line, &prepared, &done, options),
            Outcome::Failed(error) => self.fail(line, &prepared.id, error),
            Outcome::Unusable(reason) => {
                self.unusable_checkpoint(&prepared.model, &reason);
                Ok(())
            }
        }
    }

    /// Encodes a request's images, saves them with `--save-images` (before the response line, so
    /// a response in the journal always has its files), and appends the response.
    fn respond(
        &mut self,
        line: usize,
        prepared: &Prepared,
        done: &Done,
        options: &RunOptions,
    ) -> Result<(), RunError> {
        for warning in &done.prompt_warnings {
            self.progress.message(&format!("line {line} (id {:?}): warning: {warning}", prepared.id));
        }
        let (response, files) = match encode_response(prepared, done) {
            Ok(encoded) => encoded,
            Err(error) => return self.fail(line, &prepared.id, error),
        };
        if options.save_images {
            let extension = prepared.resolved.image_encoding.extension();
            for (k, bytes) in files.iter().enumerate() {
                let path = image_path(&options.out_dir, &prepared.id, k, extension);
                std::fs::write(&path, bytes).map_err(|source| RunError::SaveImage { path, source })?;
            }
        }
        if let Some(sheet) = &mut self.contact {
            sheet.add_images(line, &prepared.id, &done.job, &done.pictures, done.prediction_time_ms)?;
        }
        self.journal.append(&prepared.id, &response)?;
        self.summary.done += 1;
        self.summary.images += response.images.len();
        Ok(())
    }
}
