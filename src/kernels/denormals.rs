//! Denormal floats flushed to zero in training threads, as TensorFlow does on CPU: a run
//! whose network collapsed (every ReLU dead, weights decaying towards zero) otherwise
//! spends most of its time in the CPU's slow path for denormal arithmetic (seen: 5 to 6
//! times slower per step than a healthy run). `[train] flush_denormals = false` keeps IEEE
//! behaviour.

/// Sets flush-to-zero and denormals-are-zero (FTZ, DAZ) for the calling thread, or clears
/// them; `false` where the CPU has no such switch (only x86-64's MXCSR is handled).
pub fn set(flush: bool) -> bool {
    const FTZ: u32 = 1 << 15;
    const DAZ: u32 = 1 << 6;
    match environment() {
        Some(csr) => set_environment(if flush { csr | FTZ | DAZ } else { csr & !(FTZ | DAZ) }),
        None => false,
    }
}

/// The calling thread's floating-point environment (x86-64's MXCSR: rounding, FTZ/DAZ),
/// for threads that compute on its behalf ([`set_environment`]); `None` on other CPUs.
pub fn environment() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr reads the SSE control register of this thread; SSE is part of
        // x86-64.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack)) };
        Some(csr)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Gives the calling thread the environment [`environment`] read (on x86-64; `false`
/// elsewhere).
pub fn set_environment(csr: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: ldmxcsr writes the SSE control register of this thread only, with a
        // value stmxcsr read (reserved bits as they were).
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly)) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = csr;
        false
    }
}

/// [`set`] on the calling thread until the value returned is dropped (the environment
/// before then restored): for computing on the main thread as a run's threads do, e.g. a
/// schedule's rates, which a denormal input would make differ.
pub fn scoped(flush: bool) -> Restore {
    let before = environment();
    set(flush);
    Restore(before)
}

/// Restores the floating-point environment [`scoped`] changed, when dropped.
pub struct Restore(Option<u32>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(csr) = self.0 {
            set_environment(csr);
        }
    }
}

/// [`set`] on the calling thread and on every thread of the rayon pool it runs in (the
/// run's threads, which do its matrix products).
pub fn set_for_run(flush: bool) {
    set(flush);
    if rayon::current_thread_index().is_some() {
        rayon::broadcast(|_| set(flush));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn flushing_turns_denormal_results_into_zero_and_back() {
        // In a thread of its own: the setting belongs to the thread.
        std::thread::spawn(|| {
            let tiny = black_box(f32::MIN_POSITIVE);
            if !set(true) {
                return; // no switch on this CPU
            }
            assert_eq!(black_box(tiny) * black_box(0.25), 0.0, "FTZ: a denormal result is 0");
            assert_eq!(black_box(f32::from_bits(1)) + black_box(0.0), 0.0, "DAZ: a denormal input is 0");
            set(false);
            assert!(black_box(tiny) * black_box(0.25) > 0.0, "IEEE again");
        })
        .join()
        .unwrap();
    }
}
