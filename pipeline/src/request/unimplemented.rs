//! Fields of OctoAI's API that kiln does not implement yet. Sending one with a value that asks
//! for the feature is an error naming the field (type `not_implemented`), never a silent ignore;
//! sending its default (or null) is accepted.

use super::error::not_implemented;
use super::parse::Reader;

/// Whether `field` is one of IP-Adapter's fields (`ip_adapter`, `ip_adapter_image`, ...), which
/// newer OctoAI endpoints accept.
pub(crate) fn is_ip_adapter(field: &str) -> bool {
    field.starts_with("ip_adapter") && !super::ip::IP_FIELDS.contains(&field)
}

/// What the request asked of the unimplemented fields (valid values only; `None` = not sent).
pub(crate) struct Asked {
    pub transfer_images: Option<usize>,
}

/// Records a `not_implemented` error for each feature asked for, in schema order.
pub(crate) fn check(reader: &mut Reader<'_>, asked: &Asked) {
    let mut found = Vec::new();
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
