//! Typed errors and warnings for checkpoints. Every error names the file (or folder) it is about
//! and says what is wrong with it, so a person can fix the file or report it.

use std::path::PathBuf;

use super::Component;
use super::family::Family;
use super::file::Dtype;
use crate::DType;

/// Errors reading or understanding a checkpoint. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The file or folder exists but could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a safetensors file at all (too short, an image, a pickle, random bytes).
    #[error("{}: not a safetensors file: {reason}", path.display())]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The header length in the first 8 bytes points past the end of the file.
    #[error(
        "{}: the safetensors header claims {header_len} bytes but the file has only {available} \
         bytes after the 8-byte length (truncated or corrupt header)",
        path.display()
    )]
    HeaderLength {
        /// The file.
        path: PathBuf,
        /// The header length read from the first 8 bytes.
        header_len: u64,
        /// The bytes actually present after those 8.
        available: u64,
    },
    /// The header is over one of kiln's bounds ([`super::header_limits`]), checked before it is
    /// parsed so that a small file cannot make kiln allocate many times its size.
    #[error("{}: the safetensors header is too large to read: {reason}", path.display())]
    HeaderTooLarge {
        /// The file.
        path: PathBuf,
        /// Which bound, and the limit.
        reason: String,
    },
    /// The header is not valid UTF-8 JSON, or not a JSON object.
    #[error("{}: the safetensors header is not valid JSON: {reason}", path.display())]
    HeaderJson {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, with its line and column.
        reason: String,
    },
    /// One entry of the header is malformed (missing field, unknown dtype, non-integer shape).
    #[error("{}: header entry for tensor `{tensor}` is malformed: {reason}", path.display())]
    HeaderEntry {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the header.
        tensor: String,
        /// What is wrong with the entry.
        reason: String,
    },
    /// The file ends before the data the header describes (an interrupted download or copy).
    #[error(
        "{}: file is truncated: the header describes {expected} bytes of tensor data but only \
         {actual} are present (tensor `{tensor}` ends past the end of the file)",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The first tensor (by offset) that does not fit.
        tensor: String,
        /// Bytes of tensor data the header describes.
        expected: u64,
        /// Bytes of tensor data present.
        actual: u64,
    },
    /// The file has bytes after the last tensor that no header entry accounts for.
    #[error(
        "{}: the header describes {described} bytes of tensor data but the file holds {actual}: \
         {} trailing bytes belong to no tensor",
        path.display(), actual - described
    )]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Bytes of tensor data the header describes.
        described: u64,
        /// Bytes of tensor data present.
        actual: u64,
    },
    /// A tensor's byte range ends before it begins.
    #[error("{}: tensor `{tensor}` has a reversed byte range [{begin}, {end})", path.display())]
    ReversedRange {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Start offset in the data region.
        begin: u64,
        /// End offset in the data region.
        end: u64,
    },
    /// A tensor's byte range starts outside the data region.
    #[error(
        "{}: tensor `{tensor}` has byte range [{begin}, {end}) outside the data region of \
         {data_len} bytes",
        path.display()
    )]
    OffsetsOutOfRange {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Start offset in the data region.
        begin: u64,
        /// End offset in the data region.
        end: u64,
        /// Size of the data region present in the file.
        data_len: u64,
    },
    /// Two tensors' byte ranges overlap.
    #[error(
        "{}: tensors `{first}` [{first_begin}, {first_end}) and `{second}` [{second_begin}, \
         {second_end}) overlap",
        path.display()
    )]
    Overlap {
        /// The file.
        path: PathBuf,
        /// The tensor that starts first.
        first: String,
        /// Its start offset.
        first_begin: u64,
        /// Its end offset.
        first_end: u64,
        /// The tensor that starts inside the first.
        second: String,
        /// Its start offset.
        second_begin: u64,
        /// Its end offset.
        second_end: u64,
    },
    /// A tensor's byte range leaves a hole after the previous tensor (safetensors packs them).
    #[error(
        "{}: tensor `{tensor}` starts at byte {begin} of the data region but the previous tensor \
         ends at {expected}: the header's ranges are not contiguous",
        path.display()
    )]
    Gap {
        /// The file.
        path: PathBuf,
        /// The tensor after the hole.
        tensor: String,
        /// Where the previous tensor ends.
        expected: u64,
        /// Where this one starts.
        begin: u64,
    },
    /// A tensor's byte range does not match its dtype and shape.
    #[error(
        "{}: tensor `{tensor}` is {dtype} {shape:?}, which needs {expected} bytes, but its byte \
         range holds {actual}",
        path.display()
    )]
    ByteCount {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its declared dtype.
        dtype: Dtype,
        /// Its declared shape.
        shape: Vec<usize>,
        /// Bytes that dtype and shape need (`u64::MAX` when the count overflows).
        expected: u64,
        /// Bytes in its range.
        actual: u64,
    },
    /// The safetensors crate rejected the file for a reason kiln's own checks did not name.
    #[error("{}: invalid safetensors file: {source}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The crate's error.
        source: safetensors::SafeTensorError,
    },
    /// A tensor is stored in a dtype kiln cannot convert to a compute dtype.
    #[error(
        "{}: tensor `{tensor}` is stored as {dtype}, which kiln cannot convert (supported: F64, \
         F32, F16, BF16, integer and BOOL)",
        path.display()
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its stored dtype.
        dtype: Dtype,
    },
    /// Neither a known single-file layout nor a diffusers folder.
    #[error("{}: unknown model layout: {reason}", path.display())]
    UnknownLayout {
        /// The file or folder.
        path: PathBuf,
        /// What was found instead, and a hint where one helps.
        reason: String,
    },
    /// A component the caller needs (or without which nothing can be identified) is absent.
    #[error(
        "{}: no {component} found{}{}",
        path.display(),
        family.map(|f| format!(" in this {f} checkpoint")).unwrap_or_default(),
        hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    MissingComponent {
        /// The checkpoint.
        path: PathBuf,
        /// The absent component.
        component: Component,
        /// The family, when it could be identified.
        family: Option<Family>,
        /// Where kiln looked, or how to supply it.
        hint: Option<String>,
    },
    /// The weights are of a model family kiln does not run.
    #[error("{}: unsupported model family: {found}", path.display())]
    UnsupportedFamily {
        /// The checkpoint.
        path: PathBuf,
        /// What the weights say (context dim, channels, embeddings) and what it looks like.
        found: String,
    },
    /// A JSON side file (config.json, model_index.json, a shard index) does not parse.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The JSON file.
        path: PathBuf,
        /// The parser's complaint, or the field that has the wrong type.
        reason: String,
    },
    /// A config.json says one thing and the weights another.
    #[error(
        "{}: `{field}` is {config} in the config but the weights say {weights}",
        path.display()
    )]
    ConfigMismatch {
        /// The config file (or the checkpoint, for a single file).
        path: PathBuf,
        /// The config field.
        field: String,
        /// The config's value.
        config: String,
        /// What the weights imply.
        weights: String,
    },
    /// A weight holds NaN or infinity: the file is corrupt, or was saved after training
    /// diverged, or its values do not fit the dtype it is read as. Every image would be NaN
    /// (black), so loading stops here.
    #[error(
        "{}: tensor `{tensor}`{} holds {count} NaN or infinite value(s) of {total} (stored as {stored}, \
         read as {read_as}): the weights are corrupt, or beyond what {read_as} holds",
        path.display(),
        if canonical == tensor { String::new() } else { format!(" (kiln's {canonical})") }
    )]
    NotFinite {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
        /// Its canonical name.
        canonical: String,
        /// How many of its values are not finite.
        count: usize,
        /// How many values it has.
        total: usize,
        /// Its stored dtype.
        stored: Dtype,
        /// The dtype it was read as.
        read_as: DType,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{}: no tensor `{name}` in this checkpoint", path.display())]
    MissingTensor {
        /// The checkpoint.
        path: PathBuf,
        /// The canonical name asked for.
        name: String,
    },
    /// A tensor has a shape that cannot be what its name says.
    #[error("{}: tensor `{tensor}` has shape {shape:?}: {reason}", path.display())]
    BadShape {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What shape was expected.
        reason: String,
    },
    /// Two stored tensors map to the same canonical name.
    #[error(
        "{}: `{first}` and `{second}` both map to canonical tensor `{canonical}`",
        path.display()
    )]
    DuplicateTensor {
        /// The checkpoint.
        path: PathBuf,
        /// The canonical name.
        canonical: String,
        /// The first stored name (with its file for sharded folders).
        first: String,
        /// The second stored name.
        second: String,
    },
    /// A shard index (`*.safetensors.index.json`) disagrees with its shards.
    #[error("{}: {reason}", path.display())]
    ShardIndex {
        /// The index file.
        path: PathBuf,
        /// The tensor or shard at fault.
        reason: String,
    },
    /// A diffusers component folder has no safetensors weights kiln can read.
    #[error("{}: no safetensors weights in this folder{}", path.display(), found_note(found))]
    NoWeights {
        /// The component folder.
        path: PathBuf,
        /// The files that are there (PyTorch `.bin` files, say).
        found: Vec<String>,
    },
    /// The UNet's block structure in a single file cannot be understood.
    #[error("{}: the UNet's block structure is not understood: {reason}", path.display())]
    UnetStructure {
        /// The checkpoint.
        path: PathBuf,
        /// What does not add up.
        reason: String,
    },
}

