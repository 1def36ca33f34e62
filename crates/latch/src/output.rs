//! What commands print: text for people, JSON (`-o json`) for scripts. Results go to standard
//! output, errors to standard error.

#![allow(clippy::print_stdout)]

use std::fmt;

use latch_store::StoreError;
use serde_json::{json, Value};

use crate::cli::Format;
use crate::exit;

/// A command's failure, with its exit code.
#[derive(Debug)]
pub struct CliError {
    code: &'static str,
    message: String,
    exit: u8,
}

impl CliError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>, exit: u8) -> Self {
        CliError {
            code,
            message: message.into(),
            exit,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new("InvalidArgument", message, 2)
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.exit
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let (code, exit) = match &e {
            StoreError::NotFound(_) | StoreError::FaceNotFound(_) => ("NotFound", exit::NOT_FOUND),
            StoreError::AlreadyExists(_) | StoreError::FaceExists(_) => {
                ("AlreadyExists", exit::ALREADY_EXISTS)
            }
            StoreError::Refused(_) => ("Denied", exit::DENIED),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::Internal(_) => {
                ("StoreError", exit::FAILURE)
            }
        };
        CliError::new(code, e.to_string(), exit)
    }
}

impl From<latch_audit::AuditError> for CliError {
    fn from(e: latch_audit::AuditError) -> Self {
        StoreError::from(e).into()
    }
}

/// Prints a result: its JSON form, or its text form.
pub(crate) fn print(format: Format, value: &Value, text: impl FnOnce() -> String) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Format::Text => println!("{}", text()),
    }
}

/// Prints a failure to standard error.
pub(crate) fn error(format: Format, e: &CliError) {
    match format {
        Format::Json => eprintln!(
            "{}",
            json!({ "error": { "code": e.code, "message": e.message } })
        ),
        Format::Text => eprintln!("latch: {e}"),
    }
}

/// A line for standard output that is not a command result (the server's address).
pub(crate) fn line(text: &str) {
    println!("{text}");
}
