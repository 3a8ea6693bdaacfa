//! A warp: its registers and per-lane state, and the stepping of its divergent lane groups.
//!
//! Lanes that share a program counter run together as a group. The group with the lowest
//! program counter runs first, which brings diverged lanes back together where structured
//! control flow rejoins; groups that reach the same instruction merge. A warp collective runs
//! only once all its member lanes are in one group at it; a barrier parks the group until
//! the CTA releases it.

use super::counters::Counters;
use super::cx::{Cx, LaneAsync};
use crate::fault::{Fault, FaultKind};
use crate::program::Kernel;
use crate::program::inst::{Inst, Kind, Members, Opnd};

/// Why a group is not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Run,
    /// Parked at a `bar.sync` of this barrier id, waiting for `expected` threads (None: all).
    Barrier {
        id: u32,
        expected: Option<u32>,
    },
    /// At a warp collective whose member lanes are not all here yet.
    Collective,
}

/// Lanes at one program counter.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub pc: u32,
    pub mask: u32,
    pub wait: Wait,
}

/// What stopped a warp's run.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Every lane exited.
    Done,
    /// No group can run: they wait at barriers or collectives.
    Blocked,
}

/// A warp of a CTA.
pub struct Warp {
    pub index: u16,
    pub regs: Vec<u64>,
    pub groups: Vec<Group>,
    /// Lanes that exist (the last warp of a block may be partial).
    pub valid: u32,
    pub exited: u32,
    pub carry: u32,
    pub local: Vec<u8>,
    pub async_copies: Box<[LaneAsync; 32]>,
    /// Per lane: (return pc, call pc) of active calls.
    pub calls: Vec<Vec<(u32, u32)>>,
    /// The allocation this warp's global accesses last hit.
    pub alloc_hint: usize,
    /// Warp collectives executed (shared-memory race detection orders lanes by them).
    pub sync_count: u32,
}

/// What a warp runs against: the CTA's memories and the launch's settings.
pub struct WarpEnv<'a> {
    pub kernel: &'a Kernel,
    pub global: &'a crate::memory::MemoryView,
    pub shared: &'a mut super::shared::Shared,
    pub params: &'a [u8],
    pub counters: &'a mut Counters,
    /// Warp instructions this CTA may still execute.
    pub budget: &'a mut u64,
    pub check_written: bool,
    pub count_banks: bool,
}

impl Warp {
    /// The lanes of the group at index `g` that pass `inst`'s guard.
    fn guarded(&self, inst: &Inst, mask: u32) -> u32 {
        match inst.guard {
            None => mask,
            Some((p, neg)) => {
                let mut m = 0;
                for l in super::cx::lanes(mask) {
                    let v = self.regs[p as usize * 32 + l] & 1 != 0;
                    m |= ((v != neg) as u32) << l;
                }
                m
            }
        }
    }

    /// Runs until every lane has exited or no group can run.
    pub fn run(&mut self, env: &mut WarpEnv<'_>) -> Result<Stop, (Fault, u32, u32)> {
        let code = &env.kernel.code;
        loop {
            let Some(gi) = self.next_group() else {
                return Ok(if self.groups.is_empty() { Stop::Done } else { Stop::Blocked });
            };
            let Group { pc, mask, .. } = self.groups[gi];
            let Some(inst) = code.get(pc as usize) else {
                let f = Fault::new(FaultKind::IllegalInstruction, "ran past the kernel's last instruction");
                return Err((f, pc.saturating_sub(1), mask));
            };
            if *env.budget == 0 {
                let f = Fault::new(
                    FaultKind::InstructionBudget,
                    "the CTA ran past its instruction budget (KILN_SOFTGPU_BUDGET): a kernel that never ends?",
                );
                return Err((f, pc, mask));
            }
            *env.budget -= 1;
            let active = self.guarded(inst, mask);
            env.counters.warp_instructions[Counters::class_index(inst.class)] += 1;
            env.counters.thread_instructions += active.count_ones() as u64;
            self.step(gi, inst, active, env).map_err(|f| (f, pc, if active != 0 { active } else { mask }))?;
            self.merge();
        }
    }

