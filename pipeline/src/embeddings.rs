//! Textual-inversion embeddings: learned token vectors a trigger word stands for in prompts.
//!
//! Files as users download them, all `.safetensors`: A1111's `emb_params` `[n, 768]` and the
//! `.pt`-era `string_to_param.*` tensor saved as safetensors (SD 1.5), diffusers' single tensor
//! of any name, and SDXL's `clip_l` `[n, 768]` + `clip_g` `[n, 1280]` pair (one set of vectors
//! per text encoder). `n` vectors make the trigger stand for `n` tokens.

use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::{CheckpointError, SafetensorsFile};

/// Why an embedding cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The file cannot be read as safetensors.
    #[error(transparent)]
    File(#[from] CheckpointError),
    /// No tensor laid out as an embedding.
    #[error("{}: not a textual-inversion embedding ({reason})", path.display())]
    NotAnEmbedding {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// An embedding for the other family, or of another width than the model's text encoder.
    #[error("{}: {found}; this {model} model needs {needs}", path.display())]
    WrongModel {
        /// The file.
        path: PathBuf,
        /// What the file holds.
        found: String,
        /// The model's family.
        model: String,
        /// What it would take.
        needs: String,
    },
    /// A trigger word kiln cannot add.
    #[error("trigger word {trigger:?}: {reason}")]
    Trigger {
        /// The word.
        trigger: String,
        /// Why.
        reason: String,
    },
}

/// Vectors `[rows, width]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Vectors {
    /// How many vectors (tokens the trigger stands for).
    pub rows: usize,
    /// Their width (the text encoder's hidden size).
    pub width: usize,
    /// The values.
    pub values: Vec<f32>,
}

/// An embedding file read.
#[derive(Clone, Debug)]
pub struct EmbeddingFile {
    path: PathBuf,
    /// One set of vectors for a single-encoder model (SD 1.5).
    single: Option<Vectors>,
    /// SDXL's sets: for CLIP-L (`clip_l`) and OpenCLIP-G (`clip_g`).
    pair: Option<(Vectors, Vectors)>,
}

impl EmbeddingFile {
    /// Reads the embedding at `path`.
    pub fn open(path: &Path) -> Result<EmbeddingFile, EmbeddingError> {
        let file = SafetensorsFile::open(path)?;
        let not = |reason: String| EmbeddingError::NotAnEmbedding { path: path.to_path_buf(), reason };
        let read = |name: &str| -> Result<Vectors, EmbeddingError> {
            let view = file.get(name).ok_or_else(|| not(format!("no tensor {name}")))?;
            let (rows, width) = match *view.shape() {
                [width] => (1, width),
                [rows, width] => (rows, width),
                ref other => {
                    return Err(not(format!("{name} has shape {other:?}; expected [vectors, width]")));
                }
            };
            if rows == 0 || width == 0 {
                return Err(not(format!("{name} is empty")));
            }
            Ok(Vectors { rows, width, values: view.to_f32_vec()? })
        };
        let names: Vec<&str> = file.tensors().map(|t| t.name()).collect();
        let (single, pair) = if names.contains(&"clip_l") && names.contains(&"clip_g") {
            (None, Some((read("clip_l")?, read("clip_g")?)))
        } else if names.contains(&"emb_params") {
            (Some(read("emb_params")?), None)
        } else if let Some(name) = names.iter().find(|n| n.starts_with("string_to_param.")) {
            (Some(read(name)?), None)
        } else if let [name] = names.as_slice() {
            (Some(read(name)?), None)
        } else {
            let listed: Vec<&str> = names.iter().take(4).copied().collect();
            return Err(not(format!(
                "{} tensors ({}), none of emb_params, string_to_param.*, clip_l + clip_g",
                names.len(),
                listed.join(", ")
            )));
        };
        Ok(EmbeddingFile { path: path.to_path_buf(), single, pair })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The family the file's layout and widths say: `SDXL` for a `clip_l` + `clip_g` pair,
    /// `SD 1.5` for one 768-wide set.
    pub fn family(&self) -> Option<&'static str> {
        match (&self.single, &self.pair) {
            (_, Some(_)) => Some("SDXL"),
            (Some(v), None) if v.width == 768 => Some("SD 1.5"),
            _ => None,
        }
    }

