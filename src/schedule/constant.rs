//! `constant`: the same rate at every step.

use super::{Context, Kind, ParamSource, Rule, Schedule};

/// A fixed rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Constant {
    pub learning_rate: f64,
}

impl Kind for Constant {
    const KIND: &'static str = "constant";
    const SUMMARY: &'static str = "the same rate at every step";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(Constant { learning_rate: p.number("learning_rate", None, Rule::NonNegative, "the rate")? })
    }

    fn build(&self, _: &Context) -> Box<dyn Schedule> {
        Box::new(self.clone())
    }
}

impl Schedule for Constant {
    fn lr(&self, _step: u64) -> f64 {
        self.learning_rate
    }
}
