//! Ctrl-C and SIGTERM: the first asks running work to stop at the next step (runs write a
//! checkpoint and their state as `interrupted`); a second one, more than two seconds
//! later, exits at once. (A scheduler often delivers one stop twice: Slurm signals the
//! batch shell, which passes it on, and `scancel` signals every process of the job.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
static FIRST: OnceLock<Instant> = OnceLock::new();

/// How long after the first signal a second one counts as the same stop.
const SAME_STOP: Duration = Duration::from_secs(2);

/// Installs the handler (once) and returns the flag it sets.
pub fn install() -> &'static AtomicBool {
    // An error means a handler is already installed, which is the one we want.
    let _ = ctrlc::set_handler(|| {
        let first = *FIRST.get_or_init(Instant::now);
        if STOP.swap(true, Ordering::SeqCst) {
            if first.elapsed() < SAME_STOP {
                return;
            }
            say!("\ninterrupted again: exiting without waiting for running runs");
            std::process::exit(130);
        }
        say!(
            "\ninterrupted (Ctrl-C or SIGTERM): stopping; running runs will save a checkpoint (interrupt again to quit at once)"
        );
    });
    &STOP
}

/// Why the runs were stopped, for their summaries: under Slurm, whether it came near the
/// job's time limit (`scontrol show job`: RunTime against TimeLimit, within the signal's
/// grace plus Slurm's minute of slack) or not (scancel, preemption).
pub fn reason() -> String {
    let Ok(job) = std::env::var("SLURM_JOB_ID") else { return "stopped by a signal (Ctrl-C or SIGTERM)".into() };
    let shown = std::process::Command::new("scontrol").args(["show", "job", &job]).output();
    let text = shown.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let field = |name: &str| {
        text.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(String::from)
    };
    let (run, limit) = (field("RunTime").and_then(|v| seconds(&v)), field("TimeLimit").and_then(|v| seconds(&v)));
    match (run, limit) {
        (Some(run), Some(limit)) if run + 180 >= limit => {
            format!("Slurm's time limit: job {job} was asked to stop {}s before its limit", limit.saturating_sub(run))
        }
        _ => format!("stopped by Slurm (job {job} cancelled or preempted) or by hand"),
    }
}

/// Slurm's `[D-]HH:MM:SS` (or `MM:SS`) as seconds; `None` for UNLIMITED and the like.
fn seconds(v: &str) -> Option<u64> {
    let (days, rest) = match v.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, v),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let hms = parts.iter().fold(0, |acc, p| acc * 60 + p);
    Some(days * 86_400 + hms)
}
