//! Progress on the terminal: a bar per epoch with live loss, accuracy and
//! images per second when stdout is a terminal; one plain line per epoch
//! otherwise (logs, CI, sweep children).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::logging::csv::EpochRow;

pub struct Progress {
    interactive: bool,
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    /// When the bar last showed new numbers.
    refreshed: Option<Instant>,
}

/// How often the bar asks for fresh numbers (each ask may wait for the GPU).
const REFRESH: Duration = Duration::from_millis(250);

impl Progress {
    pub fn new() -> Progress {
        Progress {
            interactive: std::io::stdout().is_terminal()
                && std::env::var_os("RUNNER_PLAIN").is_none(),
            bar: None,
            started: None,
            refreshed: None,
        }
    }

    /// Whether the bar would show new numbers now: only on a terminal, at
    /// most every quarter second.
    pub fn wants_refresh(&self) -> bool {
        self.bar.is_some() && self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH)
    }

    /// The first step is about to run on a GPU: say that kernels are being
    /// compiled and tuned (kept in `cache`), and keep the bar moving.
    pub fn warmup_start(&mut self, cache: &str) {
        let line =
            format!("Compiling and tuning GPU kernels for the first step (kernel cache: {cache})");
        match &self.bar {
            Some(bar) => {
                bar.set_message("compiling and tuning GPU kernels...");
                bar.enable_steady_tick(Duration::from_millis(200));
                bar.println(line);
            }
            None => crate::outln!("{line}"),
        }
    }

    /// The first step has finished after `seconds`.
    pub fn warmup_end(&mut self, seconds: f64) {
        if let Some(bar) = &self.bar {
            bar.disable_steady_tick();
        }
        self.note(&format!("First step: {seconds:.1} s"));
    }

    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, batches: Option<usize>) {
        self.started = Some(Instant::now());
        if !self.interactive {
            return;
        }
        let bar = match batches {
            Some(n) => ProgressBar::new(n as u64),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(
            "Epoch {prefix} [{bar:28.cyan/blue}] {pos}/{len} {msg} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        self.bar = Some(bar);
    }

    pub fn batch(&mut self, done: usize, loss: f64, accuracy: f64, images: usize) {
        if let Some(bar) = &self.bar {
            self.refreshed = Some(Instant::now());
            let secs = self
                .started
                .map(|s| s.elapsed().as_secs_f64())
                .unwrap_or(0.0)
                .max(1e-9);
            bar.set_position(done as u64);
            bar.set_message(format!(
                "loss {loss:.4} acc {accuracy:.4} {:.0} img/s",
                images as f64 / secs
            ));
        }
    }

    /// The Keras-like summary line of a finished epoch.
    pub fn end_epoch(&mut self, epochs: usize, row: &EpochRow) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut line = format!(
            "Epoch {}/{} - {:.1}s - loss: {:.4} - accuracy: {:.4}",
            row.epoch + 1,
            epochs,
            row.epoch_seconds,
            row.train_loss,
            row.train_accuracy
        );
        if let (Some(l), Some(a)) = (row.val_loss, row.val_accuracy) {
            line.push_str(&format!(" - val_loss: {l:.4} - val_accuracy: {a:.4}"));
        }
        line.push_str(&format!(
            " - lr: {:.3e} - {:.0} img/s",
            row.lr, row.images_per_second
        ));
        crate::outln!("{line}");
    }

    pub fn note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => crate::outln!("{message}"),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
