//! Tensor-core instructions: `mma.sync.aligned` (m16n8k16 and m16n8k8, f16/bf16 inputs) and
//! the warp-wide matrix loads and stores `ldmatrix` and `stmatrix` (m8n8, b16).
//!
//! Semantics from the PTX ISA, "Warp Level Matrix Multiply-Accumulate Instructions": the
//! sections "Matrix Fragments for mma.m16n8k16 / mma.m16n8k8 with floating point type" give
//! which lane and register holds which element, with `groupID = lane >> 2` and
//! `threadID_in_group = lane % 4`; "ldmatrix" and "stmatrix" give their row-address and
//! fragment layouts. Every instruction here is `.aligned`: a [`Members::All`] collective that
//! runs once the whole warp is converged; the exec fn gathers the operand matrices from all
//! lanes, computes, and scatters the result.

use crate::exec::Cx;
use crate::exec::banks;
use crate::exec::cx::lanes;
use crate::fault::{Fault, FaultKind};
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{Class, ExecFn, Inst, Kind, Members};
use crate::ptx::Operand;

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    match spec.base {
        "mma" => decode_mma(spec, cx).map(Some),
        "ldmatrix" | "stmatrix" => decode_matrix(spec, cx).map(Some),
        _ => Ok(None),
    }
}

fn decode_mma(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    if !(spec.has("sync") && spec.has("aligned")) {
        return Err("mma needs .sync.aligned".into());
    }
    if !(spec.has("row") && spec.has("col")) {
        return Err("only the .row.col layout of mma is supported".into());
    }
    let k = if spec.has("m16n8k16") {
        16
    } else if spec.has("m16n8k8") {
        8
    } else {
        return Err("only the mma shapes m16n8k16 and m16n8k8 are supported".into());
    };
    let types = spec.types();
    let [dty, aty, bty, cty] = types[..] else {
        return Err("mma needs four types: .dtype.atype.btype.ctype".into());
    };
    let f: ExecFn = match (k, dty, aty, bty, cty) {
        (16, "f32", "bf16", "bf16", "f32") => mma::<16, true, false, false>,
        (8, "f32", "bf16", "bf16", "f32") => mma::<8, true, false, false>,
        (16, "f32", "f16", "f16", "f32") => mma::<16, false, false, false>,
        (8, "f32", "f16", "f16", "f32") => mma::<8, false, false, false>,
        (16, "f32", "f16", "f16", "f16") => mma::<16, false, true, false>,
        (8, "f32", "f16", "f16", "f16") => mma::<8, false, true, false>,
        (16, "f16", "f16", "f16", "f32") => mma::<16, false, false, true>,
        (8, "f16", "f16", "f16", "f32") => mma::<8, false, false, true>,
        (16, "f16", "f16", "f16", "f16") => mma::<16, false, true, true>,
        (8, "f16", "f16", "f16", "f16") => mma::<8, false, true, true>,
        _ => return Err(format!("mma with types .{dty}.{aty}.{bty}.{cty} is not supported")),
    };
    let d_regs = if dty == "f16" { 2 } else { 4 };
    let c_regs = if cty == "f16" { 2 } else { 4 };
    let expect = [d_regs, k / 4, k / 8, c_regs];
    let mut ops = Vec::new();
    for (i, (&n, what)) in expect.iter().zip(["d", "a", "b", "c"]).enumerate() {
        let op = spec.operand(i)?;
        let v = match op {
            Operand::Vector(items) if what == "c" && cty == "f32" => {
                items.iter().map(|o| cx.opnd_typed(o, "f32")).collect::<Result<Vec<_>, _>>()?
            }
            _ => cx.vector(op)?,
        };
        if v.len() != n {
            return Err(format!("mma operand {what} needs {n} registers, found {}", v.len()));
        }
        ops.extend(v);
    }
    Ok(Inst::new(Kind::Collective(f, Members::All), ops).with_class(Class::Mma))
}

