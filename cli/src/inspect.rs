//! `kiln inspect`: what a checkpoint is, in words or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use kiln_runtime::checkpoint::{
    Checkpoint, ComponentConfig, ComponentInfo, ConfigSource, OpenOptions, TextEncoderConfig, Transform,
    UNetConfig, VaeConfig,
};

/// Arguments of `kiln inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A single .safetensors file, a diffusers folder, or its model_index.json.
    path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also list every canonical tensor: shape, stored dtype, and where it comes from.
    #[arg(long)]
    tensors: bool,
    /// In a diffusers folder, prefer this weight variant (`fp16`).
    #[arg(long)]
    variant: Option<String>,
    /// For a single file, read component configs from this diffusers folder.
    #[arg(long)]
    config_dir: Option<PathBuf>,
}

/// Runs `kiln inspect`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let options = OpenOptions {
        variant: args.variant.clone(),
        config_dir: args.config_dir.clone(),
        ..OpenOptions::default()
    };
    let ckpt =
        Checkpoint::open_with(&args.path, &options).with_context(|| "cannot inspect the checkpoint")?;
    let out = if args.json { json(&ckpt, args.tensors)? } else { text(&ckpt, args.tensors) };
    print!("{out}");
    Ok(())
}

/// One canonical tensor, for `--tensors`.
#[derive(serde::Serialize)]
struct TensorRow<'a> {
    name: &'a str,
    shape: &'a [usize],
    dtype: String,
    file: String,
    source: &'a str,
    transform: Transform,
}

fn tensor_rows(ckpt: &Checkpoint) -> anyhow::Result<Vec<TensorRow<'_>>> {
    ckpt.names()
        .map(|name| {
            let v = ckpt.view(name)?;
            Ok(TensorRow {
                name: v.name,
                shape: v.shape,
                dtype: v.source.dtype().to_string(),
                file: v.source.file().display().to_string(),
                source: v.source.name(),
                transform: v.transform,
            })
        })
        .collect()
}

