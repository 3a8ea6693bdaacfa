//! Resource usage of compiled kernels as `ptxas -v` reports it: registers, static shared
//! memory, stack and spills per entry point. CI uses it to fail on spills; nothing at run time
//! depends on ptxas.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::compile::Arch;

/// What ptxas reports for one entry point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryUsage {
    /// The entry point.
    pub name: String,
    /// Registers per thread.
    pub registers: u32,
    /// Static shared memory, bytes (dynamic shared memory is not known to ptxas).
    pub smem: u32,
    /// Stack frame, bytes.
    pub stack: u32,
    /// Bytes of spill stores.
    pub spill_stores: u32,
    /// Bytes of spill loads.
    pub spill_loads: u32,
}

impl EntryUsage {
    /// Whether the entry spills registers.
    pub fn spills(&self) -> bool {
        self.spill_stores > 0 || self.spill_loads > 0
    }
}

/// Assembles `ptx` for `arch` with the `ptxas` at `ptxas` and parses its `-v` report.
///
/// Returns the report, or ptxas's output when it fails.
pub fn run(ptxas: &Path, ptx: &str, arch: Arch) -> Result<Vec<EntryUsage>, String> {
    let mut child = Command::new(ptxas)
        .args([&format!("-arch={}", arch.sm()), "-v", "-o", "/dev/null", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", ptxas.display()))?;
    // ptxas reads all of stdin before writing much, so writing first cannot deadlock on pipes.
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(ptx.as_bytes()))
        .transpose()
        .map_err(|e| format!("writing PTX to {}: {e}", ptxas.display()))?;
    let out = child.wait_with_output().map_err(|e| format!("waiting for {}: {e}", ptxas.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{} -arch={} failed ({}):\n{text}", ptxas.display(), arch.sm(), out.status));
    }
    Ok(parse(&text))
}

/// The number before `unit` in `line` (`"16 registers"` -> 16).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let head = &line[..line.find(unit)?];
    head.trim_end().rsplit(|c: char| c.is_whitespace() || c == ',').next()?.parse().ok()
}

/// Parses ptxas `-v` output: a `Compiling entry function 'NAME'` line opens an entry, and the
/// following `... stack frame, ... spill stores, ... spill loads` and `Used N registers, ...
/// M bytes smem` lines fill it.
pub fn parse(text: &str) -> Vec<EntryUsage> {
    let mut entries: Vec<EntryUsage> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            entries.push(EntryUsage { name: name.to_owned(), ..Default::default() });
            continue;
        }
        let Some(e) = entries.last_mut() else { continue };
        if line.contains("spill stores") {
            e.stack = number_before(line, "bytes stack frame").unwrap_or(0);
            e.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            e.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("registers") {
            e.registers = number_before(line, "registers").unwrap_or(0);
            e.smem = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    entries
}

/// A fixed-width table of `usage`, one line per entry.
pub fn table(arch: Arch, usage: &[EntryUsage]) -> String {
    let width = usage.iter().map(|u| u.name.len()).max().unwrap_or(5).max(5);
    let mut s = format!(
        "{:<width$}  {:>6}  {:>4}  {:>8}  {:>5}  {:>6}  {:>6}\n",
        "entry", "arch", "regs", "smem B", "stack", "spillS", "spillL"
    );
    for u in usage {
        s += &format!(
            "{:<width$}  {:>6}  {:>4}  {:>8}  {:>5}  {:>6}  {:>6}\n",
            u.name,
            arch.sm(),
            u.registers,
            u.smem,
            u.stack,
            u.spill_stores,
            u.spill_loads
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_report() {
        let text = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'a_bf16' for 'sm_90'\n\
            ptxas info    : Function properties for a_bf16\n\
            \x20   8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
            ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]\n\
            ptxas info    : Compiling entry function 'b_f16' for 'sm_90'\n\
            ptxas info    : Function properties for b_f16\n\
            \x20   0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 16 registers, used 0 barriers, 380 bytes cmem[0]\n";
        let u = parse(text);
        assert_eq!(u.len(), 2);
        assert_eq!(
            u[0],
            EntryUsage {
                name: "a_bf16".into(),
                registers: 40,
                smem: 2048,
                stack: 8,
                spill_stores: 4,
                spill_loads: 12
            }
        );
        assert!(u[0].spills() && !u[1].spills());
        assert_eq!((u[1].registers, u[1].smem), (16, 0));
    }
}
