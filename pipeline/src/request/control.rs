//! OctoAI's ControlNet fields: `controlnet` (which ControlNet; the default is the Canny one),
//! `controlnet_image` (base64), `controlnet_conditioning_scale` (>= 0, default 1),
//! `controlnet_early_stop` (the share of the steps it guides, in [0, 1]; default all) and
//! `controlnet_preprocess` (make the Canny map from the image; default true).
//!
//! A request is a ControlNet request when it sends a `controlnet_image`, names a `controlnet`,
//! or targets the `controlnet-sdxl` engine; the last two without an image are an error on
//! `controlnet_image`, as OctoAI's schema says ("Required for controlnet engines"). The scale,
//! early stop and preprocess flag alone change nothing.

use super::EngineName;
use super::coerce::Limits;
use super::error::{FieldError, Loc};
use super::parse::Reader;

/// The ControlNet used when a request names none: `controlnets/canny` in the asset library.
pub const DEFAULT_CONTROLNET: &str = "canny";

/// A request's ControlNet fields, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlRequest {
    /// The ControlNet's name in the asset library's `controlnets/` (`octoai:` allowed); `None`:
    /// [`DEFAULT_CONTROLNET`].
    pub name: Option<String>,
    /// The control image, base64 (decoded by the runner at the output size).
    pub image: String,
    /// How strongly the ControlNet guides, >= 0.
    pub scale: f64,
    /// The share of the steps it guides, from the first, in [0, 1]; `None`: every step.
    pub early_stop: Option<f64>,
    /// Make the Canny map of the image (true), or take the image as the map (false).
    pub preprocess: bool,
}

impl ControlRequest {
    /// The ControlNet's name, the default's when the request named none.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_CONTROLNET)
    }

    /// Whether the ControlNet takes Canny edge maps (the only preprocessing kiln makes): its name
    /// says `canny`, as OctoAI's and the published ones do.
    pub fn is_canny(&self) -> bool {
        self.name().to_ascii_lowercase().contains("canny")
    }
}

/// The fields as read, before the rule that involves the engine.
pub(crate) struct ControlFields {
    name: Option<String>,
    image: Option<String>,
    scale: Option<f64>,
    early_stop: Option<f64>,
    preprocess: Option<bool>,
}

/// Reads (type- and range-checks) the ControlNet fields, which sit together in schema order.
pub(crate) fn read(reader: &mut Reader<'_>, unit: Limits) -> ControlFields {
    ControlFields {
        name: reader.string("controlnet", None, true),
        scale: reader.float(
            "controlnet_conditioning_scale",
            Limits { ge: Some(0.0), ..Limits::default() },
            false,
        ),
        early_stop: reader.float("controlnet_early_stop", unit, true),
        image: reader.string("controlnet_image", None, true),
        preprocess: reader.boolean("controlnet_preprocess"),
    }
}

/// The request's ControlNet, if it is a ControlNet request; a missing image is recorded as an
/// error on `controlnet_image`.
pub(crate) fn resolve(
    reader: &mut Reader<'_>,
    fields: ControlFields,
    engine: Option<EngineName>,
) -> Option<ControlRequest> {
    let wanted = fields.name.is_some() || engine == Some(EngineName::ControlnetSdxl);
    let Some(image) = fields.image else {
        if wanted {
            reader.errors.push(FieldError::at(
                &[Loc::from("controlnet_image")],
                "Field required: controlnet_image is required for controlnet engines (the controlnet-sdxl engine or \
                 a `controlnet` name)",
                "missing",
            ));
        }
        return None;
    };
    Some(ControlRequest {
        name: fields.name,
        image,
        scale: fields.scale.unwrap_or(1.0),
        early_stop: fields.early_stop,
        preprocess: fields.preprocess.unwrap_or(true),
    })
}
