//! Fields of OctoAI's API that kiln does not implement yet. Sending one with a value that asks
//! for the feature is an error naming the field (type `not_implemented`), never a silent ignore;
//! sending its default (or null) is accepted.

use super::coerce::Limits;
use super::error::not_implemented;
use super::parse::Reader;

/// The ControlNet fields as sent (only what matters for the check).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Controls {
    controlnet: bool,
    conditioning_scale: Option<f64>,
    early_stop: bool,
    image: bool,
    preprocess: Option<bool>,
}

/// The schema's default `controlnet_conditioning_scale`.
const DEFAULT_CONDITIONING_SCALE: f64 = 1.0;

/// Reads (type- and range-checks) the ControlNet fields, which sit together in schema order.
pub(crate) fn read_controlnet(reader: &mut Reader<'_>, unit: Limits) -> Controls {
    Controls {
        controlnet: reader.string("controlnet", None, true).is_some(),
        conditioning_scale: reader.float(
            "controlnet_conditioning_scale",
            Limits { ge: Some(0.0), ..Limits::default() },
            false,
        ),
        early_stop: reader.float("controlnet_early_stop", unit, true).is_some(),
        image: reader.string("controlnet_image", None, true).is_some(),
        preprocess: reader.boolean("controlnet_preprocess"),
    }
}

/// Whether `field` is one of IP-Adapter's fields (`ip_adapter`, `ip_adapter_image`, ...), which
/// newer OctoAI endpoints accept.
pub(crate) fn is_ip_adapter(field: &str) -> bool {
    field.starts_with("ip_adapter")
}

/// What the request asked of the unimplemented fields (valid values only; `None` = not sent).
pub(crate) struct Asked {
    pub controls: Controls,
    pub transfer_images: Option<usize>,
}

/// Records a `not_implemented` error for each feature asked for, in schema order.
pub(crate) fn check(reader: &mut Reader<'_>, asked: &Asked) {
    let c = asked.controls;
    let mut found = Vec::new();
    if c.controlnet {
        found.push(not_implemented("controlnet", "ControlNet"));
    }
    if c.conditioning_scale.is_some_and(|s| s != DEFAULT_CONDITIONING_SCALE) {
        found.push(not_implemented("controlnet_conditioning_scale", "ControlNet"));
    }
    if c.early_stop {
        found.push(not_implemented("controlnet_early_stop", "ControlNet"));
    }
    if c.image {
        found.push(not_implemented("controlnet_image", "ControlNet"));
    }
    if c.preprocess == Some(false) {
        found.push(not_implemented("controlnet_preprocess", "ControlNet"));
    }
    let mut ip_fields: Vec<&String> =
        reader.body.iter().filter(|(k, v)| is_ip_adapter(k) && !v.is_null()).map(|(k, _)| k).collect();
    ip_fields.sort();
    for field in ip_fields {
        found.push(not_implemented(field, "IP-Adapter"));
    }
    if asked.transfer_images.is_some() {
        found.push(not_implemented("transfer_images", "style transfer"));
    }
    found.into_iter().for_each(|e| reader.errors.push(e));
}
