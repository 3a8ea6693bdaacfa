//! kiln-pipeline: the tokenizer, text encoders, UNet, VAE, samplers, OctoAI request schema and
//! the JSONL batch runner, built on kiln-runtime.
//!
//! The models and the runner land in later issues; the crate exists so the workspace has its
//! final shape from the start.
#![deny(missing_docs)]
