//! Extended-precision integer arithmetic (PTX ISA §9.7.2): `add.cc`, `addc{.cc}`, `sub.cc`,
//! `subc{.cc}`, `mad{.lo,.hi}.cc`, `madc{.lo,.hi}{.cc}`, for `.u32`, `.s32`, `.u64`, `.s64`.
//!
//! The condition code `CC.CF` is one bit per lane in `cx.carry`. As the PTX ISA defines it:
//! - `add.cc`: `d = a + b`, carry-out to CC.CF; `addc`: `d = a + b + CC.CF`.
//! - `sub.cc`: `d = a - b`, *borrow*-out to CC.CF; `subc`: `d = a - (b + CC.CF)`.
//! - `mad.lo.cc`/`mad.hi.cc`: `d = t + c` where `t` is the low or high half of `a * b`
//!   (signed for `.s` types); `madc`: `d = t + c + CC.CF`. The carry-out is the one from the
//!   addition.
//!
//! Without `.cc` the flag is left as it was.

use super::{Int, mask, operands};
use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind};

/// What the chain step computes before adding the carry.
const ADD: u8 = 0;
const SUB: u8 = 1;
const MAD_LO: u8 = 2;
const MAD_HI: u8 = 3;

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    let ty = super::int_type(spec).ok_or("a carry instruction needs a type")?;
    if !matches!(ty, "u32" | "s32" | "u64" | "s64") {
        return Err(format!("carry arithmetic takes .u32, .s32, .u64 or .s64, not .{ty}"));
    }
    let cout = spec.has("cc");
    let cin = matches!(spec.base, "addc" | "subc" | "madc");
    let kind = match spec.base {
        "add" | "addc" => ADD,
        "sub" | "subc" => SUB,
        "mad" | "madc" if spec.has("hi") => MAD_HI,
        "mad" | "madc" if spec.has("lo") => MAD_LO,
        "mad" | "madc" => return Err(format!("`{}` with a carry needs .lo or .hi", spec.base)),
        other => return Err(format!("`{other}.cc` is not a PTX instruction")),
    };
    if spec.has("sat") {
        return Err("saturation cannot be combined with a carry".into());
    }
    macro_rules! pick {
        ($t:ty) => {
            match (kind, cin, cout) {
                (ADD, false, _) => step::<$t, ADD, false, true> as ExecFn,
                (ADD, true, false) => step::<$t, ADD, true, false>,
                (ADD, true, true) => step::<$t, ADD, true, true>,
                (SUB, false, _) => step::<$t, SUB, false, true>,
                (SUB, true, false) => step::<$t, SUB, true, false>,
                (SUB, true, true) => step::<$t, SUB, true, true>,
                (MAD_LO, false, _) => step::<$t, MAD_LO, false, true>,
                (MAD_LO, true, false) => step::<$t, MAD_LO, true, false>,
                (MAD_LO, true, true) => step::<$t, MAD_LO, true, true>,
                (_, false, _) => step::<$t, MAD_HI, false, true>,
                (_, true, false) => step::<$t, MAD_HI, true, false>,
                (_, true, true) => step::<$t, MAD_HI, true, true>,
            }
        };
    }
    let f = match ty {
        "u32" => pick!(u32),
        "s32" => pick!(i32),
        "u64" => pick!(u64),
        _ => pick!(i64),
    };
    let n = if kind >= MAD_LO { 4 } else { 3 };
    Ok(Some(Inst::new(Kind::Plain(f), operands(spec, cx, n)?)))
}

/// One step of a carry chain on the active lanes.
fn step<T: Int, const KIND: u8, const CIN: bool, const COUT: bool>(
    cx: &mut Cx<'_>,
    i: &Inst,
) -> Result<(), Fault> {
    let d = i.ops[0];
    let m = mask(T::BITS) as u128;
    for l in cx.lanes() {
        let cf = if CIN { (*cx.carry >> l & 1) as u128 } else { 0 };
        let a = cx.get(i.ops[1], l) as u128 & m;
        let b = cx.get(i.ops[2], l) as u128 & m;
        let (r, flag) = if KIND == SUB {
            // d = a - (b + CF); a borrow when the subtrahend exceeds a.
            let s = b + cf;
            (a.wrapping_sub(s) & m, (s > a) as u32)
        } else {
            let t = match KIND {
                ADD => b,
                MAD_LO => T::of(a as u64).product(T::of(b as u64)) & m,
                _ => T::of(a as u64).product(T::of(b as u64)) >> T::BITS & m,
            };
            let x = if KIND == ADD { a } else { cx.get(i.ops[3], l) as u128 & m };
            let s = t + x + cf;
            (s & m, (s >> T::BITS) as u32 & 1)
        };
        cx.set(d, l, r as u64);
        if COUT {
            *cx.carry = *cx.carry & !(1 << l) | flag << l;
        }
    }
    Ok(())
}
