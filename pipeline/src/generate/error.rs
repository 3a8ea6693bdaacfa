//! What can go wrong turning a job into images.

use crate::models::ModelError;
use crate::samplers::SamplerError;

/// A job that could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A request field the model cannot honour (the field name is OctoAI's).
    #[error("{field}: {message}")]
    Input {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Loading or running a network failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Building or stepping the sampler failed.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// A stage's output holds NaN or infinity (weights that overflow, or a corrupt checkpoint
    /// loaded without its weight check): the image would be black, so it is an error.
    #[error(
        "{stage} gave NaN or infinite values ({count} of {total}); the image would be black. The \
         checkpoint's weights or the request's numbers overflow the compute dtype"
    )]
    NotFinite {
        /// Where: `the text encoder (prompt)`, `UNet step 3 of 30`, `the VAE decoder`, ...
        stage: String,
        /// How many values are not finite.
        count: usize,
        /// How many values the stage gave.
        total: usize,
    },
    /// A tensor op failed.
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::Error),
    /// The caller's stop flag was set ([`super::Engine::render_until`]): the render ended at a
    /// model-call boundary, with no images.
    #[error("stopped before the render finished")]
    Stopped,
}

/// Result alias for generation.
pub type Result<T, E = GenerateError> = std::result::Result<T, E>;
