//! Polling politely: rounds at a fixed interval that ride out transient
//! controller trouble.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use super::client::Slurm;
use super::jobs::SubmittedJob;
use super::state::TaskState;
use super::SlurmError;

/// What [`Poller::run`] reports after each round.
#[derive(Debug)]
pub enum PollEvent<'a> {
    States(&'a BTreeMap<usize, TaskState>),
    /// This round failed; polling goes on at the next interval.
    TransientError {
        error: &'a SlurmError,
        consecutive: u32,
    },
}

/// Polls at a fixed interval, riding out transient controller trouble.
#[derive(Debug, Clone)]
pub struct Poller {
    /// Between rounds (default 5 s; `squeue` costs the controller an RPC).
    pub interval: Duration,
    /// Failed rounds in a row before giving up (default 24: two minutes at 5 s).
    pub max_consecutive_errors: u32,
}

impl Default for Poller {
    fn default() -> Self {
        Poller {
            interval: Duration::from_secs(5),
            max_consecutive_errors: 24,
        }
    }
}

impl Poller {
    /// Poll `jobs` until no task is pending or running, or until `on_event`
    /// breaks. Returns the last states. A non-transient error, or more than
    /// `max_consecutive_errors` failed rounds in a row, ends polling with an error.
    pub fn run(
        &self,
        slurm: &Slurm,
        jobs: &[SubmittedJob],
        mut on_event: impl FnMut(PollEvent<'_>) -> ControlFlow<()>,
    ) -> Result<BTreeMap<usize, TaskState>, SlurmError> {
        let mut consecutive = 0;
        loop {
            match slurm.poll(jobs) {
                Ok(states) => {
                    consecutive = 0;
                    if on_event(PollEvent::States(&states)).is_break()
                        || states.values().all(|s| !s.is_active())
                    {
                        return Ok(states);
                    }
                }
                Err(error) if error.is_transient() => {
                    consecutive += 1;
                    if consecutive > self.max_consecutive_errors {
                        return Err(SlurmError::GaveUp {
                            count: consecutive,
                            last: Box::new(error),
                        });
                    }
                    let flow = on_event(PollEvent::TransientError {
                        error: &error,
                        consecutive,
                    });
                    if flow.is_break() {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
            std::thread::sleep(self.interval);
        }
    }
}
