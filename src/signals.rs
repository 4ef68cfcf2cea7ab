//! Process signals as flags the loops poll.
//!
//! - First SIGINT (Ctrl-C) or SIGTERM: finish the current epoch, save, stop.
//! - Second SIGINT: exit at once (status 130).
//! - SIGUSR1 (Slurm's warning before a time limit): stop at the next batch;
//!   the last finished epoch is already checkpointed, so the run resumes there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::flag;

#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Finish the current unit of work, then stop.
    graceful: Arc<AtomicBool>,
    /// Stop as soon as possible.
    urgent: Arc<AtomicBool>,
    /// Which signal asked first, for the message.
    reason: Arc<std::sync::Mutex<Option<&'static str>>>,
}

impl Signals {
    /// Install the handlers. Failing to install them is not fatal: the run
    /// just cannot be stopped gracefully.
    pub fn install() -> Signals {
        let s = Signals::default();
        // The second Ctrl-C exits immediately: registered before the flag so
        // it sees the flag already set.
        let _ = flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&s.graceful));
        let _ = flag::register(SIGINT, Arc::clone(&s.graceful));
        let _ = flag::register(SIGTERM, Arc::clone(&s.graceful));
        let _ = flag::register(SIGUSR1, Arc::clone(&s.urgent));
        s
    }

    /// Flags that no signal sets (tests, library use).
    pub fn none() -> Signals {
        Signals::default()
    }

    pub fn stop_requested(&self) -> bool {
        self.graceful.load(Ordering::Relaxed) || self.urgent.load(Ordering::Relaxed)
    }

    pub fn urgent(&self) -> bool {
        self.urgent.load(Ordering::Relaxed)
    }

    pub fn reason(&self) -> &'static str {
        if let Ok(r) = self.reason.lock() {
            if let Some(r) = *r {
                return r;
            }
        }
        if self.urgent() {
            "SIGUSR1 (time limit approaching)"
        } else {
            "interrupt (Ctrl-C or SIGTERM)"
        }
    }

    /// Ask for a graceful stop from inside the process.
    pub fn request_stop(&self, why: &'static str) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(why);
        }
        self.graceful.store(true, Ordering::Relaxed);
    }
}
