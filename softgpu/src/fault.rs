//! What can stop a kernel: a [`Fault`] raised by an instruction, wrapped at the launch into a
//! [`LaunchFault`] naming the kernel, block, thread, instruction and source line.

use std::fmt;

/// The kind of a fault, which decides the CUDA error code the driver reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// An access outside every live allocation or window (CUDA_ERROR_ILLEGAL_ADDRESS).
    IllegalAddress,
    /// An access not aligned to its size (CUDA_ERROR_MISALIGNED_ADDRESS).
    Misaligned,
    /// A read of device memory that was never written (sanitizer; CUDA_ERROR_LAUNCH_FAILED).
    UninitializedRead,
    /// Two threads touched one shared-memory location, at least one writing, with no barrier
    /// between (sanitizer; CUDA_ERROR_LAUNCH_FAILED).
    SharedRace,
    /// Threads of a CTA wait at different barriers, or a warp collective's member lanes are
    /// not converged (CUDA_ERROR_ILLEGAL_INSTRUCTION).
    BarrierDivergence,
    /// No thread can make progress (CUDA_ERROR_LAUNCH_TIMEOUT).
    Deadlock,
    /// The kernel ran past the instruction budget (CUDA_ERROR_LAUNCH_TIMEOUT).
    InstructionBudget,
    /// An instruction or operand form the interpreter cannot execute (CUDA_ERROR_ILLEGAL_INSTRUCTION).
    IllegalInstruction,
    /// An integer divide by zero or a trap (CUDA_ERROR_ASSERT / LAUNCH_FAILED).
    Trap,
}

/// A fault raised by one instruction for one lane.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The lane that faulted (0..32), when one did.
    pub lane: Option<u32>,
    pub message: String,
}

impl Fault {
    /// A fault of `kind` with `message`, not yet tied to a lane.
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Fault { kind, lane: None, message: message.into() }
    }

    /// The same fault, attributed to `lane`.
    pub fn at_lane(mut self, lane: usize) -> Self {
        self.lane.get_or_insert(lane as u32);
        self
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// A fault located in a launch: everything a person needs to find it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("kernel {kernel}, block ({}, {}, {}), thread ({}, {}, {}): `{instruction}` (PTX line {ptx_line}{}): {fault}",
    block[0], block[1], block[2], thread[0], thread[1], thread[2],
    location.as_ref().map(|(f, l)| format!(", {f}:{l}")).unwrap_or_default())]
pub struct LaunchFault {
    pub kernel: String,
    pub block: [u32; 3],
    pub thread: [u32; 3],
    /// The instruction's text.
    pub instruction: String,
    pub ptx_line: u32,
    /// The CUDA source file and line from `.loc`, when the PTX has line info.
    pub location: Option<(String, u32)>,
    pub fault: Fault,
}
