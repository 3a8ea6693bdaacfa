//! (to be written)

use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::Inst;

pub fn decode(_spec: &OpSpec<'_>, _cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    Ok(None)
}
