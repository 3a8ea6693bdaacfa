//! Asynchronous copies from global to shared memory: `cp.async.{ca,cg}.shared.global`,
//! `cp.async.commit_group`, `cp.async.wait_group` and `cp.async.wait_all`.
//!
//! Semantics from the PTX ISA, "Data Movement and Conversion Instructions: cp.async" and
//! "cp.async.commit_group / cp.async.wait_group". A copy is modelled as the GPU can behave:
//! the global source is read when the instruction issues (bounds, alignment and the
//! initialisation check apply then) and the bytes wait in the lane's queue
//! ([`crate::exec::cx::LaneAsync`]); `commit_group` closes the lane's pending copies into a
//! group; `wait_group N` writes the bytes of all but the `N` most recent groups to shared
//! memory, through the race and initialisation shadow. So a kernel that reads the
//! destination before waiting sees the old bytes, as it may on a GPU.

use crate::exec::cx::{AsyncCopy, lanes};
use crate::exec::{Cx, banks};
use crate::fault::{Fault, FaultKind};
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{Class, ExecFn, Inst, Kind, MemSpace, Opnd};
use crate::ptx::{Operand, Space};

/// How a copy's optional fourth operand reads.
const FULL: u8 = 0;
/// `src-size`: bytes to read; the rest of the `cp-size` bytes are zero.
const SRC_SIZE: u8 = 1;
/// `ignore-src` predicate: when true nothing is read and zeros are written.
const IGNORE_SRC: u8 = 2;
/// `!ignore-src`.
const IGNORE_SRC_NOT: u8 = 3;

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    if spec.base != "cp" {
        return Ok(None);
    }
    if spec.mods.first() != Some(&"async") {
        return Err(format!("cp.{} is not supported", spec.mods.join(".")));
    }
    let inst = match spec.mods.get(1).copied() {
        Some("commit_group") => Inst::new(Kind::Plain(commit_group), vec![]),
        Some("wait_group") => {
            let Some(Operand::Int(n)) = spec.operands.first() else {
                return Err("cp.async.wait_group needs an integer constant".into());
            };
            Inst::new(Kind::Plain(wait_group), vec![]).with_aux(*n)
        }
        Some("wait_all") => Inst::new(Kind::Plain(wait_all), vec![]),
        Some("ca" | "cg") => decode_copy(spec, cx)?,
        _ => {
            return Err(format!(
                "cp.{} is not supported (only cp.async.ca/cg, commit_group, wait_group, wait_all)",
                spec.mods.join(".")
            ));
        }
    };
    Ok(Some(inst))
}

/// `cp.async.{ca,cg}.shared{::cta}.global{.L2::cache_hint}{.L2::NB} [dst], [src], cp-size
/// {, src-size | ignore-src}{, cache-policy}`. ops: source base, source offset, the fourth
/// operand (or `Imm(0)`); `aux`: cp-size, and the fourth operand's kind at bit 8.
fn decode_copy(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let shared = spec.mods.iter().any(|m| *m == "shared" || m.starts_with("shared::"));
    if !shared || !spec.has("global") {
        return Err("cp.async copies from .global to .shared".into());
    }
    let (_, dst) = cx.mem(spec.operand(0)?, Some(Space::Shared))?;
    let (_, src) = cx.mem(spec.operand(1)?, Some(Space::Global))?;
    let cp_size = match spec.operand(2)? {
        Operand::Int(n @ (4 | 8 | 16)) => *n,
        other => return Err(format!("cp-size must be 4, 8 or 16, found {other:?}")),
    };
    if spec.has("cg") && cp_size != 16 {
        return Err("cp.async.cg copies 16 bytes".into());
    }
    // With .L2::cache_hint the last operand is the cache policy, a hint we ignore.
    let mut rest = &spec.operands[3..];
    if spec.has("L2::cache_hint") {
        rest = rest.split_last().map_or(rest, |(_, r)| r);
    }
    let (mode, extra) = match rest {
        [] => (FULL, Opnd::Imm(0)),
        [Operand::Not(p)] => (IGNORE_SRC_NOT, cx.opnd(&Operand::Name(p.clone()))?),
        [op] => {
            let o = cx.opnd(op)?;
            if cx.is_pred(o) { (IGNORE_SRC, o) } else { (SRC_SIZE, o) }
        }
        _ => return Err("too many operands for cp.async".into()),
    };
    let ops = vec![src.base.map_or(Opnd::Imm(0), Opnd::Reg), Opnd::Imm(src.offset as u64), extra];
    let f: ExecFn = match mode {
        FULL => copy::<FULL>,
        SRC_SIZE => copy::<SRC_SIZE>,
        IGNORE_SRC => copy::<IGNORE_SRC>,
        _ => copy::<IGNORE_SRC_NOT>,
    };
    Ok(Inst::new(Kind::Plain(f), ops)
        .with_addr(MemSpace::Shared, dst)
        .with_aux(cp_size)
        .with_class(Class::AsyncCopy))
}

