//! Bit and byte operations of the integer family (PTX ISA §9.7.1): `popc`, `clz`, `brev`
//! (`.b32`/`.b64`, the counts are `.u32`), `bfind{.shiftamt}`, `bfe`, `bfi`, `prmt` (the
//! generic selector form and the `.f4e .b4e .rc8 .ecl .ecr .rc16` modes), `dp4a`, `dp2a`.

use super::{Int, mask, operands};
use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind};

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    let ty = super::int_type(spec).unwrap_or("");
    let is64 = ty.ends_with("64");
    let (f, n): (ExecFn, usize) = match spec.base {
        "popc" | "clz" | "brev" if !matches!(ty, "b32" | "b64") => {
            return Err(format!("`{}` takes .b32 or .b64", spec.base));
        }
        "popc" => (if is64 { popc::<64> } else { popc::<32> }, 2),
        "clz" => (if is64 { clz::<64> } else { clz::<32> }, 2),
        "brev" => (if is64 { brev::<64> } else { brev::<32> }, 2),
        "bfind" => {
            let shiftamt = spec.has("shiftamt");
            let f: ExecFn = match (ty, shiftamt) {
                ("u32", false) => bfind::<u32, false>,
                ("u32", true) => bfind::<u32, true>,
                ("s32", false) => bfind::<i32, false>,
                ("s32", true) => bfind::<i32, true>,
                ("u64", false) => bfind::<u64, false>,
                ("u64", true) => bfind::<u64, true>,
                ("s64", false) => bfind::<i64, false>,
                ("s64", true) => bfind::<i64, true>,
                _ => return Err("`bfind` takes .u32, .s32, .u64 or .s64".into()),
            };
            (f, 2)
        }
        "bfe" => {
            let f: ExecFn = match ty {
                "u32" | "b32" => bfe::<u32>,
                "s32" => bfe::<i32>,
                "u64" | "b64" => bfe::<u64>,
                "s64" => bfe::<i64>,
                _ => return Err("`bfe` takes .u32, .s32, .u64 or .s64".into()),
            };
            (f, 4)
        }
        "bfi" => {
            let f: ExecFn = match ty {
                "b32" | "u32" | "s32" => bfi::<32>,
                "b64" | "u64" | "s64" => bfi::<64>,
                _ => return Err("`bfi` takes .b32 or .b64".into()),
            };
            let ops = operands(spec, cx, 5)?;
            return Ok(Some(Inst::new(Kind::Plain(f), ops)));
        }
        "prmt" => {
            if ty != "b32" {
                return Err("`prmt` takes .b32".into());
            }
            let mode = ["f4e", "b4e", "rc8", "ecl", "ecr", "rc16"].iter().position(|m| spec.has(m));
            let f: ExecFn = match mode {
                None => prmt_generic,
                Some(0) => prmt_mode::<0>,
                Some(1) => prmt_mode::<1>,
                Some(2) => prmt_mode::<2>,
                Some(3) => prmt_mode::<3>,
                Some(4) => prmt_mode::<4>,
                Some(_) => prmt_mode::<5>,
            };
            (f, 4)
        }
        "dp4a" | "dp2a" => {
            let types: Vec<&str> =
                spec.mods.iter().copied().filter(|m| matches!(*m, "u32" | "s32")).collect();
            let [ta, tb] = types[..] else { return Err(format!("`{}` needs .atype.btype", spec.base)) };
            let (sa, sb) = (ta == "s32", tb == "s32");
            let f: ExecFn = if spec.base == "dp4a" {
                match (sa, sb) {
                    (false, false) => dp4a::<false, false>,
                    (false, true) => dp4a::<false, true>,
                    (true, false) => dp4a::<true, false>,
                    (true, true) => dp4a::<true, true>,
                }
            } else {
                let hi = spec.has("hi");
                if !hi && !spec.has("lo") {
                    return Err("`dp2a` needs .lo or .hi".into());
                }
                match (sa, sb, hi) {
                    (false, false, false) => dp2a::<false, false, 0>,
                    (false, true, false) => dp2a::<false, true, 0>,
                    (true, false, false) => dp2a::<true, false, 0>,
                    (true, true, false) => dp2a::<true, true, 0>,
                    (false, false, true) => dp2a::<false, false, 2>,
                    (false, true, true) => dp2a::<false, true, 2>,
                    (true, false, true) => dp2a::<true, false, 2>,
                    (true, true, true) => dp2a::<true, true, 2>,
                }
            };
            (f, 4)
        }
        _ => return Ok(None),
    };
    Ok(Some(Inst::new(Kind::Plain(f), operands(spec, cx, n)?)))
}

fn popc<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a & mask(W)).count_ones() as u64);
    Ok(())
}

fn clz<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| ((a & mask(W)).leading_zeros() - (64 - W)) as u64);
    Ok(())
}

fn brev<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| a.reverse_bits() >> (64 - W));
    Ok(())
}

