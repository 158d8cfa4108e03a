//! A submission's job arrays. Slurm refuses array task ids at or above the cluster's
//! `MaxArraySize` (1001 by default), so a sweep's runs are cut into arrays whose task ids
//! stay below it: an array's task `T` trains run `offset + T` of `runs.json`, the offsets
//! being multiples of the limit.

use std::fmt::Write as _;

/// Slurm's default `MaxArraySize`: task ids 0 to 1000.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// One job array of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayPlan {
    /// Added to a task id to give its run's index.
    pub offset: usize,
    /// The runs' indices in runs.json, ascending.
    pub runs: Vec<usize>,
}

impl ArrayPlan {
    /// `--array`'s value: the task ids as ranges, then `%max_parallel`.
    pub fn spec(&self, max_parallel: Option<u64>) -> String {
        let tasks: Vec<usize> = self.runs.iter().map(|r| r - self.offset).collect();
        array_spec(&tasks, max_parallel)
    }
}

/// Cuts `runs` (indices into runs.json) into arrays whose task ids stay below
/// `max_array_size`: run `i` is task `i % max_array_size` of the array whose offset is
/// the rest, so a sweep smaller than the limit is one array whose task ids are the run
/// indices, and a resubmission puts each run back under the same task id.
pub fn split(runs: &[usize], max_array_size: usize) -> Vec<ArrayPlan> {
    let mut sorted = runs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let limit = max_array_size.max(1);
    let mut arrays: Vec<ArrayPlan> = Vec::new();
    for run in sorted {
        let offset = run - run % limit;
        match arrays.last_mut() {
            Some(a) if a.offset == offset => a.runs.push(run),
            _ => arrays.push(ArrayPlan { offset, runs: vec![run] }),
        }
    }
    arrays
}

/// `--array`'s value for task ids: ranges (`0-4,7,9-10`), then `%max_parallel`.
pub fn array_spec(tasks: &[usize], max_parallel: Option<u64>) -> String {
    let mut sorted = tasks.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(m) = max_parallel {
        let _ = write!(spec, "%{m}");
    }
    spec
}

/// `spec` as a message shows it: whole up to 80 characters, else its first ranges and how
/// many there are in all (jobs.json and the dry run hold the whole spec).
pub fn shown_spec(spec: &str) -> String {
    if spec.len() <= 80 {
        return spec.to_string();
    }
    let ranges = spec.split('%').next().unwrap_or("").split(',').count();
    let cut = spec[..60].rfind(',').unwrap_or(60);
    format!("{},... ({ranges} ranges in all)", &spec[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_array_specs_are_shortened_in_messages() {
        let every_other: Vec<usize> = (0..1000).step_by(2).collect();
        let spec = array_spec(&every_other, Some(4));
        assert!(spec.len() > 1500, "{}", spec.len());
        let shown = shown_spec(&spec);
        assert!(shown.len() < 90, "{shown}");
        assert!(shown.starts_with("0,2,4,") && shown.ends_with(",... (500 ranges in all)"), "{shown}");
        assert_eq!(shown_spec("0-9%2"), "0-9%2");
    }

    #[test]
    fn array_spec_compresses_runs_of_indices() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[7, 0, 1, 4, 5, 9], None), "0-1,4-5,7,9");
        assert_eq!(array_spec(&[3], Some(1)), "3%1");
    }

    #[test]
    fn runs_are_cut_into_arrays_whose_task_ids_stay_below_the_limit() {
        // Under the limit: one array, task ids are the run indices.
        let one = split(&[0, 1, 2, 5], 1001);
        assert_eq!(one, vec![ArrayPlan { offset: 0, runs: vec![0, 1, 2, 5] }]);
        assert_eq!(one[0].spec(Some(4)), "0-2,5%4");

        // 1,010 runs with Slurm's default: task ids 0-1000, then 0-8 for runs 1001-1009.
        let all: Vec<usize> = (0..1010).collect();
        let arrays = split(&all, DEFAULT_MAX_ARRAY_SIZE);
        assert_eq!(arrays.len(), 2);
        assert_eq!((arrays[0].offset, arrays[0].spec(None).as_str()), (0, "0-1000"));
        assert_eq!((arrays[1].offset, arrays[1].spec(None).as_str()), (1001, "0-8"));

        // 100,000 runs: 100 arrays, each spec one range.
        let many: Vec<usize> = (0..100_000).collect();
        let arrays = split(&many, DEFAULT_MAX_ARRAY_SIZE);
        assert_eq!(arrays.len(), 100);
        assert!(arrays.iter().all(|a| a.spec(Some(50)).len() <= 10));
        assert_eq!(arrays.iter().map(|a| a.runs.len()).sum::<usize>(), 100_000);

        // A resubmission of scattered runs: each keeps its task id; one run alone is
        // one array, as before.
        let arrays = split(&[3, 70, 64, 200, 66, 3], 64);
        assert_eq!(
            arrays,
            vec![
                ArrayPlan { offset: 0, runs: vec![3] },
                ArrayPlan { offset: 64, runs: vec![64, 66, 70] },
                ArrayPlan { offset: 192, runs: vec![200] },
            ]
        );
        assert_eq!(arrays[1].spec(None), "0,2,6");
        assert_eq!(split(&[3], 1001)[0].spec(Some(2)), "3%2");
        for a in split(&(0..500).step_by(7).collect::<Vec<_>>(), 64) {
            assert!(a.runs.iter().all(|r| r - a.offset < 64), "{a:?}");
        }
        // A limit of 1 (only task id 0): one array per run.
        assert_eq!(split(&[4, 5], 1).len(), 2);
    }
}