fn json(ckpt: &Checkpoint, with_tensors: bool) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        path: String,
        format: kiln_runtime::checkpoint::Format,
        family: kiln_runtime::checkpoint::Family,
        family_name: String,
        reduced_size: bool,
        parameters: u64,
        components: &'a [ComponentInfo],
        missing_components: &'a [kiln_runtime::checkpoint::Component],
        ignored: &'a [kiln_runtime::checkpoint::IgnoredTensor],
        unrecognised: &'a [kiln_runtime::checkpoint::UnrecognisedTensor],
        warnings: &'a [kiln_runtime::checkpoint::Warning],
        #[serde(skip_serializing_if = "Option::is_none")]
        tensors: Option<Vec<TensorRow<'a>>>,
    }
    let report = Report {
        path: ckpt.path().display().to_string(),
        format: ckpt.format(),
        family: ckpt.family(),
        family_name: ckpt.family().to_string(),
        reduced_size: ckpt.is_reduced(),
        parameters: ckpt.components().iter().map(|c| c.parameters).sum(),
        components: ckpt.components(),
        missing_components: ckpt.missing_components(),
        ignored: ckpt.ignored(),
        unrecognised: ckpt.unrecognised(),
        warnings: ckpt.warnings(),
        tensors: if with_tensors { Some(tensor_rows(ckpt)?) } else { None },
    };
    Ok(serde_json::to_string_pretty(&report)? + "\n")
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn text(ckpt: &Checkpoint, with_tensors: bool) -> String {
    let mut s = String::new();
    let total: u64 = ckpt.components().iter().map(|c| c.parameters).sum();
    let reduced = if ckpt.is_reduced() { " (reduced-size test model: recognised by topology)" } else { "" };
    let _ = writeln!(s, "checkpoint  {}", ckpt.path().display());
    let _ = writeln!(s, "format      {}", ckpt.format());
    let _ = writeln!(s, "family      {}{reduced}", ckpt.family());
    let _ = writeln!(s, "parameters  {} in {} canonical tensors", thousands(total), ckpt.len());
    for c in ckpt.components() {
        let _ = writeln!(s);
        component(&mut s, c);
    }
    let _ = writeln!(s);
    let missing: Vec<String> = ckpt.missing_components().iter().map(|c| c.to_string()).collect();
    if missing.is_empty() {
        let _ = writeln!(s, "missing components: none");
    } else {
        let _ = writeln!(
            s,
            "missing components: {} (a {} pipeline needs them; supply them separately)",
            missing.join(", "),
            ckpt.family()
        );
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for i in ckpt.ignored() {
        *reasons.entry(i.reason).or_default() += 1;
    }
    let _ = writeln!(s, "ignored tensors: {}", ckpt.ignored().len());
    for (reason, n) in reasons {
        let _ = writeln!(s, "  {n:>5} x {reason}");
    }
    let _ = writeln!(s, "unrecognised tensors: {}", ckpt.unrecognised().len());
    for u in ckpt.unrecognised() {
        let _ = writeln!(s, "  {} {} {:?} ({})", u.name, u.dtype, u.shape, u.file.display());
    }
    if !ckpt.warnings().is_empty() {
        let _ = writeln!(s, "warnings:");
        for w in ckpt.warnings() {
            let _ = writeln!(s, "  {w}");
        }
    }
    if with_tensors {
        let _ = writeln!(s, "\ntensors:");
        for row in tensor_rows(ckpt).unwrap_or_default() {
            let transform = match row.transform {
                Transform::Identity => String::new(),
                Transform::Reshape => " [reshape]".into(),
                Transform::Rows { index, of } => format!(" [rows {index}/{of}]"),
                Transform::Transpose => " [transpose]".into(),
            };
            let _ = writeln!(s, "  {} {:?} {} <- {}{transform}", row.name, row.shape, row.dtype, row.source);
        }
    }
    s
}

fn component(s: &mut String, c: &ComponentInfo) {
    let dtypes: Vec<String> = c.dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    let source = match &c.config_source {
        ConfigSource::ConfigJson(p) => format!("config {}", p.display()),
        ConfigSource::Weights => "config from the weights and the family's published config".into(),
    };
    let _ = writeln!(
        s,
        "{:<15} {:>15} parameters  {:>5} tensors  {}",
        c.component.to_string(),
        thousands(c.parameters),
        c.tensors,
        dtypes.join(", ")
    );
    let _ = writeln!(s, "  {source}");
    match &c.config {
        ComponentConfig::Unet(u) => unet(s, u),
        ComponentConfig::Vae(v) => vae(s, v),
        ComponentConfig::TextEncoder(t) => text_encoder(s, t),
        ComponentConfig::ImageEncoder(i) => {
            let _ = writeln!(
                s,
                "  CLIP vision tower: {} layers of width {} ({} heads, MLP {}, {}), {}px images in {}px patches, \
                 image embeds {}",
                i.num_hidden_layers,
                i.hidden_size,
                i.num_attention_heads,
                i.intermediate_size,
                i.hidden_act,
                i.image_size,
                i.patch_size,
                i.projection_dim
            );
        }
    }
}

fn unet(s: &mut String, u: &UNetConfig) {
    let depth: Vec<String> =
        (0..u.levels())
            .map(|l| {
                if u.down_has_attention(l) {
                    u.transformer_layers_per_block[l].to_string()
                } else {
                    "-".into()
                }
            })
            .collect();
    let head_dims: Vec<String> = (0..u.levels()).map(|l| u.head_dim(l).to_string()).collect();
    let mid = match u.mid_block_type.as_deref() {
        None => "none".to_string(),
        Some(t @ "UNetMidBlock2DCrossAttn") => format!("{t} (depth {})", u.mid_transformer_layers()),
        Some(t) => format!("{t} (no attention)"),
    };
    let _ = writeln!(
        s,
        "  {} levels, channels {:?}, {} resnets per level, transformer depth [{}], mid block {mid}",
        u.levels(),
        u.block_out_channels,
        u.layers_per_block,
        depth.join(", "),
    );
    if u.reverse_transformer_layers_per_block.is_some() {
        let up: Vec<String> = (0..u.levels())
            .map(|i| match u.up_block_types[i].contains("CrossAttn") {
                true => format!("{:?}", u.up_transformer_layers(i)),
                false => "-".into(),
            })
            .collect();
        let _ = writeln!(s, "  up-block transformer depths (deepest first) [{}]", up.join(", "));
    }
    let _ = writeln!(
        s,
        "  heads {:?} (head dim [{}]), context {}, {} projections, channels {} in / {} out",
        u.num_attention_heads,
        head_dims.join(", "),
        u.cross_attention_dim,
        if u.use_linear_projection { "linear" } else { "1x1 conv" },
        u.in_channels,
        u.out_channels
    );
    let added = match (&u.addition_embed_type, u.projection_class_embeddings_input_dim) {
        (Some(t), Some(n)) => {
            format!(
                "added embedding {t} of {n} inputs (time ids {} wide)",
                u.addition_time_embed_dim.unwrap_or(0)
            )
        }
        _ => "no added embedding".into(),
    };
    let _ = writeln!(
        s,
        "  {added}, norm groups {} (eps {}), sample size {}",
        u.norm_num_groups, u.norm_eps, u.sample_size
    );
}

fn vae(s: &mut String, v: &VaeConfig) {
    let _ = writeln!(
        s,
        "  {} levels, channels {:?}, {} resnets per level, {} latent channels, norm groups {}",
        v.levels(),
        v.block_out_channels,
        v.layers_per_block,
        v.latent_channels,
        v.norm_num_groups
    );
    let _ = writeln!(
        s,
        "  scaling factor {}{}, {}, sample size {}",
        v.scaling_factor,
        v.shift_factor.map(|f| format!(", shift {f}")).unwrap_or_default(),
        if v.force_upcast { "runs in f32 (force_upcast)" } else { "half precision allowed" },
        v.sample_size
    );
}

fn text_encoder(s: &mut String, t: &TextEncoderConfig) {
    let _ = writeln!(
        s,
        "  CLIP text: {} layers, width {}, heads {}, MLP {}, {}, vocab {}, {} positions{}",
        t.num_hidden_layers,
        t.hidden_size,
        t.num_attention_heads,
        t.intermediate_size,
        t.hidden_act,
        t.vocab_size,
        t.max_position_embeddings,
        t.projection_dim.map(|p| format!(", projection {p}")).unwrap_or_default()
    );
}
