//! Independent jobs on a few threads from one queue: each thread takes the next job when it
//! is free, so jobs of uneven cost still finish together. Used to load a bundle's models and
//! to run an ensemble's passes.
//!
//! Consumes the order jobs are taken in and a job function; produces each job's result at
//! the job's index.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `job(i)` for every `i` of `order` (a permutation of `0..order.len()`, the order the
/// jobs are taken in) on up to `threads` threads (on the caller's thread alone for one).
/// Returns the results indexed by job; `None` where a thread panicked before finishing it.
pub(crate) fn run<R: Send>(
    order: &[usize],
    threads: usize,
    job: impl Fn(usize) -> R + Sync,
) -> Vec<Option<R>> {
    let mut slots: Vec<Option<R>> = (0..order.len()).map(|_| None).collect();
    let mut keep = |(i, r): (usize, R)| {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(r);
        }
    };
    let workers = threads.max(1).min(order.len());
    if workers <= 1 {
        order.iter().map(|&i| (i, job(i))).for_each(&mut keep);
    } else {
        let next = AtomicUsize::new(0);
        let take = || {
            let mut done = Vec::new();
            while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                done.push((i, job(i)));
            }
            done
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers).map(|_| s.spawn(take)).collect();
            for h in handles {
                // a thread that panicked leaves its jobs' slots empty
                h.join().unwrap_or_default().into_iter().for_each(&mut keep);
            }
        });
    }
    slots
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_job_runs_once_and_lands_at_its_index() {
        let order = [3, 0, 4, 1, 2];
        for threads in [1, 2, 3, 8] {
            let out = super::run(&order, threads, |i| i * 10);
            assert_eq!(out, vec![Some(0), Some(10), Some(20), Some(30), Some(40)]);
        }
        assert!(super::run(&[], 2, |i| i).is_empty());
    }
}
