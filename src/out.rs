//! Output that cannot fail a command. `println!` panics when stdout is a
//! closed pipe (`runner run FILE | head -2`), which would kill a training
//! run and leave its folder half-written. Everything runner prints goes
//! through these macros instead: when the reader has gone, the output goes
//! nowhere and the command carries on to its normal end and exit code (the
//! run folder holds every figure anyway). SIGPIPE stays ignored, as the
//! Rust runtime sets it, so a sweep whose terminal pipe closes keeps its
//! child processes.

/// `println!` that ignores a failed write.
#[macro_export]
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a failed write.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a failed write.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
