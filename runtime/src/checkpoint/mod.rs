//! Safetensors checkpoints: memory-mapped files, layout and family detection, canonical names.

/// Errors reading or understanding a checkpoint. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {}
