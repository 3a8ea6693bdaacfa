//! Warp collectives: `shfl.sync`, `vote.sync`, `match.sync`, `redux.sync`, `elect.sync`, and
//! `activemask`. (`bar.warp.sync` is the scheduler's [`Kind::WarpSync`].)
//!
//! Semantics from the PTX ISA, "Parallel Synchronization and Communication Instructions" and
//! "Data Movement and Conversion Instructions: shfl.sync". Every `.sync` instruction is a
//! [`Kind::Collective`] on its `membermask` operand: the scheduler runs it once all member lanes
//! have converged at it, so the exec fn sees every participant in `cx.mask` and reads other
//! lanes' registers directly.

use crate::exec::Cx;
use crate::exec::cx::lanes;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind, Members, Opnd};
use crate::ptx::Operand;

/// A destination written `d` or `d|p`: the value register and the optional predicate.
pub fn dest_pair(cx: &mut DecodeCx<'_>, op: &Operand) -> Result<(Opnd, Opnd), String> {
    match op {
        Operand::Pair(d, p) => {
            let reg = |cx: &mut DecodeCx<'_>, n: &str| {
                if n == "_" { Ok(Opnd::Sink) } else { cx.opnd(&Operand::Name(n.to_owned())) }
            };
            Ok((reg(cx, d)?, reg(cx, p)?))
        }
        other => Ok((cx.opnd(other)?, Opnd::Sink)),
    }
}

/// A predicate source written `a` or `!a`: the operand and whether it is negated.
fn pred_source(cx: &mut DecodeCx<'_>, op: &Operand) -> Result<(Opnd, bool), String> {
    match op {
        Operand::Not(n) => Ok((cx.opnd(&Operand::Name(n.clone()))?, true)),
        other => Ok((cx.opnd(other)?, false)),
    }
}

