//! What the report says of the machine: CPU model, threads, load, peak memory.

/// The machine a bench ran on.
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo`), or `unknown CPU`.
    pub cpu: String,
    /// Threads available to this process.
    pub threads: usize,
    /// The 1-, 5- and 15-minute load averages at the start (`/proc/loadavg`).
    pub load: String,
}

impl Machine {
    /// Reads the machine's description now.
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| Some(l.strip_prefix("model name")?.split(':').nth(1)?.trim().to_string()))
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cpu,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load: load_average(),
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!("machine: {}, {} threads, load average {} at the start", self.cpu, self.threads, self.load)
    }
}

/// The load averages now, as `/proc/loadavg` prints them (`?` where it cannot be read).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process in GiB (NaN where unknown).
pub fn memory_gib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / (1024.0 * 1024.0))
    };
    (field("VmHWM:"), field("VmRSS:"))
}