/// An f16 or bf16 bit pattern as f32 (exact).
#[inline(always)]
fn widen<const BF16: bool>(bits: u32) -> f32 {
    if BF16 { f32::from_bits(bits << 16) } else { f16_to_f32(bits as u16) }
}

/// IEEE binary16 to binary32, exactly (every f16 is an f32). Written out so it inlines into the
/// mma gather: the `half` crate's conversion is a call with a run-time CPU-feature dispatch.
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    match exp {
        // Zero and sub-normals: man * 2^-24, exact in f32.
        0 => {
            let magnitude = man as f32 * f32::from_bits(0x3380_0000); // 2^-24
            f32::from_bits(sign | magnitude.to_bits())
        }
        // Infinities and NaNs (payload kept).
        31 => f32::from_bits(sign | 0x7f80_0000 | man << 13),
        _ => f32::from_bits(sign | (exp + 112) << 23 | man << 13),
    }
}

fn whole_warp(cx: &Cx<'_>, what: &str) -> Result<(), Fault> {
    if cx.mask != u32::MAX {
        return Err(Fault::new(
            FaultKind::IllegalInstruction,
            format!("{what} needs all 32 lanes of the warp, but only lanes {:#010x} execute it", cx.mask),
        ));
    }
    Ok(())
}

/// `mma.sync.aligned.m16n8k{K}.row.col.dtype.atype.btype.ctype d, a, b, c` (ops: the
/// registers of d, a, b, c in order): D = A·B + C with A 16×K, B K×8, C and D 16×8.
///
/// The ISA leaves the accumulation order and intermediate precision unspecified. Here each
/// element is `C[m][n]` plus the products `A[m][k]·B[k][n]` added in increasing `k`, in f32
/// arithmetic. Every product of two f16 or two bf16 values is exact in f32 (except a bf16
/// product beyond f32's normal range), so each step rounds like an f32 fma. An f16 `d` is the
/// f32 result rounded to nearest even.
fn mma<const K: usize, const BF16: bool, const C_F16: bool, const D_F16: bool>(
    cx: &mut Cx<'_>,
    inst: &Inst,
) -> Result<(), Fault> {
    whole_warp(cx, "mma")?;
    let nd = if D_F16 { 2 } else { 4 };
    let (dops, rest) = inst.ops.split_at(nd);
    let (aops, rest) = rest.split_at(K / 4);
    let (bops, cops) = rest.split_at(K / 8);
    let mut a = [[0f32; 16]; 16]; // [m][k]
    let mut b = [[0f32; 8]; 16]; // [k][n]
    let mut c = [[0f32; 8]; 16]; // [m][n]
    for lane in 0..32 {
        let (g, t) = (lane >> 2, lane & 3);
        // A: register r holds elements 2r, 2r+1 at row g (+8 for odd r), columns 2t, 2t+1
        // (+8 for r >= 2).
        for (r, &op) in aops.iter().enumerate() {
            let v = cx.get(op, lane) as u32;
            let (row, col) = (g + 8 * (r & 1), 2 * t + 8 * (r >> 1));
            a[row][col] = widen::<BF16>(v & 0xffff);
            a[row][col + 1] = widen::<BF16>(v >> 16);
        }
        // B: register r holds rows (k) 2t, 2t+1 (+8 for r = 1) of column g.
        for (r, &op) in bops.iter().enumerate() {
            let v = cx.get(op, lane) as u32;
            let k = 2 * t + 8 * r;
            b[k][g] = widen::<BF16>(v & 0xffff);
            b[k + 1][g] = widen::<BF16>(v >> 16);
        }
        // C: f32 element i at row g (+8 for i >= 2), column 2t + (i & 1); f16: register r
        // holds the pair of row g + 8r.
        if C_F16 {
            for (r, &op) in cops.iter().enumerate() {
                let v = cx.get(op, lane) as u32;
                c[g + 8 * r][2 * t] = widen::<false>(v & 0xffff);
                c[g + 8 * r][2 * t + 1] = widen::<false>(v >> 16);
            }
        } else {
            for (i, &op) in cops.iter().enumerate() {
                c[g + 8 * (i >> 1)][2 * t + (i & 1)] = f32::from_bits(cx.get(op, lane) as u32);
            }
        }
    }
    // Each d[m][n] is c[m][n] plus the products in increasing k, as before; looping over k
    // outside n lets the compiler run the 8 columns of a row as one vector.
    let mut d = c;
    for (dm, am) in d.iter_mut().zip(&a) {
        for (&av, bk) in am[..K].iter().zip(&b) {
            for (dv, &bv) in dm.iter_mut().zip(bk) {
                *dv += av * bv;
            }
        }
    }
    for lane in 0..32 {
        let (g, t) = (lane >> 2, lane & 3);
        if D_F16 {
            for (r, &op) in dops.iter().enumerate() {
                let lo = half::f16::from_f32(d[g + 8 * r][2 * t]).to_bits() as u64;
                let hi = half::f16::from_f32(d[g + 8 * r][2 * t + 1]).to_bits() as u64;
                cx.set(op, lane, lo | hi << 16);
            }
        } else {
            for (i, &op) in dops.iter().enumerate() {
                cx.set(op, lane, d[g + 8 * (i >> 1)][2 * t + (i & 1)].to_bits() as u64);
            }
        }
    }
    Ok(())
}

