//! The threads of a training step's parallel regions, kept awake between them.
//!
//! A step of the fused dense network enters two parallel regions (the products, then the
//! optimizer's update) a few microseconds apart, about 1,500 times a second. Through rayon,
//! the second thread went back to sleep after each region and was woken by the next one:
//! `perf stat` counted 7,941 context switches in 6 epochs of the 2-thread MLP (2.8 a
//! step), and the training thread spent about 8% of its time in the kernel waking it.
//! OpenMP, which PyTorch uses, keeps its threads spinning between regions for the same
//! reason. A [`broadcast`] here runs on the calling thread and on helper threads that belong
//! to it; a helper spins for the next region, then yields its core to others, and sleeps
//! only after [`IDLE`] without work (an evaluation, the end of the run).
//!
//! The team has as many members as the current rayon pool has threads (the run's
//! `threads`), so it replaces the pool's threads in these regions and never adds to the
//! work running at once. Helpers compute with the caller's floating-point environment
//! (flushed denormals stay flushed). A broadcast made from inside a broadcast goes to
//! rayon instead.

use super::denormals;
use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper without work stays awake (spinning, then yielding its core).
pub const IDLE: Duration = Duration::from_millis(2);

/// Spins before a waiting thread starts yielding its core.
const SPINS: u32 = 1 << 12;

/// The region's work, its lifetime erased: valid until every helper reported done.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per region; a helper runs the job when it sees a new value.
    generation: AtomicU64,
    /// The current region's job and the caller's floating-point environment, written by the
    /// caller only while no helper reads it (before the bump, after all reported done).
    job: UnsafeCell<Option<(Job, Option<u32>)>>,
    /// Helpers done with the current region.
    done: AtomicUsize,
    /// Per helper: asleep (or about to be), so the next region must wake it.
    sleeping: Vec<AtomicBool>,
    shutdown: AtomicBool,
    /// A helper's panic, raised again on the calling thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is written by the owning thread only while no helper reads it, as the
// generation/done protocol above orders (Release/Acquire on both counters).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

