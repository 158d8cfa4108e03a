//! `expression`: a rate given as a formula, parsed and checked when the config loads.

use super::{Context, Kind, ParamSource, Rule, Schedule};
use crate::suggest::did_you_mean;
use evalexpr::error::EvalexprResultValue;
use evalexpr::{DefaultNumericTypes, EvalexprError, Node, Operator, Value};

/// Variables a formula may use.
pub const VARIABLES: &[&str] = &["step", "epoch", "total_steps", "lr0"];
/// Functions a formula may call (`log` is the natural logarithm; `pow(x, y)` or `x ^ y`).
pub const FUNCTIONS: &[&str] = &["exp", "log", "cos", "sin", "sqrt", "pow", "min", "max", "floor", "ceil", "abs"];

/// A formula in `step`, `epoch`, `total_steps` and `lr0`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Expression {
    pub formula: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
}

impl Kind for Expression {
    const KIND: &'static str = "expression";
    const SUMMARY: &'static str =
        "a formula in step, epoch, total_steps and lr0, e.g. \"lr0 * 0.5 ^ floor(epoch / 10)\"";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let formula = p.text(
            "formula",
            "uses step, epoch, total_steps, lr0; exp log cos sin sqrt pow min max floor ceil abs; + - * / ^ %",
        )?;
        let learning_rate = p.optional_number(
            "learning_rate",
            Rule::NonNegative,
            "required when the formula uses lr0",
            "the value of lr0",
        )?;
        let node = compile(&formula).map_err(|message| p.invalid("formula", message))?;
        let uses_lr0 = node.iter_variable_identifiers().any(|v| v == "lr0");
        p.check(!uses_lr0 || learning_rate.is_some(), "learning_rate", || {
            "is required because the formula uses lr0 (add learning_rate = ...)".to_string()
        })?;
        // The first rate is known now; later ones are checked where the run's length is.
        let ctx = Context { total_steps: 1, steps_per_epoch: 1, seed: 0 };
        let first = Compiled { node, lr0: learning_rate.unwrap_or(0.0), ctx }.lr(0);
        p.check(first.is_finite(), "formula", || {
            format!("gives {first} at step 0; a learning rate must be a finite number")
        })?;
        Ok(Expression { formula, learning_rate })
    }

    fn build(&self, ctx: &Context) -> Box<dyn Schedule> {
        let node = compile(&self.formula).expect("formula was checked when the config was read");
        Box::new(Compiled { node, lr0: self.learning_rate.unwrap_or(0.0), ctx: *ctx })
    }
}

/// Parses `formula`, refuses unknown names, and makes every literal a float so that
/// `1/2` means 0.5 rather than integer division.
fn compile(formula: &str) -> Result<Node, String> {
    check_size(formula)?;
    let mut node =
        evalexpr::build_operator_tree::<DefaultNumericTypes>(formula).map_err(|e| format!("does not parse: {e}"))?;
    if let Some(name) = node.iter_variable_identifiers().find(|v| !VARIABLES.contains(v)) {
        let hint =
            did_you_mean(name, VARIABLES.iter().copied()).map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
        return Err(format!("names unknown variable `{name}`{hint}; accepted: {}", VARIABLES.join(", ")));
    }
    if let Some(name) = node.iter_function_identifiers().find(|f| !FUNCTIONS.contains(f)) {
        let hint =
            did_you_mean(name, FUNCTIONS.iter().copied()).map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
        return Err(format!("calls unknown function `{name}`{hint}; accepted: {}", FUNCTIONS.join(", ")));
    }
    if node.iter_write_variable_identifiers().next().is_some() {
        return Err("must be a single formula, not an assignment".to_string());
    }
    floats_only(&mut node);
    // Evaluate once at step 0 so type errors (a string, a boolean) are found now.
    match node.eval_with_context(&Variables::at(0, 1.0, &Context { total_steps: 1, steps_per_epoch: 1, seed: 0 })) {
        Ok(Value::Float(_)) | Ok(Value::Int(_)) => Ok(node),
        Ok(other) => Err(format!("must give a number, but gives {other}")),
        Err(e) => Err(format!("cannot be evaluated: {e}")),
    }
}

/// The longest formula accepted, in characters.
pub const MAX_FORMULA_LEN: usize = 1000;
/// The deepest nesting of parentheses accepted, and the longest run of operators in a row
/// (`- - - x`): deeper formulas would only exhaust the parser's stack or time.
pub const MAX_FORMULA_DEPTH: usize = 32;

