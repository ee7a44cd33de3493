//! Runs the engine's work on a thread of its own while the calling Python thread waits with
//! the GIL released: other Python threads go on, progress is handed to a Python callable from
//! the calling thread (the only one that touches Python), and Ctrl-C is seen within 100 ms.
//!
//! Ctrl-C asks a run to stop as the command line's first SIGINT does (after the image batch or
//! training epoch in flight, its work kept, [`crate::errors::Interrupted`] raised when it has
//! stopped). A second Ctrl-C, or the first during work that has no clean stopping point
//! (`compare`, `attribute`, `report`), returns `KeyboardInterrupt` at once; that work's thread
//! finishes in the background and its result is dropped. A progress callable that raises
//! stops a run as Ctrl-C does, and its exception is raised once the run has stopped.

use crate::errors::to_py;
use pyo3::prelude::*;
use sanity_experiments::Progress;
use sanity_rundir::error::{ExperimentError, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The most worker threads (the command line's `--threads` bound): far beyond any machine's
/// cores, and each thread costs a stack.
const MAX_THREADS: usize = 1024;

/// How often the waiting thread looks for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// What the work's thread sends to the waiting one.
enum Message<T> {
    Progress(Progress),
    Done(Result<T>),
}

/// How a piece of work may be stopped.
pub enum Stop {
    /// At the first Ctrl-C, at once (the work's result is dropped).
    AtOnce,
    /// At the first Ctrl-C, this flag is set and the work stops at its next clean point.
    Cleanly(&'static AtomicBool),
}

impl Stop {
    /// A flag of its own for one run (a static per run, so that concurrent runs from several
    /// Python threads stop apart; one byte leaked per run).
    pub fn cleanly() -> Self {
        Stop::Cleanly(Box::leak(Box::new(AtomicBool::new(false))))
    }

    /// The flag a run polls, if any.
    pub fn flag(&self) -> Option<&'static AtomicBool> {
        match self {
            Stop::AtOnce => None,
            Stop::Cleanly(flag) => Some(flag),
        }
    }
}

/// Runs `work` on a thread of its own, with `threads` worker threads (a pool of its own) or
/// rayon's global pool (all cores), and returns its result once it is done. Progress goes to
/// `progress(kind, text, count)` with kind `phase` (text: the phase, count: its units),
/// `advance` (count), `note` (text: a line to show) or `status` (text).
pub fn run_detached<T: Send + 'static>(
    py: Python<'_>,
    threads: Option<usize>,
    progress: Option<&Bound<'_, PyAny>>,
    stop: Stop,
    work: impl FnOnce(&mut dyn FnMut(Progress)) -> Result<T> + Send + 'static,
) -> PyResult<T> {
    let pool = match threads {
        Some(n) if !(1..=MAX_THREADS).contains(&n) => {
            let why = format!("{n}; accepted: a whole number from 1 to {MAX_THREADS}, or None for every core");
            return Err(crate::errors::bad_input(py, "threads", why));
        }
        Some(n) => Some(rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| {
            to_py(py, ExperimentError::config("threads", format!("cannot start {n} worker threads: {e}")))
        })?),
        None => None,
    };
    let (sender, receiver) = mpsc::channel::<Message<T>>();
    std::thread::Builder::new()
        .name("sanity-engine".into())
        .spawn(move || {
            let progress_sender = sender.clone();
            let mut on_progress = |p: Progress| {
                // The waiting side may have returned (a second Ctrl-C): progress is then dropped.
                let _ = progress_sender.send(Message::Progress(p));
            };
            let result = match pool {
                Some(pool) => pool.install(|| work(&mut on_progress)),
                None => work(&mut on_progress),
            };
            let _ = sender.send(Message::Done(result));
        })
        .map_err(|e| to_py(py, ExperimentError::io(std::path::Path::new("<thread>"), e)))?;
    let mut asked_to_stop = false;
    // A progress callable that raised is called no more; its error is raised once the run
    // has stopped cleanly (its work kept), in place of the run's result.
    let mut progress = progress;
    let mut callback_error: Option<PyErr> = None;
    let mut receiver = receiver;
    let mut last_check = Instant::now();
    loop {
        // The receiver moves into the detached wait and back (it may not be shared).
        let (back, message) = py.detach(move || {
            let message = receiver.recv_timeout(SIGNAL_POLL);
            (receiver, message)
        });
        receiver = back;
        let raised = match message {
            Ok(Message::Done(result)) => {
                // A Ctrl-C that came after the run's last stopping point finds it finished: the
                // result is returned, as the command line exits 0 then.
                return match callback_error {
                    Some(err) => Err(err),
                    None => result.map_err(|e| to_py(py, e)),
                };
            }
            Ok(Message::Progress(p)) => match progress {
                Some(callback) => show(callback, p).err(),
                None => None,
            },
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let why = "the engine's thread ended without a result (it panicked; see the message above)";
                return Err(to_py(py, ExperimentError::io(std::path::Path::new("<engine>"), why)));
            }
        };
        // Signals are looked for every slice, however fast progress comes (a run's events
        // can come every few milliseconds, and no callable may be there to run Python code).
        let raised = match raised {
            Some(err) => Some(err),
            None if last_check.elapsed() >= SIGNAL_POLL => {
                last_check = Instant::now();
                py.check_signals().err()
            }
            None => None,
        };
        let Some(err) = raised else { continue };
        let Stop::Cleanly(flag) = &stop else { return Err(err) };
        if asked_to_stop {
            return Err(err); // A second Ctrl-C (or error): at once.
        }
        flag.store(true, Ordering::SeqCst);
        asked_to_stop = true;
        if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
            if let Some(callback) = progress {
                let line = "stopping after the image batch or training epoch in flight (Ctrl-C again to stop now)";
                if let Err(err) = show(callback, Progress::Note(line.into())) {
                    progress = None;
                    callback_error = Some(err);
                }
            }
        } else {
            progress = None;
            callback_error = Some(err);
        }
    }
}

/// Hands one progress event to the Python callable.
fn show(callback: &Bound<'_, PyAny>, p: Progress) -> PyResult<()> {
    match p {
        Progress::Phase { name, total } => callback.call1(("phase", name, total)),
        Progress::Advance(n) => callback.call1(("advance", "", n)),
        Progress::Note(line) => callback.call1(("note", line, 0u64)),
        Progress::Status(line) => callback.call1(("status", line, 0u64)),
    }
    .map(drop)
}
