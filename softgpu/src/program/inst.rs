//! The decoded instruction: what the interpreter runs. Operands are register slots or
//! immediates; symbols, labels and parameters are already resolved to numbers.
//!
//! An ordinary instruction carries an [`ExecFn`] chosen at decode time for its opcode and
//! types (a monomorphised loop over the active lanes), so the interpreter's inner loop is one
//! indirect call per warp instruction.

use crate::exec::Cx;
use crate::fault::Fault;

/// A register slot: register `r` of lane `l` is `regs[r * 32 + l]`.
pub type RegId = u32;

/// A decoded operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opnd {
    Reg(RegId),
    /// An immediate, as the bit pattern of the instruction's type (zero-extended to 64 bits).
    Imm(u64),
    /// `_`: a destination whose value is dropped.
    Sink,
}

/// A state space as the interpreter addresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemSpace {
    Global,
    Shared,
    Local,
    /// The kernel's parameter buffer (read-only).
    KernelParam,
    /// Resolved by the address's window (global, shared or local).
    Generic,
}

/// A memory operand: `[base + offset]`, a symbol folded into the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    pub base: Option<RegId>,
    pub offset: i64,
}

/// Runs an ordinary instruction on the lanes of `cx.mask`.
pub type ExecFn = fn(&mut Cx<'_>, &Inst) -> Result<(), Fault>;

/// Which lanes a warp collective needs converged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Members {
    /// All lanes of the warp (`.aligned` instructions such as mma and ldmatrix).
    All,
    /// The lanes named by the mask operand `ops[i]`.
    Operand(usize),
}

/// The profile class an instruction is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Mma,
    GlobalMem,
    SharedMem,
    AsyncCopy,
    Ldmatrix,
    /// ex2, rcp, rsqrt, sqrt, sin, cos, lg2, tanh: the special function units.
    Special,
    Control,
    Other,
}

/// How an instruction is executed.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Runs on the active lanes.
    Plain(ExecFn),
    /// Runs once every member lane is converged at this instruction.
    Collective(ExecFn, Members),
    /// `bra`: jumps to an instruction index.
    Branch(u32),
    /// `bar.sync` / `barrier.sync` / `bar.arrive` with barrier `ops[0]` and optional thread
    /// count `ops[1]`; `wait` is false for `bar.arrive`.
    Barrier { wait: bool },
    /// `bar.warp.sync` with mask `ops[0]`.
    WarpSync,
    /// `exit`, or `ret` in a kernel.
    Exit,
    /// `ret` in a device function.
    Return,
    /// `call`: `copies` index into [`Inst::calls`]; jumps to `target`.
    Call { target: u32 },
    /// `trap`.
    Trap,
}

/// Parameter bytes a call copies in local memory: (from, to, length).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallCopies {
    /// Arguments: call-site parameter → callee's formal parameter.
    pub args: Vec<(u32, u32, u32)>,
    /// Results, at return: callee's return parameter → call-site parameter.
    pub results: Vec<(u32, u32, u32)>,
}

/// One decoded instruction.
#[derive(Clone, Debug)]
pub struct Inst {
    pub kind: Kind,
    /// Guard predicate register and whether it is negated (`@!%p`).
    pub guard: Option<(RegId, bool)>,
    /// Operands in the family's order (destinations first, as written).
    pub ops: Vec<Opnd>,
    /// The memory operand, for loads, stores, atomics and copies.
    pub addr: Option<Addr>,
    pub space: MemSpace,
    /// Family-specific data: widths, vector counts, comparison codes, ...
    pub aux: u64,
    pub class: Class,
    /// Call copies, for [`Kind::Call`].
    pub calls: Option<Box<CallCopies>>,
    /// The opcode as written, for messages.
    pub opcode: String,
    pub ptx_line: u32,
    /// `.loc` (file index, line) in effect.
    pub loc: Option<(u32, u32)>,
}

impl Inst {
    /// An instruction of `kind` with operands `ops` (the rest defaulted), for decoders.
    pub fn new(kind: Kind, ops: Vec<Opnd>) -> Self {
        Inst {
            kind,
            guard: None,
            ops,
            addr: None,
            space: MemSpace::Generic,
            aux: 0,
            class: Class::Other,
            calls: None,
            opcode: String::new(),
            ptx_line: 0,
            loc: None,
        }
    }

    /// The same instruction with `aux` set.
    pub fn with_aux(mut self, aux: u64) -> Self {
        self.aux = aux;
        self
    }

    /// The same instruction counted in `class`.
    pub fn with_class(mut self, class: Class) -> Self {
        self.class = class;
        self
    }

    /// The same instruction with a memory operand in `space`.
    pub fn with_addr(mut self, space: MemSpace, addr: Addr) -> Self {
        self.space = space;
        self.addr = Some(addr);
        self
    }
}