/// The member lanes of a collective: its membermask (read in the first active lane) that
/// are active. Members that are not active cannot occur (the scheduler waits for them).
#[inline]
fn members(cx: &Cx<'_>, op: Opnd) -> u32 {
    let first = cx.mask.trailing_zeros() as usize;
    cx.get(op, first) as u32 & cx.mask
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const BFLY: u8 = 2;
const IDX: u8 = 3;

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    let collective =
        |f, ops: Vec<Opnd>, mask_at: usize| Inst::new(Kind::Collective(f, Members::Operand(mask_at)), ops);
    let inst = match spec.base {
        "shfl" => {
            if !spec.has("sync") {
                return Err("shfl without .sync (removed for sm_70 and later) is not supported".into());
            }
            if !spec.has("b32") {
                return Err("shfl.sync takes .b32".into());
            }
            let f: ExecFn = if spec.has("up") {
                shfl::<UP>
            } else if spec.has("down") {
                shfl::<DOWN>
            } else if spec.has("bfly") {
                shfl::<BFLY>
            } else if spec.has("idx") {
                shfl::<IDX>
            } else {
                return Err("shfl.sync needs a mode: .up, .down, .bfly or .idx".into());
            };
            let (d, p) = dest_pair(cx, spec.operand(0)?)?;
            let mut ops = vec![d, p];
            for i in 1..5 {
                ops.push(cx.opnd(spec.operand(i)?)?);
            }
            collective(f, ops, 5)
        }
        "vote" => {
            if !spec.has("sync") {
                return Err("vote without .sync (removed for sm_70 and later) is not supported".into());
            }
            let f: ExecFn = if spec.has("ballot") {
                vote::<{ VoteMode::Ballot as u8 }>
            } else if spec.has("all") {
                vote::<{ VoteMode::All as u8 }>
            } else if spec.has("any") {
                vote::<{ VoteMode::Any as u8 }>
            } else if spec.has("uni") {
                vote::<{ VoteMode::Uni as u8 }>
            } else {
                return Err("vote.sync needs a mode: .all, .any, .uni or .ballot".into());
            };
            let d = cx.opnd(spec.operand(0)?)?;
            let (a, neg) = pred_source(cx, spec.operand(1)?)?;
            let m = cx.opnd(spec.operand(2)?)?;
            collective(f, vec![d, a, m], 2).with_aux(neg as u64)
        }
        "match" => {
            let width = if spec.has("b64") {
                64
            } else if spec.has("b32") {
                32
            } else {
                return Err("match.sync takes .b32 or .b64".into());
            };
            let f: ExecFn = match (spec.has("any"), spec.has("all")) {
                (true, false) => match_any,
                (false, true) => match_all,
                _ => return Err("match.sync needs .any or .all".into()),
            };
            let (d, p) = dest_pair(cx, spec.operand(0)?)?;
            let a = cx.opnd(spec.operand(1)?)?;
            let m = cx.opnd(spec.operand(2)?)?;
            collective(f, vec![d, p, a, m], 3).with_aux(if width == 32 { 0xffff_ffff } else { u64::MAX })
        }
        "redux" => {
            let f = redux_fn(spec)?;
            let d = cx.opnd(spec.operand(0)?)?;
            let a = cx.opnd(spec.operand(1)?)?;
            let m = cx.opnd(spec.operand(2)?)?;
            collective(f, vec![d, a, m], 2)
        }
        "elect" => {
            let (d, p) = dest_pair(cx, spec.operand(0)?)?;
            let m = cx.opnd(spec.operand(1)?)?;
            collective(elect, vec![d, p, m], 2)
        }
        "activemask" => {
            let d = cx.opnd(spec.operand(0)?)?;
            Inst::new(
                Kind::Plain(|cx, i| {
                    let m = cx.mask as u64;
                    for l in cx.lanes() {
                        cx.set(i.ops[0], l, m);
                    }
                    Ok(())
                }),
                vec![d],
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(inst))
}

/// `shfl.sync.mode.b32 d[|p], a, b, c, membermask` (ops: d, p, a, b, c, membermask).
///
/// The source lane follows the ISA's pseudo-code: `c[4:0]` is the clamp value and `c[12:8]`
/// the segment mask; `maxLane = (lane & mask) | (clamp & !mask)`, `minLane = lane & mask`;
/// `.up` reads `lane - b` if that is `>= maxLane`, `.down` `lane + b` and `.bfly` `lane ^ b`
/// if `<= maxLane`, `.idx` `minLane | (b & !mask)` if `<= maxLane`; otherwise the lane's own
/// value, with `p` false. The ISA leaves the value undefined when the source lane is
/// inactive or not a member: here the lane then gets its own value (`p` still says whether
/// the computed lane was in range).
fn shfl<const MODE: u8>(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let [d, p, a, b, c, m] = [inst.ops[0], inst.ops[1], inst.ops[2], inst.ops[3], inst.ops[4], inst.ops[5]];
    let members = members(cx, m);
    let mut src = [0u64; 32];
    for l in cx.lanes() {
        src[l] = cx.get(a, l) & 0xffff_ffff;
    }
    for l in cx.lanes() {
        let lane = l as i32;
        let bval = (cx.get(b, l) & 31) as i32;
        let cv = cx.get(c, l) as i32;
        let (clamp, seg) = (cv & 31, (cv >> 8) & 31);
        let max_lane = (lane & seg) | (clamp & !seg);
        let min_lane = lane & seg;
        let (j, in_range) = match MODE {
            UP => (lane - bval, lane - bval >= max_lane),
            DOWN => (lane + bval, lane + bval <= max_lane),
            BFLY => (lane ^ bval, lane ^ bval <= max_lane),
            _ => {
                let j = min_lane | (bval & !seg);
                (j, j <= max_lane)
            }
        };
        let j = if in_range { j as usize } else { l };
        let v = if members >> j & 1 != 0 { src[j] } else { src[l] };
        cx.set(d, l, v);
        cx.set(p, l, in_range as u64);
    }
    Ok(())
}

#[repr(u8)]
enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

/// `vote.sync.{all,any,uni}.pred d, {!}a, membermask` and `vote.sync.ballot.b32`: the
/// reduction of the predicate over the member lanes; a ballot has a 1 bit for each member
/// whose predicate is true (non-members contribute 0).
fn vote<const MODE: u8>(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let [d, a, m] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let neg = inst.aux & 1 != 0;
    let members = members(cx, m);
    let mut ballot = 0u32;
    for l in lanes(members) {
        ballot |= (((cx.get(a, l) & 1 != 0) != neg) as u32) << l;
    }
    let v = match MODE {
        x if x == VoteMode::All as u8 => (ballot == members) as u64,
        x if x == VoteMode::Any as u8 => (ballot != 0) as u64,
        x if x == VoteMode::Uni as u8 => (ballot == members || ballot == 0) as u64,
        _ => ballot as u64,
    };
    for l in cx.lanes() {
        cx.set(d, l, v);
    }
    Ok(())
}

/// `match.any.sync.type d, a, membermask`: the mask of member lanes whose `a` equals this lane's.
fn match_any(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let [d, _, a, m] = [inst.ops[0], inst.ops[1], inst.ops[2], inst.ops[3]];
    let members = members(cx, m);
    let mut vals = [0u64; 32];
    for l in lanes(members) {
        vals[l] = cx.get(a, l) & inst.aux;
    }
    for l in cx.lanes() {
        let mine = cx.get(a, l) & inst.aux;
        let mut same = 0u32;
        for k in lanes(members) {
            same |= ((vals[k] == mine) as u32) << k;
        }
        cx.set(d, l, same as u64);
    }
    Ok(())
}

/// `match.all.sync.type d[|p], a, membermask`: `d` is the member mask and `p` true if every
/// member's `a` is equal, else `d` is 0 and `p` false.
fn match_all(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let [d, p, a, m] = [inst.ops[0], inst.ops[1], inst.ops[2], inst.ops[3]];
    let members = members(cx, m);
    let first = cx.get(a, members.trailing_zeros().min(31) as usize) & inst.aux;
    let all = lanes(members).all(|l| cx.get(a, l) & inst.aux == first);
    for l in cx.lanes() {
        cx.set(d, l, if all { members as u64 } else { 0 });
        cx.set(p, l, all as u64);
    }
    Ok(())
}

/// `elect.sync d|p, membermask`: the leader is the lowest member lane (the ISA asks only for
/// a deterministic choice); `d` is its lane id, `p` true in the leader only.
fn elect(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let [d, p, m] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let leader = members(cx, m).trailing_zeros() as usize;
    for l in cx.lanes() {
        cx.set(d, l, leader as u64);
        cx.set(p, l, (l == leader) as u64);
    }
    Ok(())
}

/// The exec fn of a `redux.sync` form.
fn redux_fn(spec: &OpSpec<'_>) -> Result<ExecFn, String> {
    if !spec.has("sync") {
        return Err("redux needs .sync".into());
    }
    let ty = spec.ty()?;
    let op = ["add", "min", "max", "and", "or", "xor"]
        .into_iter()
        .find(|o| spec.has(o))
        .ok_or("redux.sync needs an operation")?;
    Ok(match (op, ty) {
        ("add", "u32" | "s32") => redux::<ADD>,
        ("min", "u32") => redux::<MIN_U>,
        ("max", "u32") => redux::<MAX_U>,
        ("min", "s32") => redux::<MIN_S>,
        ("max", "s32") => redux::<MAX_S>,
        ("and", "b32") => redux::<AND>,
        ("or", "b32") => redux::<OR>,
        ("xor", "b32") => redux::<XOR>,
        ("min" | "max", "f32") => match (op == "max", spec.has("abs"), spec.has("NaN")) {
            (false, false, false) => redux_f32::<false, false, false>,
            (false, false, true) => redux_f32::<false, false, true>,
            (false, true, false) => redux_f32::<false, true, false>,
            (false, true, true) => redux_f32::<false, true, true>,
            (true, false, false) => redux_f32::<true, false, false>,
            (true, false, true) => redux_f32::<true, false, true>,
            (true, true, false) => redux_f32::<true, true, false>,
            (true, true, true) => redux_f32::<true, true, true>,
        },
        _ => return Err(format!("redux.sync.{op} does not take .{ty}")),
    })
}

const ADD: u8 = 0;
const MIN_U: u8 = 1;
const MAX_U: u8 = 2;
const MIN_S: u8 = 3;
const MAX_S: u8 = 4;
const AND: u8 = 5;
const OR: u8 = 6;
const XOR: u8 = 7;

/// `redux.sync.op.type d, a, membermask` on 32-bit integers: the reduction of `a` over the
/// member lanes (`.add` truncated to 32 bits), written to every active lane.
fn redux<const OP: u8>(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let [d, a, m] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let members = members(cx, m);
    let mut acc: Option<u32> = None;
    for l in lanes(members) {
        let x = cx.get(a, l) as u32;
        acc = Some(match acc {
            None => x,
            Some(y) => match OP {
                ADD => y.wrapping_add(x),
                MIN_U => y.min(x),
                MAX_U => y.max(x),
                MIN_S => (y as i32).min(x as i32) as u32,
                MAX_S => (y as i32).max(x as i32) as u32,
                AND => y & x,
                OR => y | x,
                _ => y ^ x,
            },
        });
    }
    let v = acc.unwrap_or(0) as u64;
    for l in cx.lanes() {
        cx.set(d, l, v);
    }
    Ok(())
}

/// The canonical NaN of f32.
const CANONICAL_NAN: u32 = 0x7fff_ffff;

/// `redux.sync.{min,max}{.abs}{.NaN}.f32` (sm_100a): `.abs` reduces absolute values; +0.0 is
/// greater than -0.0; without `.NaN` NaN inputs are ignored (all NaN gives the canonical
/// NaN), with `.NaN` any NaN input gives the canonical NaN.
fn redux_f32<const MAX: bool, const ABS: bool, const NAN: bool>(
    cx: &mut Cx<'_>,
    inst: &Inst,
) -> Result<(), Fault> {
    let [d, a, m] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let members = members(cx, m);
    let mut acc: Option<f32> = None;
    let mut saw_nan = false;
    for l in lanes(members) {
        let mut x = f32::from_bits(cx.get(a, l) as u32);
        if ABS {
            x = x.abs();
        }
        if x.is_nan() {
            saw_nan = true;
            continue;
        }
        acc = Some(match acc {
            None => x,
            // total_cmp orders -0.0 below +0.0, as the ISA asks; NaNs are already out.
            Some(y) => {
                let greater = x.total_cmp(&y).is_gt();
                if greater == MAX { x } else { y }
            }
        });
    }
    let v = match acc {
        Some(_) if NAN && saw_nan => CANONICAL_NAN,
        Some(x) => x.to_bits(),
        None => CANONICAL_NAN,
    };
    for l in cx.lanes() {
        cx.set(d, l, v as u64);
    }
    Ok(())
}
