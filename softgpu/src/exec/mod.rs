//! Launching a kernel: the configuration checks the driver makes, then the grid's CTAs in
//! parallel (rayon), each CTA's warps stepped in turn on one host thread until they exit,
//! with `bar.sync` releasing the waiting warps once every live thread has arrived.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

pub mod banks;
pub mod counters;
pub mod cx;
pub mod profile;
pub mod shared;
pub mod warp;

pub use counters::Counters;
pub use cx::Cx;

use crate::device::DeviceSpec;
use crate::fault::{Fault, FaultKind, LaunchFault};
use crate::memory::MemoryView;
use crate::program::Kernel;
use crate::program::decode::SPECIAL;
use shared::Shared;
use warp::{Group, Stop, Wait, Warp, WarpEnv};

/// A launch's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_shared: u32,
}

/// How a launch is run and checked.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The most dynamic shared memory the kernel may use (48 KiB unless raised by
    /// `cuFuncSetAttribute`), counted with its static shared memory.
    pub max_shared: u32,
    /// Warp instructions one CTA may execute before the launch fails.
    pub budget_per_cta: u64,
    /// Report reads of never-written global memory.
    pub check_written: bool,
    /// Report shared-memory races.
    pub check_races: bool,
    /// Run only these CTAs (linear indices), for sampling big grids in profiles.
    pub sample: Option<Vec<u64>>,
    /// Count shared-memory wavefronts and bank conflicts (on with `KILN_SOFTGPU_PROFILE=1`).
    pub count_banks: bool,
}

impl LaunchOptions {
    /// The defaults for `spec`, with the environment's overrides: `KILN_SOFTGPU_BUDGET`
    /// (warp instructions per CTA), `KILN_SOFTGPU_INITCHECK=0` and `KILN_SOFTGPU_RACECHECK=0`.
    pub fn new(spec: &DeviceSpec) -> Self {
        let flag = |name| std::env::var(name).map_or(true, |v| v != "0");
        LaunchOptions {
            max_shared: spec.shared_per_block,
            budget_per_cta: std::env::var("KILN_SOFTGPU_BUDGET")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000_000_000),
            check_written: flag("KILN_SOFTGPU_INITCHECK"),
            check_races: flag("KILN_SOFTGPU_RACECHECK"),
            sample: None,
            count_banks: super::exec::profile::ProfileSettings::from_env().print,
        }
    }
}

/// Why a launch failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LaunchError {
    /// The configuration is invalid; nothing ran (CUDA_ERROR_INVALID_VALUE).
    #[error("invalid launch of {kernel}: {message}")]
    InvalidConfig { kernel: String, message: String },
    /// The shared memory asked for exceeds the limit (CUDA_ERROR_INVALID_VALUE).
    #[error("launch of {kernel}: {needed} bytes of shared memory, above the limit of {limit}{hint}")]
    TooMuchShared { kernel: String, needed: u64, limit: u32, hint: &'static str },
    /// A thread faulted.
    #[error(transparent)]
    Fault(#[from] Box<LaunchFault>),
}

impl LaunchError {
    /// The fault kind, for a fault.
    pub fn fault_kind(&self) -> Option<FaultKind> {
        match self {
            LaunchError::Fault(f) => Some(f.fault.kind),
            _ => None,
        }
    }
}

fn check_config(
    kernel: &Kernel,
    cfg: &LaunchConfig,
    params: &[u8],
    spec: &DeviceSpec,
    opts: &LaunchOptions,
) -> Result<(), LaunchError> {
    let invalid = |message: String| Err(LaunchError::InvalidConfig { kernel: kernel.name.clone(), message });
    let threads: u64 = cfg.block.iter().map(|&d| d as u64).product();
    if cfg.block.contains(&0) || cfg.grid.contains(&0) {
        return invalid(format!("grid {:?} and block {:?} must have no zero dimension", cfg.grid, cfg.block));
    }
    if threads > spec.max_threads_per_block as u64
        || cfg.block.iter().zip(spec.max_block_dim).any(|(&b, m)| b > m)
    {
        return invalid(format!("block {:?} ({threads} threads) exceeds the device's limits", cfg.block));
    }
    if threads > kernel.max_threads as u64 {
        return invalid(format!(
            "block of {threads} threads, above the kernel's .maxntid of {}",
            kernel.max_threads
        ));
    }
    if cfg.grid.iter().zip(spec.max_grid_dim).any(|(&g, m)| g > m) {
        return invalid(format!("grid {:?} exceeds the device's limits {:?}", cfg.grid, spec.max_grid_dim));
    }
    if params.len() != kernel.param_bytes as usize {
        return invalid(format!("{} parameter bytes, the kernel takes {}", params.len(), kernel.param_bytes));
    }
    let needed = kernel.static_shared as u64 + cfg.dynamic_shared as u64;
    if needed > opts.max_shared as u64 {
        let hint = if needed <= spec.shared_per_block_optin as u64 {
            " (raise it with cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES))"
        } else {
            ""
        };
        return Err(LaunchError::TooMuchShared {
            kernel: kernel.name.clone(),
            needed,
            limit: opts.max_shared,
            hint,
        });
    }
    Ok(())
}

/// Runs `kernel` over the grid; returns the profile counters.
pub fn launch(
    kernel: &Kernel,
    cfg: &LaunchConfig,
    params: &[u8],
    global: &MemoryView,
    spec: &DeviceSpec,
    opts: &LaunchOptions,
) -> Result<Counters, LaunchError> {
    check_config(kernel, cfg, params, spec, opts)?;
    let [gx, gy, gz] = cfg.grid.map(|d| d as u64);
    let all: Vec<u64>;
    let ctas: &[u64] = match &opts.sample {
        Some(s) => s,
        None => {
            all = (0..gx * gy * gz).collect();
            &all
        }
    };
    let failed = AtomicBool::new(false);
    let first_fault: Mutex<Option<(u64, LaunchFault)>> = Mutex::new(None);
    let shared_bytes = (kernel.static_shared + cfg.dynamic_shared) as usize;
    let total = ctas
        .par_iter()
        .fold(
            || (Counters::default(), None::<Scratch>),
            |(mut counters, scratch), &c| {
                if failed.load(Ordering::Relaxed) {
                    return (counters, scratch);
                }
                let mut scratch = scratch.unwrap_or_else(|| Scratch {
                    shared: Shared::new(0, opts.check_races, opts.check_written),
                    warps: Vec::new(),
                });
                scratch.shared.reset(shared_bytes);
                let block = [(c % gx) as u32, (c / gx % gy) as u32, (c / (gx * gy)) as u32];
                if let Err(f) = run_cta(kernel, cfg, block, params, global, &mut scratch, &mut counters, opts)
                {
                    failed.store(true, Ordering::Relaxed);
                    let mut first = first_fault.lock().unwrap_or_else(|p| p.into_inner());
                    if first.as_ref().is_none_or(|(i, _)| c < *i) {
                        *first = Some((c, f));
                    }
                }
                (counters, Some(scratch))
            },
        )
        .map(|(c, _)| c)
        .reduce(Counters::default, |mut a, b| {
            a.add(&b);
            a
        });
    match first_fault.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, f)) => Err(LaunchError::Fault(Box::new(f))),
        None => Ok(total),
    }
}

