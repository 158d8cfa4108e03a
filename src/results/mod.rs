//! What an experiment holds, read back: its runs side by side (for `report`, `collect` and
//! the end of a sweep), `runs.json` (the plan) and `summary.csv` (one row per run, best
//! first). What one run writes is [`crate::store`]'s.

mod experiment;
mod summary_csv;

pub use experiment::{
    ExperimentView, METRICS, Metric, Plan, RunRecord, read_experiment, read_plan, record_plan, write_plan,
};
pub use summary_csv::{summary_rows, write_summary_csv};
