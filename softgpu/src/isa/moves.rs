//! Data movement between registers and address conversion (PTX ISA §9.7.9.1 `mov`, §9.7.9.2
//! `mov` with vectors, §9.7.9.20 `cvta`, §9.7.9.19 `isspacep`).
//!
//! - `mov.type d, a` for `.pred`, `.b/.u/.s16..64`, `.f16`, `.bf16`, `.f32`, `.f64`: `a` is a
//!   register, special register, immediate, or a variable's address *in its own state space*
//!   (the decoder already resolves symbols to those addresses).
//! - `mov.b32 d, {a, b}` / `mov.b64 d, {a, b}` / `{a, b, c, d}` pack elements of width
//!   `type / count` into `d`, the first element in the lowest bits; `mov.bN {a, b}, s` unpacks
//!   (destinations may be `_`, sources may be immediates).
//! - `cvta.space.size p, a` turns a `.global`/`.const`/`.shared`/`.local` address into a generic
//!   one, `cvta.to.space.size` does the reverse. In this machine a global (and constant)
//!   address is its own generic address; shared offsets appear at
//!   [`SHARED_WINDOW`] and local ones at [`LOCAL_WINDOW`]. Kernel parameters have no generic
//!   window here, so `cvta.param` is refused. Generic shared/local addresses need 64 bits, so
//!   the `.u32` form is refused for those conversions to generic; `cvta.to.*.u32` works.
//! - `isspacep.space p, a`: whether generic address `a` lies in that space's window (global and
//!   const: outside the shared and local windows; param: never).

use crate::exec::Cx;
use crate::fault::Fault;
use crate::isa::int::mask;
use crate::memory::{LOCAL_WINDOW, SHARED_WINDOW, WINDOW_SIZE};
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind};
use crate::ptx::{Operand, type_size};

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    match spec.base {
        "mov" => decode_mov(spec, cx).map(Some),
        "cvta" => decode_cvta(spec, cx).map(Some),
        "isspacep" => decode_isspacep(spec, cx).map(Some),
        _ => Ok(None),
    }
}

fn two_operands<'a>(spec: &'a OpSpec<'_>) -> Result<(&'a Operand, &'a Operand), String> {
    match spec.operands {
        [d, a] => Ok((d, a)),
        other => Err(format!("expected 2 operands, found {}", other.len())),
    }
}

fn decode_mov(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let ty = spec.ty()?;
    let (dst, src) = two_operands(spec)?;
    let size = type_size(ty).ok_or("bad type")?;
    if ty.ends_with("x2") || size > 8 {
        return Err(format!("`mov.{ty}` is not supported"));
    }
    let bits = size * 8;
    match (dst, src) {
        (Operand::Vector(_), Operand::Vector(_)) => {
            Err("`mov` between two vectors is not a PTX instruction".into())
        }
        (Operand::Vector(items), _) => {
            let mut ops = cx.vector(dst)?;
            ops.push(cx.opnd(src)?);
            Ok(Inst::new(Kind::Plain(pack_fn(bits, items.len(), false)?), ops))
        }
        (_, Operand::Vector(items)) => {
            let mut ops = vec![cx.opnd(dst)?];
            ops.extend(cx.vector(src)?);
            Ok(Inst::new(Kind::Plain(pack_fn(bits, items.len(), true)?), ops))
        }
        _ => {
            if matches!(ty, "f16" | "bf16") && matches!(src, Operand::F32(_) | Operand::F64(_)) {
                return Err(format!(
                    "a floating-point literal for `mov.{ty}` is not supported; write its bits"
                ));
            }
            let ops = vec![cx.opnd(dst)?, cx.opnd_typed(src, ty)?];
            let f: ExecFn = match ty {
                "pred" => mov::<1>,
                _ => match bits {
                    16 => mov::<16>,
                    32 => mov::<32>,
                    _ => mov::<64>,
                },
            };
            Ok(Inst::new(Kind::Plain(f), ops))
        }
    }
}

fn mov<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| a & mask(W));
    Ok(())
}

