//! The models' error type: what could not be loaded or run, naming the tensor or the input.

use kiln_runtime::checkpoint::CheckpointError;

/// Result alias for the models.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Everything that can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading the checkpoint failed (missing tensor, corrupt file, ...).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// An op refused its operands or the device failed.
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::Error),
    /// A weight's shape does not fit the model the configuration describes.
    #[error("weight {name} has shape {got:?}, the model's configuration needs {expected:?}")]
    WeightShape {
        /// Canonical tensor name.
        name: String,
        /// Shape the configuration implies.
        expected: Vec<usize>,
        /// Shape stored.
        got: Vec<usize>,
    },
    /// A tokenizer file of the checkpoint could not be read.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    /// An input does not fit the model (wrong channels, a size the UNet cannot halve, ...).
    #[error("{model}: {message}")]
    Input {
        /// The model refusing it.
        model: &'static str,
        /// What is wrong, with the shapes involved.
        message: String,
    },
}

impl ModelError {
    /// An [`ModelError::Input`] for `model`.
    pub fn input(model: &'static str, message: impl Into<String>) -> Self {
        ModelError::Input { model, message: message.into() }
    }
}
