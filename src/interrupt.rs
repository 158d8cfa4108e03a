//! Ctrl-C and SIGTERM: the first asks running work to stop at the next step (runs write
//! their state as `interrupted`); a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once) and returns the flag it sets.
pub fn install() -> &'static AtomicBool {
    // An error means a handler is already installed, which is the one we want.
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without waiting for running runs");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted (Ctrl-C or SIGTERM): stopping; running runs will save their state (interrupt again to quit at once)"
        );
    });
    &STOP
}
