//! What the machine was doing: CPU model, threads each engine uses, load average, and the candle
//! build. Printed at the start and the end, since a neighbour's load skews a CPU benchmark.

/// The CPU's model name (from /proc/cpuinfo) and its logical CPU count.
pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string());
    let logical = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {logical} logical CPUs")
}

/// The 1, 5 and 15 minute load averages (from /proc/loadavg).
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.len() == 3 { fields.join(" ") } else { "unknown".to_string() }
}

/// The threads each engine computes on. kiln runs on rayon's global pool (RAYON_NUM_THREADS, else
/// the logical CPUs); candle sizes its pool from RAYON_NUM_THREADS, else the physical cores.
pub fn threads() -> String {
    let logical = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kiln = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(logical);
    format!(
        "kiln {kiln} (rayon), candle {} (candle_core::utils::get_num_threads)",
        candle_core::utils::get_num_threads()
    )
}

/// candle's version (read from this crate's Cargo.lock), whether it was built with MKL, and the
/// CPU features it detected.
pub fn candle_build() -> String {
    let lock = include_str!("../Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("?", |v| v.trim_matches('"'));
    use candle_core::utils::{has_mkl, with_avx, with_f16c};
    format!(
        "candle-core {version}: mkl {}, avx2 {}, f16c {} (matmul and conv through the gemm crate)",
        has_mkl(),
        with_avx(),
        with_f16c()
    )
}

/// One line: load average and threads, stamped `when`.
pub fn snapshot(when: &str) -> String {
    format!("{when}: load average {} | threads: {}", loadavg(), threads())
}