/// Sets lane `l`'s special registers.
fn init_special(
    regs: &mut [u64],
    l: usize,
    tid: [u32; 3],
    cfg: &LaunchConfig,
    block: [u32; 3],
    warp: u32,
    nwarps: u32,
    kernel: &Kernel,
) {
    let values: [u64; 27] = [
        tid[0] as u64,
        tid[1] as u64,
        tid[2] as u64,
        cfg.block[0] as u64,
        cfg.block[1] as u64,
        cfg.block[2] as u64,
        block[0] as u64,
        block[1] as u64,
        block[2] as u64,
        cfg.grid[0] as u64,
        cfg.grid[1] as u64,
        cfg.grid[2] as u64,
        l as u64,
        warp as u64,
        nwarps as u64,
        0,
        1,
        0,
        1u64 << l,
        (((1u64 << (l + 1)) - 1) & 0xffff_ffff),
        (1u64 << l) - 1,
        (0xffff_ffffu64 << l) & 0xffff_ffff,
        (0xffff_fffeu64 << l) & 0xffff_ffff,
        0,
        0,
        cfg.dynamic_shared as u64,
        (kernel.static_shared + cfg.dynamic_shared) as u64,
    ];
    debug_assert_eq!(values.len(), SPECIAL.len());
    for (s, v) in values.into_iter().enumerate() {
        regs[s * 32 + l] = v;
    }
}

#[allow(clippy::too_many_arguments)]
/// What one host thread reuses from CTA to CTA: shared memory with its shadow, and the warps'
/// register files and local memory. Registers and local memory are not cleared between CTAs
/// (NVVM's code writes each before reading it, as a GPU's would need too); special registers
/// and all control state are set afresh.
struct Scratch {
    shared: Shared,
    warps: Vec<Warp>,
}