/// `ldmatrix.sync.aligned.m8n8.num{.trans}{.shared{::cta}}.b16 r, [p]` and
/// `stmatrix.sync.aligned.m8n8.num{.trans}{.shared{::cta}}.b16 [p], r`. `aux`: the number
/// of matrices (1, 2, 4), bit 8: `.trans`.
fn decode_matrix(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let load = spec.base == "ldmatrix";
    if !(spec.has("sync") && spec.has("aligned")) {
        return Err(format!("{} needs .sync.aligned", spec.base));
    }
    if !spec.has("m8n8") || !spec.has("b16") {
        return Err(format!("only {}.m8n8 with .b16 elements is supported", spec.base));
    }
    let num = match () {
        _ if spec.has("x1") => 1,
        _ if spec.has("x2") => 2,
        _ if spec.has("x4") => 4,
        _ => return Err(format!("{} needs .x1, .x2 or .x4", spec.base)),
    };
    let trans = spec.has("trans");
    let shared = spec.mods.iter().any(|m| *m == "shared" || m.starts_with("shared::"));
    let (regs, addr) =
        if load { (spec.operand(0)?, spec.operand(1)?) } else { (spec.operand(1)?, spec.operand(0)?) };
    let ops = cx.vector(regs)?;
    if ops.len() != num {
        return Err(format!("{}.x{num} needs {num} registers, found {}", spec.base, ops.len()));
    }
    let (space, addr) = cx.mem(addr, shared.then_some(crate::ptx::Space::Shared))?;
    let f: ExecFn = if load { ldmatrix } else { stmatrix };
    let class = if load { Class::Ldmatrix } else { Class::SharedMem };
    Ok(Inst::new(Kind::Collective(f, Members::All), ops)
        .with_addr(space, addr)
        .with_aux(num as u64 | (trans as u64) << 8)
        .with_class(class))
}

/// The rows of `num` 8×8 matrices of b16: lane `8m + r` gives the address of row `r` of
/// matrix `m`. Also counts the access's shared-memory wavefronts (16-byte rows, so
/// quarter-warp phases: one wavefront per conflict-free matrix).
fn row_addresses(cx: &mut Cx<'_>, inst: &Inst, num: usize, what: &str) -> Result<[u64; 32], Fault> {
    let needed = if num == 4 { u32::MAX } else { (1u32 << (8 * num)) - 1 };
    if needed & !cx.mask != 0 {
        return Err(Fault::new(
            FaultKind::IllegalInstruction,
            format!(
                "{what}.x{num} takes row addresses from lanes {needed:#010x}, but only lanes {:#010x} execute it",
                cx.mask
            ),
        ));
    }
    let mut addrs = [0u64; 32];
    let mut offsets = [0u64; 32];
    let mut smask = 0u32;
    for l in lanes(needed) {
        addrs[l] = cx.address(inst, l);
        if let Some(o) = banks::shared_offset(inst.space, addrs[l]) {
            offsets[l] = o;
            smask |= 1 << l;
        }
    }
    if cx.count_banks {
        banks::record(cx.counters, &offsets, smask, 16);
    }
    Ok(addrs)
}

