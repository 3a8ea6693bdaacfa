//! The printed report: time per call, achieved GFLOP/s against the FMA peak, and where the
//! time went by family of ops.

use kiln_runtime::DType;
use kiln_runtime::cpu::peak::FmaPeak;

use super::machine::{Machine, load_average};
use super::subject::Subject;
use super::timing::{Timing, secs};

/// Prints the report of one bench.
/// `peaks` are the f32 FMA peak and, where the CPU has AMX, the bf16 tile peak.
pub fn print(
    t: &Timing,
    subject: &Subject,
    peaks: (FmaPeak, Option<f64>),
    peak_rss_gib: f64,
    machine: &Machine,
) {
    let (peak, tile_peak) = peaks;
    let (min, max) = t.seconds.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    let median = t.median();
    let flops = t.flops_per_call();
    println!();
    println!("{}", subject.describe());
    println!("time per call: median {median:.3} s (min {min:.3}, max {max:.3}, {} calls)", t.seconds.len());
    if flops > 0.0 {
        let rate = flops / median;
        let of_peak = match tile_peak {
            _ if !subject.device.is_cpu() => String::new(),
            Some(tiles) if subject.dtype == DType::BF16 => format!(
                " = {:.0}% of the f32 FMA peak, {:.0}% of the bf16 tile peak",
                100.0 * rate / peak.flops,
                100.0 * rate / tiles
            ),
            _ => format!(" = {:.0}% of the f32 FMA peak", 100.0 * rate / peak.flops),
        };
        println!(
            "work per call: {flops:.0} FLOP = {:.3} TFLOP (counted by the ops); achieved {:.1} GFLOP/s{of_peak}",
            flops / 1e12,
            rate / 1e9
        );
    }
    let total: f64 = t.seconds.iter().sum();
    let in_ops: f64 = t.families.iter().map(|f| secs(f.time)).sum();
    println!();
    println!("{:<12} {:>10} {:>7} {:>9} {:>10}", "op family", "s/call", "share", "ops/call", "GFLOP/s");
    let calls = t.seconds.len() as f64;
    let mut rows: Vec<_> = t.families.iter().filter(|f| f.calls > 0).collect();
    rows.sort_by_key(|f| std::cmp::Reverse(f.time));
    for f in rows {
        let s = secs(f.time);
        let rate = if f.flops > 0 { format!("{:.1}", f.flops as f64 / s / 1e9) } else { "-".into() };
        println!(
            "{:<12} {:>10.3} {:>6.1}% {:>9.0} {:>10}",
            f.family.name(),
            s / calls,
            100.0 * s / total,
            f.calls as f64 / calls,
            rate
        );
    }
    let other = (total - in_ops).max(0.0);
    println!(
        "{:<12} {:>10.3} {:>6.1}% {:>9} {:>10}",
        "outside ops",
        other / calls,
        100.0 * other / total,
        "-",
        "-"
    );
    if !subject.device.is_cpu() {
        println!("(on a GPU an op returns once queued: the family times are launch times, not GPU time)");
    }
    println!();
    println!(
        "peak resident memory (VmHWM): {peak_rss_gib:.2} GiB; load average {} at the start, {} at the end ({})",
        machine.load,
        load_average(),
        machine.cpu
    );
}