/// The position of the most significant non-sign bit (of `!a` for negative signed inputs),
/// or with `.shiftamt` the left shift that brings it to the top; `0xffffffff` if none.
fn bfind<T: Int, const SHIFTAMT: bool>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| {
        let v = T::of(a);
        let bits = (if T::SIGNED && v < T::default() { !v.bits() } else { v.bits() }) & mask(T::BITS);
        if bits == 0 {
            return 0xffff_ffff;
        }
        let pos = 63 - bits.leading_zeros() as u64;
        if SHIFTAMT { T::BITS as u64 - 1 - pos } else { pos }
    });
    Ok(())
}

/// `bfe d, a, pos, len`: `len` bits of `a` from `pos` (both taken mod 256), zero- or
/// sign-extended; bits past the msb read as the sign bit of the field.
fn bfe<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let msb = T::BITS - 1;
        let (pos, len) = ((b & 0xff) as u32, (c & 0xff) as u32);
        let a = a & mask(T::BITS);
        let sbit = if !T::SIGNED || len == 0 { 0 } else { a >> (pos + len - 1).min(msb) & 1 };
        // Bits of the field that exist in `a`: i < len and pos + i <= msb.
        let avail = if pos > msb { 0 } else { len.min(T::BITS - pos) };
        let field = if avail == 0 { 0 } else { (a >> pos) & mask(avail) };
        let fill = if sbit == 1 { mask(T::BITS) & !mask(avail) } else { 0 };
        field | fill
    });
    Ok(())
}

/// `bfi f, a, b, pos, len`: `b` with `len` low bits of `a` inserted at `pos`.
fn bfi<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let [f, a, b, c, d] = [i.ops[0], i.ops[1], i.ops[2], i.ops[3], i.ops[4]];
    for l in cx.lanes() {
        let (a, b) = (cx.get(a, l), cx.get(b, l) & mask(W));
        let (pos, len) = ((cx.get(c, l) & 0xff) as u32, (cx.get(d, l) & 0xff) as u32);
        let r = if pos >= W || len == 0 {
            b
        } else {
            let m = mask(len.min(W - pos)) << pos;
            b & !m | (a << pos) & m
        };
        cx.set(f, l, r);
    }
    Ok(())
}

/// `prmt` without a mode: each selector nibble of `c` picks a byte of `{b, a}` (bits 2:0)
/// and, with bit 3, replicates that byte's sign bit instead.
fn prmt_generic(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let src = (b & 0xffff_ffff) << 32 | a & 0xffff_ffff;
        let mut d = 0;
        for k in 0..4 {
            let sel = c >> (4 * k) & 0xf;
            let byte = src >> (8 * (sel & 7)) & 0xff;
            let byte = if sel & 8 != 0 { if byte & 0x80 != 0 { 0xff } else { 0 } } else { byte };
            d |= byte << (8 * k);
        }
        d
    });
    Ok(())
}

/// The source byte of each destination byte (0..3) for each mode and `c[1:0]`, from the PTX
/// ISA's table for `prmt` modes.
const PRMT_MODES: [[[u8; 4]; 4]; 6] = [
    // f4e: forward 4 extract.
    [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]],
    // b4e: backward 4 extract.
    [[0, 7, 6, 5], [1, 0, 7, 6], [2, 1, 0, 7], [3, 2, 1, 0]],
    // rc8: replicate byte.
    [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]],
    // ecl: edge clamp left.
    [[0, 1, 2, 3], [1, 1, 2, 3], [2, 2, 2, 3], [3, 3, 3, 3]],
    // ecr: edge clamp right.
    [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 2, 2], [0, 1, 2, 3]],
    // rc16: replicate half-word.
    [[0, 1, 0, 1], [2, 3, 2, 3], [0, 1, 0, 1], [2, 3, 2, 3]],
];

fn prmt_mode<const MODE: usize>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let src = (b & 0xffff_ffff) << 32 | a & 0xffff_ffff;
        let table = &PRMT_MODES[MODE][(c & 3) as usize];
        (0..4).fold(0, |d, k| d | (src >> (8 * table[k] as u32) & 0xff) << (8 * k))
    });
    Ok(())
}

/// Element `k` of `w`-bit lanes of `v`, sign- or zero-extended.
#[inline(always)]
fn lane<const S: bool>(v: u64, k: u32, w: u32) -> i64 {
    let x = v >> (k * w) & mask(w);
    if S { ((x << (64 - w)) as i64) >> (64 - w) } else { x as i64 }
}

/// `dp4a`: `c` plus the dot product of the four bytes of `a` and of `b`, wrapping in 32 bits.
fn dp4a<const SA: bool, const SB: bool>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let dot: i64 = (0..4).map(|k| lane::<SA>(a, k, 8) * lane::<SB>(b, k, 8)).sum();
        (c as i64).wrapping_add(dot) as u64 & 0xffff_ffff
    });
    Ok(())
}

/// `dp2a`: the two half-words of `a` times bytes `SEL`, `SEL + 1` of `b` (`.lo`: 0, `.hi`: 2).
fn dp2a<const SA: bool, const SB: bool, const SEL: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let dot: i64 = (0..2).map(|k| lane::<SA>(a, k, 16) * lane::<SB>(b, SEL + k, 8)).sum();
        (c as i64).wrapping_add(dot) as u64 & 0xffff_ffff
    });
    Ok(())
}
