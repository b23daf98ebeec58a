//! A live progress line: rewritten in place (carriage return) on a terminal, one line per
//! update otherwise, so that a log or a pipe gets readable lines instead of one long one.

use std::io::{IsTerminal, Write};

/// Where a progress line goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Stdout,
    Stderr,
}

impl Progress {
    /// Shows `text` as the current progress.
    pub fn update(self, text: &str) {
        match self {
            Progress::Stdout => show(&mut std::io::stdout().lock(), text),
            Progress::Stderr => show(&mut std::io::stderr().lock(), text),
        }
    }

    /// Ends the progress: on a terminal, the line rewritten in place is closed with a newline.
    pub fn finish(self) {
        match self {
            Progress::Stdout => close(&mut std::io::stdout().lock()),
            Progress::Stderr => close(&mut std::io::stderr().lock()),
        }
    }
}

fn show<W: Write + IsTerminal>(out: &mut W, text: &str) {
    // Output is best effort: a closed pipe must not stop the run.
    let _ = if out.is_terminal() {
        write!(out, "\r{text}   ").and_then(|()| out.flush())
    } else {
        writeln!(out, "{text}")
    };
}

fn close<W: Write + IsTerminal>(out: &mut W) {
    if out.is_terminal() {
        let _ = writeln!(out);
    }
}