    /// The runnable group with the lowest program counter.
    fn next_group(&self) -> Option<usize> {
        if self.groups.len() == 1 {
            return (self.groups[0].wait == Wait::Run).then_some(0);
        }
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.wait == Wait::Run)
            .min_by_key(|(_, g)| g.pc)
            .map(|(i, _)| i)
    }

    /// Merges groups at the same program counter that are running or waiting at a collective.
    pub(crate) fn merge(&mut self) {
        if self.groups.len() < 2 {
            return;
        }
        let mut i = 0;
        while i < self.groups.len() {
            let mut j = i + 1;
            while j < self.groups.len() {
                let (a, b) = (self.groups[i], self.groups[j]);
                let mergeable = |w| matches!(w, Wait::Run | Wait::Collective);
                if a.pc == b.pc && mergeable(a.wait) && mergeable(b.wait) {
                    self.groups[i].mask |= b.mask;
                    self.groups[i].wait = Wait::Run;
                    self.groups.swap_remove(j);
                } else {
                    j += 1;
                }
            }
            i += 1;
        }
    }

    fn cx<'a>(&'a mut self, env: &'a mut WarpEnv<'_>, mask: u32) -> Cx<'a> {
        Cx {
            regs: &mut self.regs,
            mask,
            carry: &mut self.carry,
            global: env.global,
            shared: env.shared,
            local: &mut self.local,
            local_bytes: env.kernel.local_bytes as usize,
            params: env.params,
            async_copies: &mut self.async_copies,
            counters: env.counters,
            warp: self.index,
            warp_sync: self.sync_count,
            check_written: env.check_written,
            count_banks: env.count_banks,
            alloc_hint: &mut self.alloc_hint,
        }
    }

    /// Splits group `gi`: lanes `to` go to `target`, the rest continue at the next instruction.
    fn split(&mut self, gi: usize, to: u32, target: u32) {
        let g = &mut self.groups[gi];
        let rest = g.mask & !to;
        if to == 0 {
            g.pc += 1;
        } else if rest == 0 {
            g.pc = target;
        } else {
            g.mask = rest;
            g.pc += 1;
            self.groups.push(Group { pc: target, mask: to, wait: Wait::Run });
        }
    }

    fn collective_ready(&mut self, gi: usize, members: u32) -> Result<bool, Fault> {
        let g = self.groups[gi];
        let members = members & self.valid;
        if members & self.exited != 0 {
            return Err(Fault::new(
                FaultKind::BarrierDivergence,
                format!(
                    "warp collective with member mask {members:#010x}, but lanes {:#010x} have exited",
                    members & self.exited
                ),
            ));
        }
        if members & !g.mask != 0 {
            self.groups[gi].wait = Wait::Collective;
            return Ok(false);
        }
        Ok(true)
    }

    fn step(&mut self, gi: usize, inst: &Inst, active: u32, env: &mut WarpEnv<'_>) -> Result<(), Fault> {
        match inst.kind {
            Kind::Plain(f) => {
                if active != 0 {
                    f(&mut self.cx(env, active), inst)?;
                }
                self.groups[gi].pc += 1;
            }
            Kind::Collective(f, members) => {
                if active != 0 {
                    let members = match members {
                        Members::All => self.valid,
                        Members::Operand(i) => {
                            let l = active.trailing_zeros() as usize;
                            self.cx(env, active).get(inst.ops[i], l) as u32
                        }
                    };
                    if members & !active & self.groups[gi].mask != 0 && matches!(inst.guard, Some(_)) {
                        return Err(Fault::new(
                            FaultKind::BarrierDivergence,
                            format!("warp collective's member lanes {members:#010x} are split by its guard"),
                        ));
                    }
                    if !self.collective_ready(gi, members)? {
                        return Ok(());
                    }
                    // A `.sync` collective orders its members' earlier shared accesses before its
                    // own, and its own before their later ones.
                    self.sync_count += 1;
                    f(&mut self.cx(env, active), inst)?;
                    self.sync_count += 1;
                }
                self.groups[gi].pc += 1;
            }
            Kind::WarpSync => {
                if active != 0 {
                    let l = active.trailing_zeros() as usize;
                    let members = self.cx(env, active).get(inst.ops[0], l) as u32;
                    if !self.collective_ready(gi, members)? {
                        return Ok(());
                    }
                    self.sync_count += 1;
                }
                self.groups[gi].pc += 1;
            }
            Kind::Branch(target) => self.split(gi, active, target),
            Kind::Exit => {
                self.exited |= active;
                let g = &mut self.groups[gi];
                g.mask &= !active;
                g.pc += 1;
                if g.mask == 0 {
                    self.groups.swap_remove(gi);
                }
            }
            Kind::Trap => {
                if active != 0 {
                    return Err(Fault::new(FaultKind::Trap, "trap executed"));
                }
                self.groups[gi].pc += 1;
            }
            Kind::Barrier { wait } => {
                if active == 0 {
                    self.groups[gi].pc += 1;
                    return Ok(());
                }
                if active != self.groups[gi].mask {
                    return Err(Fault::new(
                        FaultKind::BarrierDivergence,
                        "a barrier under a guard that only some lanes pass",
                    ));
                }
                let l = active.trailing_zeros() as usize;
                let cx = self.cx(env, active);
                let id = cx.get(inst.ops.first().copied().unwrap_or(Opnd::Imm(0)), l) as u32;
                let expected = inst.ops.get(1).map(|&o| cx.get(o, l) as u32);
                if id >= 16 {
                    return Err(Fault::new(
                        FaultKind::IllegalInstruction,
                        format!("barrier id {id} is not 0..15"),
                    ));
                }
                if !wait {
                    return Err(Fault::new(FaultKind::IllegalInstruction, "bar.arrive is not supported yet"));
                }
                self.groups[gi].wait = Wait::Barrier { id, expected };
            }
            Kind::Call { target } => {
                let copies = inst.calls.as_deref().expect("a call has copies");
                let pc = self.groups[gi].pc;
                let lb = env.kernel.local_bytes as usize;
                for l in super::cx::lanes(active) {
                    let frame = &mut self.local[l * lb..(l + 1) * lb];
                    for &(from, to, len) in &copies.args {
                        frame.copy_within(from as usize..(from + len) as usize, to as usize);
                    }
                    self.calls[l].push((pc + 1, pc));
                }
                self.split(gi, active, target);
            }
            Kind::Return => {
                let lb = env.kernel.local_bytes as usize;
                let mut by_target: Vec<(u32, u32)> = Vec::new();
                for l in super::cx::lanes(active) {
                    let Some((ret, call)) = self.calls[l].pop() else {
                        return Err(Fault::new(
                            FaultKind::IllegalInstruction,
                            "ret with no call to return to",
                        )
                        .at_lane(l));
                    };
                    let copies = env.kernel.code[call as usize].calls.as_deref().expect("a call has copies");
                    let frame = &mut self.local[l * lb..(l + 1) * lb];
                    for &(from, to, len) in &copies.results {
                        frame.copy_within(from as usize..(from + len) as usize, to as usize);
                    }
                    match by_target.iter_mut().find(|(t, _)| *t == ret) {
                        Some((_, m)) => *m |= 1 << l,
                        None => by_target.push((ret, 1 << l)),
                    }
                }
                let g = &mut self.groups[gi];
                g.mask &= !active;
                g.pc += 1;
                if g.mask == 0 {
                    self.groups.swap_remove(gi);
                }
                for (pc, mask) in by_target {
                    self.groups.push(Group { pc, mask, wait: Wait::Run });
                }
            }
        }
        Ok(())
    }
}