thread_local! {
    /// The calling thread's team (made at its first broadcast).
    static TEAM: RefCell<Option<Team>> = const { RefCell::new(None) };
    /// Set while the thread runs a region's work (helpers: always).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f(i)` for every member `i` of the team at once, `f(0)` on the calling thread, and
/// returns when all have returned. The team has `rayon::current_num_threads()` members;
/// with one, `f(0)` simply runs. A panic in any member is raised again here.
pub fn broadcast(f: impl Fn(usize) + Sync) {
    let size = rayon::current_num_threads();
    if size <= 1 {
        return f(0);
    }
    if INSIDE.with(Cell::get) {
        // Nested: the team is busy with the outer region.
        rayon::broadcast(|ctx| f(ctx.index()));
        return;
    }
    TEAM.with(|team| {
        let mut team = team.borrow_mut();
        if team.as_ref().is_none_or(|t| t.helpers.len() + 1 != size) {
            *team = Some(Team::new(size - 1));
        }
        team.as_ref().expect("made above").run(&f);
    });
}

impl Team {
    fn new(helpers: usize) -> Team {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            sleeping: (0..helpers).map(|_| AtomicBool::new(false)).collect(),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let helpers = (0..helpers)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("runner-team-{}", i + 1))
                    .spawn(move || helper(&shared, i))
                    .expect("a helper thread starts")
            })
            .collect();
        Team { shared, helpers }
    }

    fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        // SAFETY: the job's lifetime is erased; `Wait` below keeps this frame (and `f`)
        // alive until every helper is done with it, also when `f(0)` panics.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        // SAFETY: every helper is done with the previous region (see `Wait`).
        unsafe { *s.job.get() = Some((job, denormals::environment())) };
        s.done.store(0, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        for (i, asleep) in s.sleeping.iter().enumerate() {
            if asleep.load(Ordering::SeqCst) {
                self.helpers[i].thread().unpark();
            }
        }
        struct Wait<'a>(&'a Shared);
        impl Drop for Wait<'_> {
            fn drop(&mut self) {
                let mut spins = 0u32;
                while self.0.done.load(Ordering::Acquire) < self.0.sleeping.len() {
                    spins += 1;
                    if spins < SPINS {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        let wait = Wait(s);
        INSIDE.with(|inside| inside.set(true));
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        INSIDE.with(|inside| inside.set(false));
        drop(wait);
        let theirs = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = theirs {
            resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for h in &self.helpers {
            h.thread().unpark();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Helper `i` (member `i + 1`): waits for each region, runs its share, reports done.
fn helper(s: &Shared, i: usize) {
    INSIDE.with(|inside| inside.set(true));
    let mut seen = 0u64;
    loop {
        let (mut spins, mut idle_since) = (0u32, None::<Instant>);
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let now = s.generation.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                break;
            }
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < IDLE {
                std::thread::yield_now();
                continue;
            }
            // Asleep until the next region (or the team's end) wakes it: the flag is set
            // before the generation is read again, and the caller bumps the generation
            // before it reads the flag, so one of the two sees the other (SeqCst).
            s.sleeping[i].store(true, Ordering::SeqCst);
            if s.generation.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
                std::thread::park();
            }
            s.sleeping[i].store(false, Ordering::SeqCst);
            (spins, idle_since) = (0, None);
        }
        // SAFETY: the caller wrote the job before the bump seen above and keeps it alive
        // until this helper reports done.
        let (job, environment) = unsafe { (*s.job.get()).expect("a region has a job") };
        if let Some(csr) = environment {
            denormals::set_environment(csr);
        }
        // SAFETY: as above.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(i + 1) }));
        if let Err(p) = result {
            *s.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    #[test]
    fn every_member_runs_once_per_region_and_the_caller_is_member_zero() {
        pool(3).install(|| {
            let caller = std::thread::current().id();
            for _ in 0..200 {
                let runs: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
                let zero_here = AtomicBool::new(false);
                broadcast(|i| {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    if i == 0 {
                        zero_here.store(std::thread::current().id() == caller, Ordering::Relaxed);
                    }
                });
                assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
                assert!(zero_here.load(Ordering::Relaxed));
            }
        });
    }

    #[test]
    fn members_run_at_once_and_see_each_others_writes_afterwards() {
        pool(2).install(|| {
            let mut values = vec![0u64; 2];
            let ptr = values.as_mut_ptr() as usize;
            // A rendezvous inside the region: only possible if both members run at once.
            let arrived = AtomicUsize::new(0);
            broadcast(|i| {
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < 2 {
                    std::hint::spin_loop();
                }
                // SAFETY: each member writes its own element.
                unsafe { *(ptr as *mut u64).add(i) = 10 + i as u64 };
            });
            assert_eq!(values, [10, 11]);
        });
    }

    #[test]
    fn sleeping_helpers_wake_for_the_next_region() {
        pool(2).install(|| {
            let count = AtomicUsize::new(0);
            broadcast(|_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            std::thread::sleep(IDLE * 5);
            broadcast(|_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(count.load(Ordering::Relaxed), 4);
        });
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_and_the_team_goes_on() {
        pool(2).install(|| {
            let caught = catch_unwind(AssertUnwindSafe(|| broadcast(|i| assert_ne!(i, 1, "member one fails"))));
            let message = caught.expect_err("the panic is raised again");
            let text = message.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
            assert!(text.contains("member one fails"), "{text}");
            let count = AtomicUsize::new(0);
            broadcast(|_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(count.load(Ordering::Relaxed), 2);
        });
    }

    #[test]
    fn nested_broadcasts_and_one_thread_run_everything() {
        pool(2).install(|| {
            // The inner regions go to rayon (the pool's threads, or on a helper the global
            // pool's): each outer member's inner region runs on every thread of its pool.
            let inner: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
            broadcast(|i| {
                let expected = rayon::current_num_threads();
                broadcast(|_| {
                    inner[i].fetch_add(1, Ordering::Relaxed);
                });
                assert_eq!(inner[i].load(Ordering::Relaxed), expected);
            });
            assert_eq!(inner[0].load(Ordering::Relaxed), 2, "the caller's inner region ran on the pool's 2 threads");
        });
        pool(1).install(|| {
            let count = AtomicUsize::new(0);
            broadcast(|i| {
                assert_eq!(i, 0);
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(count.load(Ordering::Relaxed), 1);
        });
    }

    #[test]
    fn helpers_compute_with_the_callers_floating_point_environment() {
        pool(2).install(|| {
            for flush in [true, false] {
                if !denormals::set(flush) {
                    return; // no switch on this CPU
                }
                let results = Mutex::new(Vec::new());
                broadcast(|_| {
                    let tiny = std::hint::black_box(f32::MIN_POSITIVE);
                    results.lock().unwrap().push(std::hint::black_box(tiny) * std::hint::black_box(0.25));
                });
                let results = results.into_inner().unwrap();
                assert!(results.iter().all(|&r| (r == 0.0) == flush), "flush {flush}: {results:?}");
            }
        });
    }
}