    /// How many vectors the trigger stands for.
    pub fn vectors(&self) -> usize {
        match (&self.single, &self.pair) {
            (_, Some((l, _))) => l.rows,
            (Some(v), None) => v.rows,
            (None, None) => 0,
        }
    }

    /// The vectors for a model whose text encoders have `widths` (in pipeline order: CLIP-L then
    /// OpenCLIP-G for SDXL, OpenCLIP-G alone for the refiner, CLIP-L alone for SD 1.5), one set
    /// per encoder; `sdxl` says which of the single-encoder cases `widths` is.
    pub fn for_encoders(
        &self,
        widths: &[usize],
        sdxl: bool,
        model: &str,
    ) -> Result<Vec<&Vectors>, EmbeddingError> {
        let wrong = |found: String, needs: String| EmbeddingError::WrongModel {
            path: self.path.clone(),
            found,
            model: model.to_owned(),
            needs,
        };
        let sets: Vec<&Vectors> = match (&self.single, &self.pair, sdxl, widths.len()) {
            (Some(v), _, false, 1) => vec![v],
            (_, Some((l, g)), true, 2) => vec![l, g],
            (_, Some((_, g)), true, 1) => vec![g],
            (Some(v), None, true, _) => {
                return Err(wrong(
                    format!(
                        "an embedding for one text encoder ({} vectors {} wide, SD 1.5's layout)",
                        v.rows, v.width
                    ),
                    "SDXL's pair of clip_l and clip_g vectors".into(),
                ));
            }
            (None, Some(_), false, _) => {
                return Err(wrong("an SDXL embedding (clip_l + clip_g)".into(), "one set of vectors".into()));
            }
            _ => {
                return Err(wrong(
                    "no vectors for this model's text encoders".into(),
                    format!("{} sets", widths.len()),
                ));
            }
        };
        if let [l, g] = sets.as_slice()
            && l.rows != g.rows
        {
            return Err(wrong(
                format!("{} clip_l vectors but {} clip_g vectors", l.rows, g.rows),
                "as many of each".into(),
            ));
        }
        for (set, &width) in sets.iter().zip(widths) {
            if set.width != width {
                return Err(wrong(format!("vectors {} wide", set.width), format!("vectors {width} wide")));
            }
        }
        Ok(sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(rows: usize, width: usize) -> Vectors {
        Vectors { rows, width, values: (0..rows * width).map(|i| i as f32 * 0.01 - 0.3).collect() }
    }

    fn file(single: Option<Vectors>, pair: Option<(Vectors, Vectors)>) -> EmbeddingFile {
        EmbeddingFile { path: "e.safetensors".into(), single, pair }
    }

    #[test]
    fn each_model_takes_the_sets_of_its_encoders_at_their_widths() {
        let sd15 = file(Some(vectors(3, 768)), None);
        assert_eq!((sd15.family(), sd15.vectors()), (Some("SD 1.5"), 3));
        assert_eq!(sd15.for_encoders(&[768], false, "SD 1.5").unwrap(), [&vectors(3, 768)]);
        let err = sd15.for_encoders(&[1024], false, "SD 2.x").unwrap_err().to_string();
        assert!(err.contains("vectors 768 wide") && err.contains("vectors 1024 wide"), "{err}");

        let xl = file(None, Some((vectors(2, 768), vectors(2, 1280))));
        assert_eq!(xl.family(), Some("SDXL"));
        assert_eq!(xl.for_encoders(&[768, 1280], true, "SDXL").unwrap().len(), 2);
        assert_eq!(xl.for_encoders(&[1280], true, "SDXL refiner").unwrap(), [&vectors(2, 1280)]);
        let err = xl.for_encoders(&[768, 1024], true, "SDXL").unwrap_err().to_string();
        assert!(err.contains("1280 wide"), "{err}");

        let uneven = file(None, Some((vectors(2, 768), vectors(3, 1280))));
        assert!(uneven.for_encoders(&[768, 1280], true, "SDXL").unwrap_err().to_string().contains("as many"));
    }
}
