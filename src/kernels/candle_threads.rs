//! candle's own worker threads, kept from competing with a run's threads.
//!
//! candle 0.11 runs large elementwise operations on a pool of its own (`candle-bp-*`
//! threads, one fewer than `RAYON_NUM_THREADS`) whose workers spin 25,000 times waiting for
//! the next operation before they sleep. Between two of candle's operations a run's own
//! threads are computing, so a spinning worker takes a core from them: measured on the
//! 2-thread MLP of `cargo bench --bench throughput`, 3 epochs took 2.73 s with the default
//! and 1.86 s with workers that sleep after 200 spins (2-core Intel Xeon).

/// The spin count runner gives candle's workers unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set.
pub const SPIN_LIMIT: &str = "200";

/// Sets `CANDLE_BARRIER_POOL_SPIN_LIMIT` for this process unless the user set it. Call it
/// first thing in `main`, before any thread exists (candle reads it when its pool starts).
pub fn limit_spinning() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: called before any other thread of the process exists.
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", SPIN_LIMIT) };
    }
}
