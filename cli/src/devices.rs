//! `kiln render --device cuda:0,cuda:1,...`: one process per device, each rendering one shard of
//! the input (`--shard I/N` into `DIR/shard-I-of-N`, the same command otherwise), then the shards
//! merged into `DIR/responses.jsonl` in input order ([`kiln_pipeline::runner::merge()`]). A process
//! per device keeps each engine's memory, CUDA context and failures its own; the shard journals
//! make the whole resumable (the same command again resumes each shard and merges again).
//! SIGINT and SIGTERM are passed on to every shard, which stops as `kiln render` does.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use kiln_pipeline::runner::{self, Merged, RequestSource, Shard};

use crate::render::Args;
use crate::signals::StopOnSignals;

/// Runs one shard per device and merges them; the exit status is `kiln render`'s.
pub fn render(args: &Args) -> Result<ExitCode, String> {
    if args.shard.is_some() {
        return Err("--device with several devices shards the input itself: drop --shard".into());
    }
    if matches!(RequestSource::from_arg(&args.requests), RequestSource::Stdin) {
        return Err(
            "--device with several devices reads the requests once per device: pass a file, not -".into()
        );
    }
    let count = args.device.len();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the kiln executable: {e}"))?;
    let passed = without_device(std::env::args_os().skip(2));
    let signals = StopOnSignals::install().map_err(|e| format!("cannot handle SIGINT and SIGTERM: {e}"))?;
    let mut children: Vec<(Shard, Child)> = Vec::with_capacity(count);
    for (index, device) in args.device.iter().enumerate() {
        let shard = Shard::new(index, count)?;
        eprintln!("kiln render: shard {shard} on {device}");
        let child = Command::new(&exe)
            .arg("render")
            .args(&passed)
            .args(["--device", &device.to_string(), "--shard", &shard.to_string()])
            // Their own process group: a terminal's Ctrl-C reaches this process alone, which
            // passes it on once (a second SIGINT would make a shard exit at once).
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the shard for {device}: {e}"))?;
        children.push((shard, child));
    }
    let mut statuses = vec![None; count];
    let mut forwarded = false;
    while statuses.iter().any(Option::is_none) {
        for (i, (_, child)) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                statuses[i] = child.try_wait().map_err(|e| e.to_string())?.map(|s| s.code().unwrap_or(2));
            }
        }
        if let (Some(status), false) = (signals.exit_status(), forwarded) {
            let signal = if status == 130 { "INT" } else { "TERM" };
            for (_, child) in &children {
                let _ = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status();
            }
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let statuses: Vec<i32> = statuses.into_iter().flatten().collect();
    if let Some(status) = signals.exit_status() {
        return Ok(ExitCode::from(status));
    }
    if let Some(&stopped) = statuses.iter().find(|&&s| s == 130 || s == 143) {
        return Ok(ExitCode::from(stopped as u8));
    }
    let worst = statuses.iter().copied().max().unwrap_or(0);
    if worst >= 2 {
        eprintln!(
            "kiln render: a shard could not finish (exit status {worst}); rerun the same command to resume"
        );
        return Ok(ExitCode::from(2));
    }
    let lines =
        runner::input::read_lines(&RequestSource::from_arg(&args.requests)).map_err(|e| e.to_string())?;
    let ids = runner::ordered::input_ids(&lines);
    let dirs: Vec<_> = children.iter().map(|(shard, _)| args.out.join(shard.dir_name())).collect();
    match runner::merge(&args.out, &dirs, &ids).map_err(|e| e.to_string())? {
        Merged::Written { records, .. } => {
            println!(
                "responses: {} ({records} records from {count} devices, in input order)",
                args.out.join(runner::JOURNAL_FILE).display()
            );
            Ok(ExitCode::from(worst as u8))
        }
        Merged::Incomplete { missing, surplus } => Err(format!(
            "the shards do not answer every line once ({} missing, {} answered twice): rerun the same command",
            missing.len(),
            surplus.len()
        )),
    }
}

/// The command line without `--device X` / `--device=X` (each shard gets its own).
fn without_device(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match arg.to_str() {
            Some("--device") => skip_next = true,
            Some(text) if text.starts_with("--device=") => {}
            _ => kept.push(arg),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_flag_is_dropped_and_nothing_else() {
        let args = [
            "r.jsonl",
            "--out",
            "o",
            "--device",
            "cuda:0,cuda:1",
            "--batch-size",
            "2",
            "--device=cpu",
            "--save-images",
        ];
        let kept = without_device(args.iter().map(OsString::from));
        assert_eq!(kept, ["r.jsonl", "--out", "o", "--batch-size", "2", "--save-images"].map(OsString::from));
    }
}