fn found_note(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(" (found: {}; kiln reads only .safetensors)", found.join(", "))
    }
}

/// Something odd about a checkpoint that does not stop it being used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// A component folder has no config.json: its sizes were read from the weights and the
    /// family's published config.
    MissingConfig {
        /// The component.
        component: Component,
        /// The config.json that is absent.
        path: PathBuf,
    },
    /// Both full-precision and variant weights exist in a component folder; one was chosen.
    SeveralWeightFiles {
        /// The component.
        component: Component,
        /// The file set that was used.
        used: PathBuf,
        /// The file sets that were not.
        ignored: Vec<PathBuf>,
    },
    /// A reduced-size test model read from a single file without a config folder: the fields
    /// the weights cannot tell (head counts, norm groups, sample size, time-id width) are the
    /// real family's values, which such a model probably does not use.
    ReducedModelDefaults {
        /// The components whose configs were inferred.
        components: Vec<Component>,
    },
    /// A model_index.json names a component whose folder is absent.
    DeclaredComponentAbsent {
        /// The component.
        component: Component,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::MissingConfig { component, path } => write!(
                f,
                "{component}: no {} — sizes inferred from the weights and the family's config",
                path.display()
            ),
            Warning::SeveralWeightFiles { component, used, ignored } => {
                let ignored: Vec<String> = ignored.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{component}: used {} (also present: {})", used.display(), ignored.join(", "))
            }
            Warning::ReducedModelDefaults { components } => {
                let names: Vec<String> = components.iter().map(|c| c.to_string()).collect();
                write!(
                    f,
                    "{}: a reduced-size model without config.json files; head counts, norm groups and \
                     sample size are the real family's, probably not this model's (pass a config folder)",
                    names.join(", ")
                )
            }
            Warning::DeclaredComponentAbsent { component } => {
                write!(f, "{component}: named in model_index.json but its folder is absent")
            }
        }
    }
}
