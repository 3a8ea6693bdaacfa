//! Profiling switches and reports: `KILN_SOFTGPU_PROFILE=1` prints one line of counters per
//! launch to standard error; `KILN_SOFTGPU_SAMPLE=N` runs only N CTAs spread evenly over each
//! grid and scales the counts to the whole grid (said in the report), so big launches can be
//! profiled in seconds. Counts, never times: the software GPU has no clock.
//!
//! Theoretical occupancy follows the CUDA occupancy rules for the device (warps per SM from the
//! register, shared-memory, thread and block limits). Registers per thread come from ptxas
//! (`KILN_PTXAS`, or `ptxas` on the path) when the module is loaded under profiling; without
//! ptxas the occupancy is reported from shared memory and threads only, and says so.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Counters, LaunchConfig};
use crate::device::DeviceSpec;

/// The profiling settings from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileSettings {
    pub print: bool,
    /// Run this many CTAs per launch (all when `None` or when the grid is smaller).
    pub sample: Option<u64>,
}

impl ProfileSettings {
    pub fn from_env() -> Self {
        ProfileSettings {
            print: std::env::var("KILN_SOFTGPU_PROFILE").is_ok_and(|v| v == "1"),
            sample: std::env::var("KILN_SOFTGPU_SAMPLE").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0),
        }
    }
}

/// `n` CTA indices spread evenly over `total` (first and last included), or `None` for all.
pub fn sample_ctas(total: u64, n: Option<u64>) -> Option<Vec<u64>> {
    let n = n?;
    if n >= total {
        return None;
    }
    if n == 1 {
        return Some(vec![0]);
    }
    Some((0..n).map(|i| i * (total - 1) / (n - 1)).collect())
}

/// Multiplies every count by `total / run` (the CTAs a sampled launch skipped).
pub fn scale(c: &Counters, run: u64, total: u64) -> Counters {
    let f = |v: u64| ((v as u128 * total as u128) / run.max(1) as u128) as u64;
    Counters {
        warp_instructions: c.warp_instructions.map(f),
        thread_instructions: f(c.thread_instructions),
        global_bytes: f(c.global_bytes),
        bank_conflicts: f(c.bank_conflicts),
        shared_wavefronts: f(c.shared_wavefronts),
        ctas: total,
    }
}

/// Theoretical occupancy of a launch on one SM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Occupancy {
    pub blocks_per_sm: u32,
    pub warps_per_sm: u32,
    /// Active warps over the SM's maximum.
    pub fraction: f64,
    /// What bounds it: "registers", "shared memory", "threads" or "blocks".
    pub limit: &'static str,
}

/// Warps per SM and blocks per SM on Ampere and Hopper.
const MAX_WARPS_PER_SM: u32 = 64;
const MAX_BLOCKS_PER_SM: u32 = 32;
/// Registers are allocated per warp in units of 256; each block reserves 1 KiB of shared memory.
const REG_UNIT: u32 = 256;
const SHARED_RESERVED: u32 = 1024;

/// The occupancy of blocks of `threads` threads using `shared` bytes of shared memory and, when
/// known, `registers` registers per thread.
pub fn occupancy(spec: &DeviceSpec, threads: u32, shared: u32, registers: Option<u32>) -> Occupancy {
    let warps = threads.div_ceil(32).max(1);
    let mut limits = vec![
        ("threads", spec.max_threads_per_multiprocessor / (warps * 32)),
        ("blocks", MAX_BLOCKS_PER_SM),
        ("shared memory", spec.shared_per_multiprocessor / (shared + SHARED_RESERVED)),
    ];
    if let Some(r) = registers {
        let per_warp = (r.max(1) * 32).div_ceil(REG_UNIT) * REG_UNIT;
        limits.push(("registers", (spec.registers_per_multiprocessor / per_warp) / warps));
    }
    let (limit, blocks) = limits.into_iter().min_by_key(|&(_, b)| b).expect("limits");
    let warps_per_sm = (blocks * warps).min(MAX_WARPS_PER_SM);
    Occupancy {
        blocks_per_sm: blocks,
        warps_per_sm,
        fraction: warps_per_sm as f64 / MAX_WARPS_PER_SM as f64,
        limit,
    }
}

