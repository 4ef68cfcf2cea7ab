//! Process signals as flags the loops poll.
//!
//! - First SIGINT (Ctrl-C) or SIGTERM: finish the current epoch, save, stop.
//! - Second SIGINT: exit at once (status 130).
//! - SIGUSR1 (Slurm's warning before a time limit, or a sweep pruning the
//!   trial): stop at the next batch; the last finished epoch is already
//!   checkpointed, so the run resumes there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::flag;

/// Why a run stopped on SIGUSR1, as its message says it.
pub const USR1_REASON: &str = "SIGUSR1 (a time limit approaching, or pruned by a sweep)";

/// [`USR1_REASON`] for a run outside any sweep, which nothing prunes.
pub const USR1_REASON_ALONE: &str = "SIGUSR1 (a time limit approaching)";

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
            USR1_REASON
        } else {
            "interrupt (Ctrl-C or SIGTERM)"
        }
    }

    /// Hold SIGINT and SIGTERM for a step that must not be cut in half
    /// (`sbatch`: a job the sweep does not record would run unseen). The
    /// signals only set a flag that the caller reads when the step is done.
    /// signal-hook cannot give back the default action, so after the guard
    /// is dropped these signals are ignored until handlers are installed
    /// again: use it only as a command's last step or before
    /// [`Signals::install`].
    pub fn hold() -> Held {
        let flag = Arc::new(AtomicBool::new(false));
        let ids = [SIGINT, SIGTERM]
            .into_iter()
            .filter_map(|sig| flag::register(sig, Arc::clone(&flag)).ok())
            .collect();
        Held { flag, ids }
    }

    /// Ask for a graceful stop from inside the process.
    pub fn request_stop(&self, why: &'static str) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(why);
        }
        self.graceful.store(true, Ordering::Relaxed);
    }
}

/// SIGINT and SIGTERM held while it lives; see [`Signals::hold`].
#[derive(Debug)]
pub struct Held {
    flag: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl Held {
    /// Whether SIGINT or SIGTERM arrived while held.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