/// `ldmatrix`: each lane `t` receives, in register `m`, the b16 pair at row `t / 4`, columns
/// `2(t % 4)` and `+1` of matrix `m` (the lower column in the low half); with `.trans` the
/// pair at column `t / 4`, rows `2(t % 4)` and `+1` (the matrix read column-major).
fn ldmatrix(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let num = (inst.aux & 0xff) as usize;
    let trans = inst.aux >> 8 & 1 != 0;
    let addrs = row_addresses(cx, inst, num, "ldmatrix")?;
    let mut rows = [[0u16; 8]; 32]; // [8m + r][column]
    for (l, row) in rows.iter_mut().enumerate().take(8 * num) {
        let mut buf = [0u8; 16];
        cx.load(inst.space, addrs[l], &mut buf, 16, l).map_err(|f| f.at_lane(l))?;
        for (e, ch) in row.iter_mut().zip(buf.chunks_exact(2)) {
            *e = u16::from_le_bytes([ch[0], ch[1]]);
        }
    }
    for t in cx.lanes() {
        for (m, &op) in inst.ops.iter().enumerate() {
            let (lo, hi) = if trans {
                (rows[8 * m + 2 * (t % 4)][t / 4], rows[8 * m + 2 * (t % 4) + 1][t / 4])
            } else {
                (rows[8 * m + t / 4][2 * (t % 4)], rows[8 * m + t / 4][2 * (t % 4) + 1])
            };
            cx.set(op, t, lo as u64 | (hi as u64) << 16);
        }
    }
    Ok(())
}

/// `stmatrix` (sm_90): the inverse of [`ldmatrix`]: the fragments of all 32 lanes are
/// assembled into the matrices, whose rows are stored at the addresses lanes `8m + r` give.
fn stmatrix(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    whole_warp(cx, "stmatrix")?;
    let num = (inst.aux & 0xff) as usize;
    let trans = inst.aux >> 8 & 1 != 0;
    let addrs = row_addresses(cx, inst, num, "stmatrix")?;
    let mut rows = [[0u16; 8]; 32];
    for t in 0..32 {
        for (m, &op) in inst.ops.iter().enumerate() {
            let v = cx.get(op, t);
            let (lo, hi) = (v as u16, (v >> 16) as u16);
            if trans {
                rows[8 * m + 2 * (t % 4)][t / 4] = lo;
                rows[8 * m + 2 * (t % 4) + 1][t / 4] = hi;
            } else {
                rows[8 * m + t / 4][2 * (t % 4)] = lo;
                rows[8 * m + t / 4][2 * (t % 4) + 1] = hi;
            }
        }
    }
    for (l, row) in rows.iter().enumerate().take(8 * num) {
        let mut buf = [0u8; 16];
        for (ch, e) in buf.chunks_exact_mut(2).zip(row) {
            ch.copy_from_slice(&e.to_le_bytes());
        }
        cx.store(inst.space, addrs[l], &buf, 16, l).map_err(|f| f.at_lane(l))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The written-out conversion equals the `half` crate's on every f16 bit pattern.
    #[test]
    fn f16_widening_is_exact_for_every_value() {
        for h in 0..=u16::MAX {
            let (got, want) = (super::f16_to_f32(h), half::f16::from_bits(h).to_f32());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#06x}: {got} vs {want}"
            );
        }
    }
}
