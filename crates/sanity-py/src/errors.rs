//! The engine's errors as Python exceptions, one class per exit code of the command line:
//! `BadInput` (exit 2: a config, argument or file that is wrong, and what is accepted),
//! `SanityError` (exit 1: the engine failed), `Interrupted` (exit 130: Ctrl-C stopped a run,
//! its finished work kept). The message is the one the command line prints after `error: `.

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use sanity_rundir::error::ExperimentError;

pyo3::create_exception!(
    _native,
    SanityError,
    PyRuntimeError,
    "The engine failed (the command line's exit code 1): an I/O error, a diverged training, a numeric failure."
);
pyo3::create_exception!(
    _native,
    BadInput,
    PyValueError,
    "A bad input (the command line's exit code 2): the message names the argument, file or config key, and what is accepted."
);
pyo3::create_exception!(
    _native,
    Interrupted,
    PyKeyboardInterrupt,
    "Ctrl-C stopped a run after the image batch or training epoch in flight; the finished work is kept, and the same call with resume=True goes on."
);

/// A Python exception of the class that `err`'s exit code stands for, with the command line's
/// message (the error and its causes, `: `-separated) and `exit_code` set on it.
pub fn to_py(py: Python<'_>, err: ExperimentError) -> PyErr {
    let code = err.exit_code();
    let message = format!("{:#}", anyhow::Error::from(err));
    let exception = match code {
        130 => Interrupted::new_err(format!("{message} (from Python: the same call with resume=True)")),
        2 => BadInput::new_err(message),
        _ => SanityError::new_err(message),
    };
    // Setting an attribute on a fresh exception instance cannot fail in practice; if it did,
    // the exception would still carry its class and message.
    let _ = exception.value(py).setattr("exit_code", code);
    exception
}

/// A bad argument found before the engine runs (a JSON value TOML cannot hold, say).
pub fn bad_input(py: Python<'_>, what: &str, message: impl std::fmt::Display) -> PyErr {
    to_py(py, ExperimentError::config(what, message.to_string()))
}