#[allow(clippy::too_many_arguments)]
fn run_cta(
    kernel: &Kernel,
    cfg: &LaunchConfig,
    block: [u32; 3],
    params: &[u8],
    global: &MemoryView,
    scratch: &mut Scratch,
    counters: &mut Counters,
    opts: &LaunchOptions,
) -> Result<(), LaunchFault> {
    let [bx, by, _] = cfg.block;
    let threads = cfg.block.iter().product::<u32>();
    let nwarps = threads.div_ceil(32);
    let tid_of = |t: u32| [t % bx, t / bx % by, t / (bx * by)];
    let Scratch { shared, warps } = scratch;
    let (reg_len, local_len) = (kernel.reg_slots as usize * 32, kernel.local_bytes as usize * 32);
    warps.truncate(nwarps as usize);
    while warps.len() < nwarps as usize {
        warps.push(Warp {
            index: warps.len() as u16,
            regs: vec![0; reg_len],
            groups: Vec::new(),
            valid: 0,
            exited: 0,
            carry: 0,
            local: vec![0; local_len],
            async_copies: Box::default(),
            calls: vec![Vec::new(); 32],
            alloc_hint: 0,
            sync_count: 0,
        });
    }
    for (w, warp) in warps.iter_mut().enumerate() {
        let w = w as u32;
        let n = (threads - w * 32).min(32);
        let valid = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
        warp.regs.resize(reg_len, 0);
        warp.local.resize(local_len, 0);
        for l in 0..n as usize {
            init_special(&mut warp.regs, l, tid_of(w * 32 + l as u32), cfg, block, w, nwarps, kernel);
        }
        warp.groups.clear();
        warp.groups.push(Group { pc: 0, mask: valid, wait: Wait::Run });
        warp.valid = valid;
        warp.exited = 0;
        warp.carry = 0;
        warp.async_copies.iter_mut().for_each(|a| {
            a.pending.clear();
            a.groups.clear();
        });
        warp.calls.iter_mut().for_each(Vec::clear);
        // Shadows from earlier CTAs are older than this CTA's epochs, so the count may go on.
    }
    let warps = &mut warps[..];
    let mut budget = opts.budget_per_cta;
    let locate = |w: &Warp, pc: u32, mask: u32, fault: Fault| {
        let lane = fault.lane.unwrap_or(mask.trailing_zeros().min(31));
        let inst = kernel.code.get(pc as usize);
        LaunchFault {
            kernel: kernel.name.clone(),
            block,
            thread: tid_of(w.index as u32 * 32 + lane),
            instruction: inst.map_or_else(String::new, |i| i.opcode.clone()),
            ptx_line: inst.map_or(0, |i| i.ptx_line),
            location: inst
                .and_then(|i| i.loc)
                .map(|(f, l)| (kernel.files.get(&f).cloned().unwrap_or_else(|| format!("file {f}")), l)),
            fault,
        }
    };
    counters.ctas += 1;
    loop {
        let mut all_done = true;
        for w in warps.iter_mut() {
            if w.groups.is_empty() {
                continue;
            }
            let mut env = WarpEnv {
                kernel,
                global,
                shared,
                params,
                counters,
                budget: &mut budget,
                check_written: opts.check_written,
                count_banks: opts.count_banks,
            };
            match w.run(&mut env) {
                Ok(Stop::Done) => {}
                Ok(Stop::Blocked) => all_done = false,
                Err((f, pc, mask)) => return Err(locate(w, pc, mask, f)),
            }
        }
        if all_done {
            return Ok(());
        }
        release_barrier(warps, shared).map_err(|(w, pc, mask, f)| locate(&warps[w], pc, mask, f))?;
    }
}

/// Every warp is blocked: releases the barrier all live threads wait at, or reports why none
/// can be released (a deadlock, or threads waiting at different barriers).
fn release_barrier(warps: &mut [Warp], shared: &mut Shared) -> Result<(), (usize, u32, u32, Fault)> {
    let live: u32 = warps.iter().map(|w| (w.valid & !w.exited).count_ones()).sum();
    // Barrier id -> (threads arrived, expected, pc of the first arrival).
    let mut waiting: Vec<(u32, u32, Option<u32>, u32, usize)> = Vec::new();
    for (wi, w) in warps.iter().enumerate() {
        for g in &w.groups {
            if let Wait::Barrier { id, expected } = g.wait {
                match waiting.iter_mut().find(|b| b.0 == id) {
                    Some(b) => {
                        b.1 += g.mask.count_ones();
                        if b.3 != g.pc {
                            let f = Fault::new(
                                FaultKind::BarrierDivergence,
                                format!(
                                    "threads wait at barrier {id} from different instructions (PTX pcs {} and {})",
                                    b.3, g.pc
                                ),
                            );
                            return Err((wi, g.pc, g.mask, f));
                        }
                    }
                    None => waiting.push((id, g.mask.count_ones(), expected, g.pc, wi)),
                }
            }
        }
    }
    let ready = waiting.iter().find(|&&(_, arrived, expected, _, _)| arrived >= expected.unwrap_or(live));
    let Some(&(id, ..)) = ready else {
        let (wi, g) = warps
            .iter()
            .enumerate()
            .find_map(|(wi, w)| w.groups.first().map(|g| (wi, *g)))
            .expect("a blocked warp has a group");
        let what: Vec<String> = warps
            .iter()
            .flat_map(|w| {
                w.groups.iter().map(move |g| {
                    format!("warp {} lanes {:#010x} at pc {} ({:?})", w.index, g.mask, g.pc, g.wait)
                })
            })
            .take(8)
            .collect();
        let f = Fault::new(
            FaultKind::Deadlock,
            format!("deadlock: {live} live threads, none can proceed: {}", what.join("; ")),
        );
        return Err((wi, g.pc, g.mask, f));
    };
    for w in warps.iter_mut() {
        for g in &mut w.groups {
            if matches!(g.wait, Wait::Barrier { id: i, .. } if i == id) {
                g.wait = Wait::Run;
                g.pc += 1;
            }
        }
        w.merge();
    }
    shared.epoch += 1;
    Ok(())
}