/// The one-line report of a launch.
pub fn report(
    kernel: &str,
    cfg: &LaunchConfig,
    counters: &Counters,
    sampled: Option<u64>,
    occupancy: Occupancy,
    registers: Option<u32>,
) -> String {
    let c = counters;
    let warp_total = c.total_warp_instructions().max(1) as f64;
    let mma_flops = c.warp_instructions[0] as f64 * 4096.0;
    let intensity =
        if c.global_bytes > 0 { format!("{:.1}", mma_flops / c.global_bytes as f64) } else { "-".into() };
    format!(
        "softgpu profile: {kernel} grid {:?} block {:?} smem {}: {c}{}; mma share {:.1}%, \
         mma FLOP per global byte {intensity}; occupancy {:.0}% ({} warps/SM, limited by {}{})",
        cfg.grid,
        cfg.block,
        cfg.dynamic_shared,
        sampled.map(|n| format!(" [sampled {n} CTAs, counts scaled to the grid]")).unwrap_or_default(),
        100.0 * c.warp_instructions[0] as f64 / warp_total,
        occupancy.fraction * 100.0,
        occupancy.warps_per_sm,
        occupancy.limit,
        registers
            .map(|r| format!(", {r} registers"))
            .unwrap_or_else(|| ", registers unknown: no ptxas".into()),
    )
}

/// ptxas, from `KILN_PTXAS` or the path.
fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_PTXAS").map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join("ptxas"))
        .find(|p| p.is_file())
}

/// Registers per thread of each entry of `ptx`, from `ptxas -v` for `sm_<arch>`; empty when
/// ptxas is missing or fails.
pub fn ptxas_registers(ptx: &str, arch: u32) -> HashMap<String, u32> {
    let Some(ptxas) = ptxas() else { return HashMap::new() };
    let dir = std::env::temp_dir().join(format!("kiln-softgpu-ptxas-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return HashMap::new();
    }
    let input = dir.join(format!("module-{:x}.ptx", ptx.len() ^ (ptx.as_ptr() as usize)));
    if std::fs::write(&input, ptx).is_err() {
        return HashMap::new();
    }
    let out = std::process::Command::new(ptxas)
        .arg(format!("-arch=sm_{arch}"))
        .arg("-v")
        .arg("-o")
        .arg(dir.join("out.cubin"))
        .arg(&input)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let Ok(out) = out else { return HashMap::new() };
    parse_ptxas_registers(&String::from_utf8_lossy(&out.stderr))
}

/// Reads `Compiling entry function 'NAME'` … `Used N registers` pairs from ptxas's report.
pub fn parse_ptxas_registers(report: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    let mut current: Option<String> = None;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            current = rest.split('\'').next().map(str::to_owned);
        } else if let Some(rest) = line.split("Used ").nth(1)
            && let Some(n) = rest.split(' ').next().and_then(|n| n.parse().ok())
            && let Some(name) = current.take()
        {
            out.insert(name, n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_over_the_grid() {
        assert_eq!(sample_ctas(100, Some(5)), Some(vec![0, 24, 49, 74, 99]));
        assert_eq!(sample_ctas(4, Some(8)), None);
        assert_eq!(sample_ctas(10, None), None);
    }

    #[test]
    fn scaling_counts() {
        let c = Counters { thread_instructions: 10, global_bytes: 3, ctas: 2, ..Counters::default() };
        let s = scale(&c, 2, 8);
        assert_eq!((s.thread_instructions, s.global_bytes, s.ctas), (40, 12, 8));
    }

    /// The CUDA occupancy rules on sm_90: 256-thread blocks at 64 registers are register bound
    /// at 4 blocks (32 warps, 50%); at 32 registers the thread limit allows 8 (100%); 100 KiB of
    /// shared memory allows 2 blocks.
    #[test]
    fn occupancy_limits() {
        let spec = DeviceSpec::sm90(1);
        let o = occupancy(&spec, 256, 0, Some(64));
        assert_eq!((o.blocks_per_sm, o.warps_per_sm, o.limit), (4, 32, "registers"));
        let o = occupancy(&spec, 256, 0, Some(32));
        assert_eq!((o.blocks_per_sm, o.fraction), (8, 1.0));
        let o = occupancy(&spec, 128, 100 * 1024, Some(32));
        assert_eq!((o.blocks_per_sm, o.limit), (2, "shared memory"));
    }

    #[test]
    fn reads_ptxas_reports() {
        let report = "ptxas info    : Compiling entry function 'gelu_bf16' for 'sm_90'\n\
                      ptxas info    : Function properties for gelu_bf16\n    0 bytes stack frame\n\
                      ptxas info    : Used 16 registers, used 0 barriers, 368 bytes cmem[0]\n\
                      ptxas info    : Compiling entry function 'k2' for 'sm_90'\n\
                      ptxas info    : Used 250 registers, 400 bytes cmem[0]\n";
        let r = parse_ptxas_registers(report);
        assert_eq!(r.get("gelu_bf16"), Some(&16));
        assert_eq!(r.get("k2"), Some(&250));
    }
}
