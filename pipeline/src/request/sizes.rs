//! The output sizes OctoAI supports per model family (the schema's `width` / `height`
//! descriptions), and the default size of each family.

use kiln_runtime::checkpoint::Family;

/// SDXL (base, refiner, inpainting): (width, height), as the schema lists them.
const SDXL: [(usize, usize); 9] = [
    (640, 1536),
    (768, 1344),
    (832, 1216),
    (896, 1152),
    (1024, 1024),
    (1152, 896),
    (1216, 832),
    (1344, 768),
    (1536, 640),
];

/// SD 1.5 (and its inpainting model): (width, height), as the schema lists them.
const SD15: [(usize, usize); 25] = [
    (384, 704),
    (448, 576),
    (512, 512),
    (512, 704),
    (512, 768),
    (512, 832),
    (576, 448),
    (576, 768),
    (576, 1024),
    (640, 512),
    (640, 640),
    (640, 768),
    (704, 384),
    (704, 1216),
    (768, 512),
    (768, 576),
    (768, 1024),
    (832, 512),
    (896, 896),
    (1024, 576),
    (1024, 768),
    (1024, 1024),
    (1024, 1536),
    (1216, 704),
    (1536, 1024),
];

/// The (width, height) pairs a family accepts.
pub fn supported_sizes(family: Family) -> &'static [(usize, usize)] {
    if family.is_sdxl() { &SDXL } else { &SD15 }
}

/// The size used when a request gives none: 1024 for SDXL, 512 for SD 1.5 (each side).
pub(crate) fn default_side(family: Family) -> usize {
    if family.is_sdxl() { 1024 } else { 512 }
}

/// The family's name as the schema writes it in the size lists.
pub(crate) fn family_label(family: Family) -> &'static str {
    if family.is_sdxl() { "SDXL" } else { "SD1.5" }
}

/// `(640, 1536), (768, 1344), ...` for error messages.
pub(crate) fn size_list(family: Family) -> String {
    let sizes: Vec<String> = supported_sizes(family).iter().map(|(w, h)| format!("({w}, {h})")).collect();
    sizes.join(", ")
}
