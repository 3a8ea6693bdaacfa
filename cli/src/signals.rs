//! SIGINT and SIGTERM during `kiln render`: the first asks the run to stop at the next UNet call
//! (the call in flight finishes, what completed is journaled, the summary is printed, and the
//! exit status is 128 + the signal: 130 or 143); a second one exits at once with that status.
//!
//! signal-hook's iterator runs the handling on an ordinary thread (its handler only writes to a
//! pipe), so saying what happens on standard error is safe there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The stop flag the run polls, and which signal set it.
pub struct StopOnSignals {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicI32>,
}

impl StopOnSignals {
    /// Installs the handling of SIGINT and SIGTERM for the rest of the process.
    pub fn install() -> std::io::Result<StopOnSignals> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicI32::new(0));
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let (thread_stop, thread_signal) = (Arc::clone(&stop), Arc::clone(&signal));
        std::thread::Builder::new().name("kiln-signals".into()).spawn(move || {
            for received in signals.forever() {
                if thread_stop.load(Ordering::SeqCst) {
                    eprintln!("kiln render: {}: exiting now", name(received));
                    // `_exit`: no destructor or other thread can hold the exit up.
                    signal_hook::low_level::exit(128 + received);
                }
                thread_signal.store(received, Ordering::SeqCst);
                thread_stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "kiln render: {}: stopping after the model call in flight (send it again to exit now)",
                    name(received)
                );
            }
        })?;
        Ok(StopOnSignals { stop, signal })
    }

    /// The flag for [`kiln_pipeline::runner::run_until`].
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// 128 + the signal that stopped the run (130 for SIGINT, 143 for SIGTERM); `None` if none came.
    pub fn exit_status(&self) -> Option<u8> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => u8::try_from(128 + signal).ok(),
        }
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