/// Issues one copy per active lane: reads the source now, queues the bytes.
///
/// The shared-memory wavefronts are counted here, per instruction, with the lanes'
/// destinations (the hardware writes each instruction's bytes together).
fn copy<const MODE: u8>(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let cp = (inst.aux & 0xff) as usize;
    let [base, off, extra] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let mut dsts = [0u64; 32];
    for l in cx.lanes() {
        let dst = cx.address(inst, l);
        let src = cx.get(base, l).wrapping_add(cx.get(off, l));
        let n = match MODE {
            FULL => cp,
            SRC_SIZE => cx.get(extra, l) as u32 as usize,
            IGNORE_SRC => {
                if cx.get(extra, l) & 1 != 0 {
                    0
                } else {
                    cp
                }
            }
            _ => {
                if cx.get(extra, l) & 1 != 0 {
                    cp
                } else {
                    0
                }
            }
        };
        if n > cp {
            return Err(Fault::new(
                FaultKind::IllegalInstruction,
                format!("cp.async with src-size {n} larger than its cp-size {cp} (undefined behaviour)"),
            )
            .at_lane(l));
        }
        if dst % cp as u64 != 0 {
            return Err(Fault::new(
                FaultKind::Misaligned,
                format!("cp.async shared destination {dst:#x} is not aligned to {cp} bytes"),
            )
            .at_lane(l));
        }
        if dst + cp as u64 > cx.shared.bytes.len() as u64 {
            return Err(Fault::new(
                FaultKind::IllegalAddress,
                format!("cp.async of {cp} bytes to shared offset {dst:#x}, past the CTA's {} bytes of shared memory", cx.shared.bytes.len()),
            )
            .at_lane(l));
        }
        let mut bytes = [0u8; 16];
        if n > 0 {
            cx.load(MemSpace::Global, src, &mut bytes[..n], cp as u64, l).map_err(|f| f.at_lane(l))?;
        }
        cx.async_copies[l].pending.push(AsyncCopy { shared_offset: dst, len: cp as u8, bytes });
        dsts[l] = dst;
    }
    if cx.count_banks {
        banks::record(cx.counters, &dsts, cx.mask, cp as u32);
    }
    Ok(())
}

/// `cp.async.commit_group`: each active lane's pending copies become its newest group (an
/// empty group when there are none, as the ISA says).
fn commit_group(cx: &mut Cx<'_>, _: &Inst) -> Result<(), Fault> {
    for l in cx.lanes() {
        let q = &mut cx.async_copies[l];
        let group = std::mem::take(&mut q.pending);
        q.groups.push_back(group);
    }
    Ok(())
}

/// Completes all but the `keep` most recent groups of each lane of `mask`, oldest first.
fn complete(cx: &mut Cx<'_>, mask: u32, keep: usize) -> Result<(), Fault> {
    for l in lanes(mask) {
        while cx.async_copies[l].groups.len() > keep {
            let mut group = cx.async_copies[l].groups.pop_front().expect("a group");
            for c in &group {
                let n = c.len as usize;
                cx.store(MemSpace::Shared, c.shared_offset, &c.bytes[..n], n as u64, l)
                    .map_err(|f| f.at_lane(l))?;
            }
            // Reuse the finished group's buffer for the next pending copies.
            let q = &mut cx.async_copies[l];
            if q.pending.capacity() == 0 {
                group.clear();
                q.pending = group;
            }
        }
    }
    Ok(())
}

/// `cp.async.wait_group N`: waits until at most `N` of the lane's groups are incomplete.
fn wait_group(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    complete(cx, cx.mask, inst.aux as usize)
}

/// `cp.async.wait_all`: `commit_group` then `wait_group 0`.
fn wait_all(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    commit_group(cx, inst)?;
    complete(cx, cx.mask, 0)
}
