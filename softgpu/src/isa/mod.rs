//! The instruction families, one module each, with their semantics written from NVIDIA's PTX
//! ISA document. Each family's `decode` returns `Ok(None)` for opcodes it does not handle;
//! [`decode`] asks them in turn.

use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::Inst;

pub mod mem;

type Decoder = fn(&OpSpec<'_>, &mut DecodeCx<'_>) -> Result<Option<Inst>, String>;

/// Every family, asked in order.
const FAMILIES: &[Decoder] = &[mem::decode];

/// The decoded instruction for `spec`, `Ok(None)` if no family knows the opcode, or why the
/// operands do not fit it.
pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    for family in FAMILIES {
        if let Some(inst) = family(spec, cx)? {
            return Ok(Some(inst));
        }
    }
    Ok(None)
}
