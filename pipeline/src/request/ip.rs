//! The IP-Adapter fields newer OctoAI endpoints accept (not in the OpenAPI document kiln follows,
//! so their types are kiln's reading of OctoAI's documentation): `ip_adapter_image` (base64; a
//! request with one is an IP-Adapter request), `ip_adapter` (which adapter in the asset
//! library's `ip_adapters/`; default [`DEFAULT_IP_ADAPTER`]), `ip_adapter_scale` (>= 0; default
//! 1, diffusers' default), `ip_adapter_method` (`full`, `style` or `composition`; default
//! `full`) and `ip_adapter_mask_image` (base64; white where the image guides).
//!
//! An adapter name, a method or a mask without an image is an error on `ip_adapter_image`; the
//! scale alone changes nothing. Other `ip_adapter*` fields stay `not_implemented`.

use super::coerce::Limits;
use super::error::{FieldError, Loc};
use super::parse::Reader;
use crate::generate::IpMethod;

/// The adapter used when a request names none: `ip_adapters/ip-adapter_sdxl` in the asset
/// library, the published SDXL adapter's file name.
pub const DEFAULT_IP_ADAPTER: &str = "ip-adapter_sdxl";

/// The IP-Adapter fields kiln reads.
pub const IP_FIELDS: [&str; 5] =
    ["ip_adapter", "ip_adapter_image", "ip_adapter_mask_image", "ip_adapter_method", "ip_adapter_scale"];

/// `ip_adapter_method`'s values, in [`IpMethod`] order.
const METHODS: [&str; 3] = ["full", "style", "composition"];

/// A request's IP-Adapter fields, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct IpRequest {
    /// The adapter's name in `ip_adapters/` (`octoai:` allowed); `None`: [`DEFAULT_IP_ADAPTER`].
    pub name: Option<String>,
    /// The reference image, base64.
    pub image: String,
    /// How strongly it guides, >= 0.
    pub scale: f64,
    /// Which layers it guides.
    pub method: IpMethod,
    /// Where it guides, base64 (white: there); `None`: everywhere.
    pub mask: Option<String>,
}

impl IpRequest {
    /// The adapter's name, the default's when the request named none.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_IP_ADAPTER)
    }
}

/// Reads and checks the IP-Adapter fields; a name, method or mask without an image is recorded
/// as an error on `ip_adapter_image`.
pub(crate) fn read(reader: &mut Reader<'_>) -> Option<IpRequest> {
    let name = reader.string("ip_adapter", None, true);
    let image = reader.string("ip_adapter_image", None, true);
    let mask = reader.string("ip_adapter_mask_image", None, true);
    let method = reader.choice("ip_adapter_method", &METHODS, true);
    let scale = reader.float("ip_adapter_scale", Limits { ge: Some(0.0), ..Limits::default() }, true);
    let Some(image) = image else {
        if name.is_some() || mask.is_some() || method.is_some() {
            reader.errors.push(FieldError::at(
                &[Loc::from("ip_adapter_image")],
                "Field required: ip_adapter, ip_adapter_method and ip_adapter_mask_image need an ip_adapter_image",
                "missing",
            ));
        }
        return None;
    };
    let method = match method {
        Some(1) => IpMethod::Style,
        Some(2) => IpMethod::Composition,
        _ => IpMethod::Full,
    };
    Some(IpRequest { name, image, scale: scale.unwrap_or(1.0), method, mask })
}