/// The pack (`d, e0, e1, ...`) or unpack (`e0, e1, ..., s`) fn for `n` elements of a
/// `bits`-wide value.
fn pack_fn(bits: u32, n: usize, pack: bool) -> Result<ExecFn, String> {
    Ok(match (bits, n, pack) {
        (16, 2, true) => pack_n::<2, 8>,
        (32, 2, true) => pack_n::<2, 16>,
        (32, 4, true) => pack_n::<4, 8>,
        (64, 2, true) => pack_n::<2, 32>,
        (64, 4, true) => pack_n::<4, 16>,
        (16, 2, false) => unpack_n::<2, 8>,
        (32, 2, false) => unpack_n::<2, 16>,
        (32, 4, false) => unpack_n::<4, 8>,
        (64, 2, false) => unpack_n::<2, 32>,
        (64, 4, false) => unpack_n::<4, 16>,
        _ => return Err(format!("`mov.b{bits}` with {n} vector elements is not supported")),
    })
}

fn pack_n<const N: usize, const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    for l in cx.lanes() {
        let mut v = 0;
        for k in 0..N {
            v |= (cx.get(i.ops[1 + k], l) & mask(W)) << (k as u32 * W);
        }
        cx.set(i.ops[0], l, v);
    }
    Ok(())
}

fn unpack_n<const N: usize, const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    for l in cx.lanes() {
        let v = cx.get(i.ops[N], l);
        for k in 0..N {
            cx.set(i.ops[k], l, v >> (k as u32 * W) & mask(W));
        }
    }
    Ok(())
}

/// The state space named by `cvta`/`isspacep` modifiers: 0 global/const, 1 shared, 2 local,
/// 3 param.
fn space(spec: &OpSpec<'_>) -> Result<u8, String> {
    for m in &spec.mods {
        let base = m.split("::").next().unwrap_or("");
        match base {
            "global" | "const" => return Ok(0),
            "shared" => return Ok(1),
            "local" => return Ok(2),
            "param" => return Ok(3),
            _ => {}
        }
    }
    Err("no state space".into())
}

fn decode_cvta(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let to = spec.has("to");
    let space = space(spec)?;
    let wide = match spec.ty()? {
        "u64" | "b64" | "s64" => true,
        "u32" | "b32" | "s32" => false,
        other => return Err(format!("`cvta` takes .u32 or .u64, not .{other}")),
    };
    if space == 3 {
        return Err(
            "`cvta` of .param addresses is not supported: kernel parameters have no generic window here"
                .into(),
        );
    }
    if !to && !wide && space != 0 {
        return Err("`cvta` of a shared or local address to a 32-bit generic address is not supported: generic windows here need 64 bits".into());
    }
    let (dst, src) = two_operands(spec)?;
    let ops = vec![cx.opnd(dst)?, cx.opnd(src)?];
    let f: ExecFn = match (space, to, wide) {
        (0, _, true) => cvta_add::<0, false, 64>,
        (0, _, false) => cvta_add::<0, false, 32>,
        (1, false, _) => cvta_add::<SHARED_WINDOW, false, 64>,
        (2, false, _) => cvta_add::<LOCAL_WINDOW, false, 64>,
        (1, true, true) => cvta_add::<SHARED_WINDOW, true, 64>,
        (1, true, false) => cvta_add::<SHARED_WINDOW, true, 32>,
        (2, true, true) => cvta_add::<LOCAL_WINDOW, true, 64>,
        _ => cvta_add::<LOCAL_WINDOW, true, 32>,
    };
    Ok(Inst::new(Kind::Plain(f), ops))
}

/// `d = a + BASE` (to generic) or `d = a - BASE` (to the space), truncated to `W` bits.
fn cvta_add<const BASE: u64, const TO: bool, const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (if TO { a.wrapping_sub(BASE) } else { a.wrapping_add(BASE) }) & mask(W));
    Ok(())
}

fn decode_isspacep(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let space = space(spec)?;
    let (dst, src) = two_operands(spec)?;
    let ops = vec![cx.opnd(dst)?, cx.opnd(src)?];
    let f: ExecFn = match space {
        0 => isspacep::<0>,
        1 => isspacep::<1>,
        2 => isspacep::<2>,
        _ => isspacep::<3>,
    };
    Ok(Inst::new(Kind::Plain(f), ops))
}

fn isspacep<const SPACE: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| {
        let shared = (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a);
        let local = (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&a);
        (match SPACE {
            0 => !shared && !local,
            1 => shared,
            2 => local,
            _ => false,
        }) as u64
    });
    Ok(())
}
