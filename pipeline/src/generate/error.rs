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
