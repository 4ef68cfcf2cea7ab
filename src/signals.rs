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

/// What asked a run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// SIGINT (Ctrl-C) or SIGTERM.
    Interrupt,
    /// SIGUSR1: Slurm's warning before a time limit, or, for a sweep
    /// trial, the process following the sweep pruning it.
    Usr1,
    /// The process itself, saying why ([`Signals::request_stop`]).
    Asked(&'static str),
}

impl StopCause {
    /// As a run's message says it. `in_sweep`: the run is a sweep trial,
    /// which a sweep may prune with SIGUSR1; nothing prunes a run of its
    /// own.
    pub fn describe(self, in_sweep: bool) -> &'static str {
        match self {
            StopCause::Interrupt => "interrupt (Ctrl-C or SIGTERM)",
            StopCause::Usr1 if in_sweep => {
                "SIGUSR1 (a time limit approaching, or pruned by a sweep)"
            }
            StopCause::Usr1 => "SIGUSR1 (a time limit approaching)",
            StopCause::Asked(why) => why,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Finish the current unit of work, then stop.
    graceful: Arc<AtomicBool>,
    /// Stop as soon as possible.
    urgent: Arc<AtomicBool>,
    /// Why the process asked itself to stop, if it did.
    asked: Arc<std::sync::Mutex<Option<&'static str>>>,
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

    /// What asked the run to stop: the process itself first, then
    /// SIGUSR1, else SIGINT or SIGTERM.
    pub fn cause(&self) -> StopCause {
        if let Ok(asked) = self.asked.lock() {
            if let Some(why) = *asked {
                return StopCause::Asked(why);
            }
        }
        if self.urgent() {
            StopCause::Usr1
        } else {
            StopCause::Interrupt
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
        if let Ok(mut asked) = self.asked.lock() {
            asked.get_or_insert(why);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_process_own_then_usr1_then_an_interrupt() {
        let s = Signals::none();
        assert_eq!(s.cause(), StopCause::Interrupt);
        s.urgent.store(true, Ordering::Relaxed);
        assert_eq!(s.cause(), StopCause::Usr1);
        s.request_stop("pruned");
        s.request_stop("a second reason is not kept");
        assert_eq!(s.cause(), StopCause::Asked("pruned"));
        assert!(s.stop_requested());
    }

    #[test]
    fn only_a_sweep_trial_may_have_been_pruned_by_sigusr1() {
        assert_eq!(
            StopCause::Usr1.describe(true),
            "SIGUSR1 (a time limit approaching, or pruned by a sweep)"
        );
        assert_eq!(
            StopCause::Usr1.describe(false),
            "SIGUSR1 (a time limit approaching)"
        );
        assert_eq!(
            StopCause::Interrupt.describe(true),
            "interrupt (Ctrl-C or SIGTERM)"
        );
        assert_eq!(StopCause::Asked("pruned").describe(false), "pruned");
    }
}
