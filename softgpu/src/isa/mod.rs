//! The instruction families, one module each, with their semantics written from NVIDIA's PTX
//! ISA document. Each family's `decode` returns `Ok(None)` for opcodes it does not handle;
//! [`decode`] asks them in turn.

use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::Inst;

pub mod async_copy;
pub mod atomic;
pub mod bits;
pub mod compare;
pub mod cvt;
pub mod float;
pub mod half;
pub mod int;
pub mod mem;
pub mod mma;
pub mod moves;
pub mod special;
pub mod warp;

type Decoder = fn(&OpSpec<'_>, &mut DecodeCx<'_>) -> Result<Option<Inst>, String>;

/// Every family, asked in order.
const FAMILIES: &[Decoder] = &[
    mem::decode,
    moves::decode,
    int::decode,
    bits::decode,
    compare::decode,
    float::decode,
    half::decode,
    special::decode,
    cvt::decode,
    warp::decode,
    mma::decode,
    async_copy::decode,
    atomic::decode,
];

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