/// Refuses formulas too long or too deeply nested to be a schedule, before parsing them.
fn check_size(formula: &str) -> Result<(), String> {
    let len = formula.chars().count();
    if len > MAX_FORMULA_LEN {
        return Err(format!("is {len} characters long; a formula may have at most {MAX_FORMULA_LEN}"));
    }
    let (mut depth, mut deepest, mut ops, mut most_ops) = (0usize, 0usize, 0usize, 0usize);
    for c in formula.chars() {
        match c {
            '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if matches!(c, '+' | '-' | '*' | '/' | '^' | '%' | '!') {
            ops += 1;
            most_ops = most_ops.max(ops);
        } else if !c.is_whitespace() {
            ops = 0;
        }
    }
    if deepest > MAX_FORMULA_DEPTH {
        return Err(format!("nests parentheses {deepest} deep; a formula may nest at most {MAX_FORMULA_DEPTH}"));
    }
    if most_ops > MAX_FORMULA_DEPTH {
        return Err(format!("has {most_ops} operators in a row; a formula may have at most {MAX_FORMULA_DEPTH}"));
    }
    Ok(())
}

fn floats_only(node: &mut Node) {
    if let Operator::Const { value: Value::Int(i) } = node.operator() {
        let f = *i as f64;
        *node.operator_mut() = Operator::Const { value: Value::Float(f) };
    }
    for child in node.children_mut() {
        floats_only(child);
    }
}

/// A parsed formula and the values of its variables.
struct Compiled {
    node: Node,
    lr0: f64,
    ctx: Context,
}

impl Schedule for Compiled {
    fn lr(&self, step: u64) -> f64 {
        match self.node.eval_with_context(&Variables::at(step, self.lr0, &self.ctx)) {
            Ok(Value::Float(x)) => x,
            Ok(Value::Int(i)) => i as f64,
            _ => f64::NAN,
        }
    }
}

/// The values of [`VARIABLES`] at one step (no allocation), and the functions by name.
struct Variables([Value; 4]);

impl Variables {
    fn at(step: u64, lr0: f64, ctx: &Context) -> Self {
        let epoch = (step / ctx.steps_per_epoch.max(1)) as f64;
        Variables([
            Value::Float(step as f64),
            Value::Float(epoch),
            Value::Float(ctx.total_steps as f64),
            Value::Float(lr0),
        ])
    }
}

impl evalexpr::Context for Variables {
    type NumericTypes = DefaultNumericTypes;

    fn get_value(&self, identifier: &str) -> Option<&Value> {
        VARIABLES.iter().position(|v| *v == identifier).map(|i| &self.0[i])
    }

    fn call_function(&self, identifier: &str, argument: &Value) -> EvalexprResultValue {
        call(identifier, argument)
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        true
    }

    fn set_builtin_functions_disabled(&mut self, _: bool) -> evalexpr::EvalexprResult<(), DefaultNumericTypes> {
        Ok(())
    }
}

/// Calls one of [`FUNCTIONS`].
fn call(name: &str, argument: &Value) -> EvalexprResultValue {
    let one = |f: fn(f64) -> f64| argument.as_number().map(|x| Value::Float(f(x)));
    let two = |f: fn(f64, f64) -> f64| {
        let args = argument.as_fixed_len_tuple(2)?;
        Ok(Value::Float(f(args[0].as_number()?, args[1].as_number()?)))
    };
    match name {
        "exp" => one(f64::exp),
        "log" => one(f64::ln),
        "cos" => one(f64::cos),
        "sin" => one(f64::sin),
        "sqrt" => one(f64::sqrt),
        "floor" => one(f64::floor),
        "ceil" => one(f64::ceil),
        "abs" => one(f64::abs),
        "pow" => two(f64::powf),
        "min" => two(f64::min),
        "max" => two(f64::max),
        _ => Err(EvalexprError::FunctionIdentifierNotFound(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::assert_sequence;

    fn build(formula: &str) -> Box<dyn Schedule> {
        Expression { formula: formula.into(), learning_rate: Some(0.1) }.build(&Context {
            total_steps: 1000,
            steps_per_epoch: 10,
            seed: 0,
        })
    }

    #[test]
    fn evaluates_variables_and_functions_in_float() {
        assert_sequence(&*build("lr0 * 0.5 ^ floor(epoch / 2)"), &[(0, 0.1), (19, 0.1), (20, 0.05), (45, 0.025)]);
        // 1/2 is 0.5, not integer division.
        assert_sequence(&*build("1/2 * lr0"), &[(0, 0.05)]);
        assert_sequence(&*build("max(lr0 * (1 - step / total_steps), 0.01)"), &[(0, 0.1), (500, 0.05), (950, 0.01)]);
        assert_sequence(&*build("pow(min(step, 3), 2) + sqrt(4) + log(exp(1)) + ceil(0.2) + abs(-1)"), &[(5, 14.0)]);
        assert_sequence(&*build("lr0 * cos(0) * (1 + sin(0))"), &[(7, 0.1)]);
    }

    #[test]
    fn refuses_non_numbers_and_assignments() {
        assert!(compile("\"text\"").unwrap_err().contains("must give a number"));
        assert!(compile("step = 3").is_err());
        assert!(compile("step > 3").unwrap_err().contains("must give a number"));
    }
}
