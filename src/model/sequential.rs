//! `kind = "sequential"`: a network written as a list of layers, as Keras users write one
//! (`[[model.layers]]` tables: conv2d, batch_norm, layer_norm, activations, max_pool,
//! avg_pool, global_avg_pool, flatten, dense, dropout, and residual blocks of layers).
//! Shapes are computed when the config is checked: a layer that does not fit its input
//! names its place in the file and the shapes on both sides. The last layer is a dense
//! layer to the data's outputs.
//!
//! A list that is one of the stack's shapes (convolutions with "same" padding, each with
//! the same activation and perhaps 2x2 max-pooling, then dense layers with that activation
//! and perhaps one dropout rate: what the cnn and mlp kinds build) is built as that stack,
//! so it trains with runner's CPU kernels, to the same numbers as the built-in kind. Any
//! other list runs through plain candle ops and autograd on any device. Parameters are
//! named as a PyTorch module holding an `nn.Sequential` called `layers` names them
//! (`layers.0.weight`, `layers.3.running_mean`; a residual block's own list `layers.5.layers.0.weight`).

use super::layers::BatchNorm2d;
use super::network::{Kernels, Mode, Named, Network};
use super::spec::{ACTIVATIONS, too_many};
use super::stack::{Layout, Stack};
use super::{Activation, DataShape, Kind, dropout, uniform};
use crate::params::{ParamSource, Rule};
use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

/// `kind = "sequential"`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SequentialSpec {
    pub layers: Vec<LayerSpec>,
}

/// Where a layer was written (`file:line:column`), for messages; not part of the model.
#[derive(Debug, Clone, Default)]
pub struct Place(pub Option<String>);

impl PartialEq for Place {
    fn eq(&self, _: &Place) -> bool {
        true
    }
}

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Kernel / 2 zeros each side: the size divided by the stride, for odd kernels.
    Same,
    /// None.
    Valid,
    /// This many zeros on each side.
    Pixels(u64),
}

/// One layer.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Conv2d {
        filters: u64,
        kernel: u64,
        stride: u64,
        padding: Padding,
        activation: Option<Activation>,
        at: Place,
    },
    BatchNorm {
        at: Place,
    },
    LayerNorm {
        at: Place,
    },
    /// An activation as a layer of its own (`type = "relu"`, ...).
    Activation {
        function: Activation,
        at: Place,
    },
    MaxPool {
        size: u64,
        at: Place,
    },
    AvgPool {
        size: u64,
        at: Place,
    },
    GlobalAvgPool {
        at: Place,
    },
    Flatten {
        at: Place,
    },
    Dense {
        /// `None`: the data's outputs (the last layer only).
        units: Option<u64>,
        /// What it expects to read, checked (PyTorch's `in_features`).
        inputs: Option<u64>,
        activation: Option<Activation>,
        at: Place,
    },
    Dropout {
        rate: f64,
        at: Place,
    },
    Residual {
        layers: Vec<LayerSpec>,
        at: Place,
    },
}

/// The resolved config's `[[model.layers]]` table: `type`, then the layer's keys.
impl serde::Serialize for LayerSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.word())?;
        match self {
            LayerSpec::Conv2d { filters, kernel, stride, padding, activation, .. } => {
                m.serialize_entry("filters", filters)?;
                m.serialize_entry("kernel", kernel)?;
                m.serialize_entry("stride", stride)?;
                match padding {
                    Padding::Pixels(n) => m.serialize_entry("padding", &n.to_string())?,
                    Padding::Same => m.serialize_entry("padding", "same")?,
                    Padding::Valid => m.serialize_entry("padding", "valid")?,
                }
                if let Some(a) = activation {
                    m.serialize_entry("activation", a)?;
                }
            }
            LayerSpec::MaxPool { size, .. } | LayerSpec::AvgPool { size, .. } => m.serialize_entry("size", size)?,
            LayerSpec::Dense { units, inputs, activation, .. } => {
                if let Some(u) = units {
                    m.serialize_entry("units", u)?;
                }
                if let Some(i) = inputs {
                    m.serialize_entry("inputs", i)?;
                }
                if let Some(a) = activation {
                    m.serialize_entry("activation", a)?;
                }
            }
            LayerSpec::Dropout { rate, .. } => m.serialize_entry("rate", rate)?,
            LayerSpec::Residual { layers, .. } => m.serialize_entry("layers", layers)?,
            _ => {}
        }
        m.end()
    }
}

/// Every layer `type`.
pub const LAYERS: &[&str] = &[
    "conv2d",
    "batch_norm",
    "layer_norm",
    "relu",
    "gelu",
    "tanh",
    "sigmoid",
    "leaky_relu",
    "silu",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "flatten",
    "dense",
    "dropout",
    "residual",
];

fn read_layers<P: ParamSource>(p: &mut P, depth: usize) -> Result<Vec<LayerSpec>, P::Error> {
    p.tables(
        "layers",
        "layer table",
        "the network's layers in order, each a table with its type: conv2d, batch_norm, layer_norm, relu (or another activation), max_pool, avg_pool, global_avg_pool, flatten, dense, dropout, residual",
        &mut |t: &mut P, _, _| read_layer(t, depth),
    )
}

/// A conv2d's or dense layer's own `activation`.
fn read_activation<P: ParamSource>(p: &mut P) -> Result<Option<Activation>, P::Error> {
    match p.optional_text("activation", "none", "an activation applied after the layer (relu, gelu, tanh, ...)")? {
        None => Ok(None),
        Some(w) if ACTIVATIONS.contains(&w.as_str()) => Ok(Some(Activation::from_word(&w))),
        Some(w) => Err(p.invalid(
            "activation",
            format!("is \"{w}\", which is no activation; accepted: {}", ACTIVATIONS.join(", ")),
        )),
    }
}

fn read_layer<P: ParamSource>(p: &mut P, depth: usize) -> Result<LayerSpec, P::Error> {
    let at = Place(p.here());
    let kind = p.choice("type", LAYERS, None, "what the layer is")?;
    Ok(match kind {
        "conv2d" => {
            let filters = p.steps("filters", None, 1, "output channels")?;
            let kernel = p.steps("kernel", Some(3), 1, "kernel size (square)")?;
            let stride = p.steps("stride", Some(1), 1, "step between windows")?;
            let padding = match p.optional_text(
                "padding",
                "\"same\"",
                "\"same\" (kernel / 2 zeros each side), \"valid\" (none) or a number of zeros",
            )? {
                None => Padding::Same,
                Some(w) if w == "same" => Padding::Same,
                Some(w) if w == "valid" => Padding::Valid,
                Some(w) => match w.parse::<u64>() {
                    Ok(n) => Padding::Pixels(n),
                    Err(_) => {
                        return Err(p.invalid(
                            "padding",
                            format!("is \"{w}\"; write \"same\", \"valid\" or a number of zeros (padding = 1)"),
                        ));
                    }
                },
            };
            if padding == Padding::Same && kernel % 2 == 0 {
                return Err(p.invalid(
                    "padding",
                    format!("\"same\" needs an odd kernel (it pads kernel / 2 on each side); kernel is {kernel}: write padding as a number"),
                ));
            }
            LayerSpec::Conv2d { filters, kernel, stride, padding, activation: read_activation(p)?, at }
        }
        "batch_norm" => LayerSpec::BatchNorm { at },
        "layer_norm" => LayerSpec::LayerNorm { at },
        "max_pool" | "avg_pool" => {
            let size = p.steps("size", Some(2), 1, "window size and stride (non-overlapping windows)")?;
            if kind == "max_pool" { LayerSpec::MaxPool { size, at } } else { LayerSpec::AvgPool { size, at } }
        }
        "global_avg_pool" => LayerSpec::GlobalAvgPool { at },
        "flatten" => LayerSpec::Flatten { at },
        "dense" => LayerSpec::Dense {
            units: p.optional_steps("units", 1, "the data's outputs (the last layer only)", "outputs of the layer")?,
            inputs: p.optional_steps(
                "inputs",
                1,
                "not checked",
                "the inputs it expects, checked against the layer before",
            )?,
            activation: read_activation(p)?,
            at,
        },
        "dropout" => {
            let rate = p.number("rate", None, Rule::UnitInterval, "fraction of activations zeroed in training")?;
            p.check(rate < 1.0, "rate", || "must be below 1 (1 drops everything)".to_string())?;
            LayerSpec::Dropout { rate, at }
        }
        "residual" => {
            if depth >= 8 {
                return Err(p.invalid("layers", "residual blocks nest at most 8 deep".into()));
            }
            LayerSpec::Residual { layers: read_layers(p, depth + 1)?, at }
        }
        word => LayerSpec::Activation { function: Activation::from_word(word), at },
    })
}

impl LayerSpec {
    /// The `type` word.
    pub fn word(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::BatchNorm { .. } => "batch_norm",
            LayerSpec::LayerNorm { .. } => "layer_norm",
            LayerSpec::Activation { function, .. } => ACTIVATIONS[*function as usize],
            LayerSpec::MaxPool { .. } => "max_pool",
            LayerSpec::AvgPool { .. } => "avg_pool",
            LayerSpec::GlobalAvgPool { .. } => "global_avg_pool",
            LayerSpec::Flatten { .. } => "flatten",
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Residual { .. } => "residual",
        }
    }

    fn at(&self) -> &Place {
        match self {
            LayerSpec::Conv2d { at, .. }
            | LayerSpec::BatchNorm { at }
            | LayerSpec::LayerNorm { at }
            | LayerSpec::Activation { at, .. }
            | LayerSpec::MaxPool { at, .. }
            | LayerSpec::AvgPool { at, .. }
            | LayerSpec::GlobalAvgPool { at }
            | LayerSpec::Flatten { at }
            | LayerSpec::Dense { at, .. }
            | LayerSpec::Dropout { at, .. }
            | LayerSpec::Residual { at, .. } => at,
        }
    }
}

/// What flows between layers: features, or a volume of channels x height x width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Features(usize),
    Volume(usize, usize, usize),
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Features(n) => write!(f, "{n} features"),
            Shape::Volume(c, h, w) => write!(f, "a {c}x{h}x{w} volume"),
        }
    }
}

impl Shape {
    /// `32x7x7`, `64`: as the layer table shows it.
    pub fn short(&self) -> String {
        match self {
            Shape::Features(n) => n.to_string(),
            Shape::Volume(c, h, w) => format!("{c}x{h}x{w}"),
        }
    }
}

/// One row of the layer table: its number (`4`, `5.2` inside a residual block), type,
/// output and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub number: String,
    pub layer: String,
    pub output: Shape,
    pub parameters: u128,
}

impl SequentialSpec {
    /// The input shape for `data`: a volume for image data unless the list starts with a
    /// dense layer (which reads the flattened pixels, as the mlp kind does).
    fn input(&self, data: DataShape) -> Shape {
        let first = self.layers.iter().find(|l| !matches!(l, LayerSpec::Activation { .. } | LayerSpec::Dropout { .. }));
        match (data.image, first) {
            (Some((c, h, w)), Some(l)) if !matches!(l, LayerSpec::Dense { .. } | LayerSpec::LayerNorm { .. }) => {
                Shape::Volume(c, h, w)
            }
            _ => Shape::Features(data.features),
        }
    }

    /// Every layer's output shape and parameters for `data`, or what does not fit.
    pub fn table(&self, data: DataShape) -> Result<Vec<Row>, String> {
        let mut rows = Vec::new();
        let Some(last) = self.layers.last() else { return Err("the network has no layers".into()) };
        let LayerSpec::Dense { units, at, .. } = last else {
            return Err(format!(
                "the last layer ({}{}) is no dense layer; a sequential network ends with a dense layer to the data's {} \
                 outputs (units may be left out there)",
                last.word(),
                place(last.at()),
                data.outputs
            ));
        };
        if let Some(u) = units.filter(|&u| u as usize != data.outputs) {
            return Err(format!(
                "the last layer (dense{}) has {u} units, and the data have {} output{}: leave units out, or write {}",
                place(at),
                data.outputs,
                if data.outputs == 1 { "" } else { "s" },
                data.outputs
            ));
        }
        shapes(&self.layers, self.input(data), "", Some(data.outputs), &mut rows)?;
        Ok(rows)
    }
}

/// `, file:line:column` where the layer has a place.
fn place(at: &Place) -> String {
    at.0.as_ref().map_or(String::new(), |p| format!(", {p}"))
}

/// Appends the rows of `layers` reading `input` (numbered after `prefix`); `outputs`: the
/// data's, for a last dense layer without units. Returns the output shape.
fn shapes(
    layers: &[LayerSpec],
    input: Shape,
    prefix: &str,
    outputs: Option<usize>,
    rows: &mut Vec<Row>,
) -> Result<Shape, String> {
    let mut shape = input;
    let mut from = String::from("the input");
    for (i, layer) in layers.iter().enumerate() {
        let number = format!("{prefix}{i}");
        let name = match &layer.at().0 {
            Some(p) => format!("layer {number} ({}, {p})", layer.word()),
            None => format!("layer {number} ({})", layer.word()),
        };
        let volume = |what: &str| -> Result<(usize, usize, usize), String> {
            match shape {
                Shape::Volume(c, h, w) => Ok((c, h, w)),
                Shape::Features(n) => Err(format!(
                    "{name} {what} a volume (channels x height x width), and gets {n} features from {from}; it goes \
                     before the flatten (the data must be images)"
                )),
            }
        };
        let mut parameters: u128 = 0;
        let out = match layer {
            LayerSpec::Conv2d { filters, kernel, stride, padding, .. } => {
                let (c, h, w) = volume("convolves")?;
                let (k, s, p) = (*kernel as usize, *stride as usize, pad(*padding, *kernel) as usize);
                if h + 2 * p < k || w + 2 * p < k {
                    return Err(format!(
                        "{name} has a {k}x{k} kernel, larger than the {}x{} it gets from {from} with padding {p}",
                        h, w
                    ));
                }
                let f = *filters as usize;
                parameters = (f * c * k * k + f) as u128;
                Shape::Volume(f, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
            }
            LayerSpec::BatchNorm { .. } => {
                parameters = 2 * match shape {
                    Shape::Volume(c, _, _) => c,
                    Shape::Features(n) => n,
                } as u128;
                shape
            }
            LayerSpec::LayerNorm { .. } => match shape {
                Shape::Features(n) => {
                    parameters = 2 * n as u128;
                    shape
                }
                Shape::Volume(..) => {
                    return Err(format!(
                        "{name} normalises features, and gets {shape} from {from}: put it after a flatten, or use batch_norm"
                    ));
                }
            },
            LayerSpec::Activation { .. } | LayerSpec::Dropout { .. } => shape,
            LayerSpec::MaxPool { size, .. } | LayerSpec::AvgPool { size, .. } => {
                let (c, h, w) = volume("pools")?;
                let s = *size as usize;
                if h < s || w < s {
                    return Err(format!("{name} pools {s}x{s} windows, and gets only {h}x{w} from {from}"));
                }
                Shape::Volume(c, h / s, w / s)
            }
            LayerSpec::GlobalAvgPool { .. } => Shape::Features(volume("averages")?.0),
            LayerSpec::Flatten { .. } => match shape {
                Shape::Volume(c, h, w) => Shape::Features(c * h * w),
                f => f,
            },
            LayerSpec::Dense { units, inputs, .. } => {
                let n = match shape {
                    Shape::Features(n) => n,
                    Shape::Volume(..) => {
                        return Err(format!(
                            "{name} reads features, and gets {shape} from {from}: put a flatten (or global_avg_pool) before it"
                        ));
                    }
                };
                if let Some(expected) = inputs.filter(|&e| e as usize != n) {
                    return Err(format!("{name} expects {expected} inputs, gets {n} from {from}"));
                }
                let last = prefix.is_empty() && i + 1 == layers.len();
                let units = match (units, last) {
                    (Some(u), _) => *u as usize,
                    (None, true) => outputs.unwrap_or(1),
                    (None, false) => return Err(format!("{name} needs units (only the last layer takes the data's)")),
                };
                parameters = (n * units + units) as u128;
                Shape::Features(units)
            }
            LayerSpec::Residual { layers, .. } => {
                if layers.is_empty() {
                    return Err(format!("{name} holds no layers"));
                }
                // Its row before its layers' (their parameters are theirs: it has none).
                rows.push(Row { number: number.clone(), layer: "residual".into(), output: shape, parameters: 0 });
                let end = shapes(layers, shape, &format!("{number}."), None, rows)?;
                if end != shape {
                    return Err(format!(
                        "{name} ends in {end}, and its input is {shape}: a residual block adds its input to its output, \
                         so its layers must keep the shape"
                    ));
                }
                shape = end;
                from = format!("layer {number} (residual)");
                continue;
            }
        };
        from = match layer {
            LayerSpec::Flatten { .. } => format!("layer {number} (flatten) of {shape}"),
            _ => format!("layer {number} ({})", layer.word()),
        };
        rows.push(Row { number, layer: layer.word().to_string(), output: out, parameters });
        shape = out;
    }
    Ok(shape)
}

/// The zeros a convolution pads each side with.
fn pad(padding: Padding, kernel: u64) -> u64 {
    match padding {
        Padding::Pixels(p) => p,
        Padding::Valid => 0,
        Padding::Same => kernel / 2,
    }
}

impl Kind for SequentialSpec {
    const KIND: &'static str = "sequential";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        Ok(SequentialSpec { layers: read_layers(p, 0)? })
    }

    fn check(&self, data: DataShape) -> Result<u128, String> {
        let rows = self.table(data)?;
        too_many(rows.iter().map(|r| r.parameters).sum(), "use fewer or smaller layers")
    }

    fn build(
        &self,
        data: DataShape,
        rng: &mut ChaCha8Rng,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Box<dyn Network>> {
        if let Some((channels, kernel, pool, hidden, activation, rate, names)) = self.as_stack(data) {
            let layout = Layout::new(channels.as_deref(), kernel, pool, &hidden, activation, rate);
            let image = if channels.is_some() { data.image } else { None };
            let stack = Stack::new(layout, data.features, data.outputs, image, rng, kernels, device)?;
            return Ok(Box::new(stack.named_as(names)));
        }
        let input = self.input(data);
        let layers = build_layers(&self.layers, input, data.outputs, rng, device)?;
        Ok(Box::new(Sequential { layers, input, kernels }))
    }
}

/// What [`SequentialSpec::as_stack`] finds: convolutions' channels (none: dense only),
/// kernel, pooling, hidden sizes, activation, dropout, and the parameters' names.
type StackShape = (Option<Vec<u64>>, u64, bool, Vec<u64>, Activation, f64, Vec<String>);

impl SequentialSpec {
    /// The list as the stack the cnn or mlp kind builds, where it is one: convolutions of
    /// one odd kernel with "same" padding and stride 1, each followed by the activation
    /// (a layer, or the conv's own) and all or none by a 2x2 max-pool, a flatten, then
    /// dense layers each followed by the same activation and all or none by one dropout
    /// rate, and the output layer.
    fn as_stack(&self, data: DataShape) -> Option<StackShape> {
        let layers = &self.layers;
        let mut i = 0;
        let mut activation: Option<Activation> = None;
        let same = |a: Activation, activation: &mut Option<Activation>| -> bool { *activation.get_or_insert(a) == a };
        // The activation after layer `i` (its own, or the next layer), and where the next starts.
        let after = |i: usize, own: Option<Activation>| -> Option<(Activation, usize)> {
            match (own, layers.get(i + 1)) {
                (Some(a), _) => Some((a, i + 1)),
                (None, Some(LayerSpec::Activation { function, .. })) => Some((*function, i + 2)),
                _ => None,
            }
        };
        let mut names = Vec::new();
        let (mut channels, mut kernel, mut pool): (Vec<u64>, Option<u64>, Option<bool>) = (Vec::new(), None, None);
        while let Some(LayerSpec::Conv2d { filters, kernel: k, stride: 1, padding, activation: own, .. }) =
            layers.get(i)
        {
            if pad(*padding, *k) != k / 2 || k % 2 == 0 || *kernel.get_or_insert(*k) != *k {
                return None;
            }
            names.extend([format!("layers.{i}.weight"), format!("layers.{i}.bias")]);
            channels.push(*filters);
            let (a, next) = after(i, *own)?;
            if !same(a, &mut activation) {
                return None;
            }
            i = next;
            let pooled = matches!(layers.get(i), Some(LayerSpec::MaxPool { size: 2, .. }));
            if *pool.get_or_insert(pooled) != pooled {
                return None;
            }
            i += usize::from(pooled);
        }
        if !channels.is_empty() {
            data.image?;
            if !matches!(layers.get(i), Some(LayerSpec::Flatten { .. })) {
                return None;
            }
            i += 1;
        } else if matches!(layers.get(i), Some(LayerSpec::Flatten { .. })) {
            i += 1;
        }
        let (mut hidden, mut rate): (Vec<u64>, Option<f64>) = (Vec::new(), None);
        while i + 1 < layers.len() {
            let LayerSpec::Dense { units: Some(u), activation: own, .. } = &layers[i] else { return None };
            names.extend([format!("layers.{i}.weight"), format!("layers.{i}.bias")]);
            hidden.push(*u);
            let (a, next) = after(i, *own)?;
            if !same(a, &mut activation) {
                return None;
            }
            i = next;
            let r = match layers.get(i) {
                Some(LayerSpec::Dropout { rate, .. }) if i + 1 < layers.len() => {
                    i += 1;
                    *rate
                }
                _ => 0.0,
            };
            if *rate.get_or_insert(r) != r {
                return None;
            }
        }
        let Some(LayerSpec::Dense { activation: None, .. }) = layers.get(i) else { return None };
        names.extend([format!("layers.{i}.weight"), format!("layers.{i}.bias")]);
        let convs = (!channels.is_empty()).then_some(channels);
        Some((
            convs,
            kernel.unwrap_or(3),
            pool.unwrap_or(false),
            hidden,
            activation.unwrap_or(Activation::Relu),
            rate.unwrap_or(0.0),
            names,
        ))
    }
}

/// A built layer.
enum Built {
    Conv { w: Var, b: Var, stride: usize, pad: usize, activation: Option<Activation> },
    BatchNorm { bn: BatchNorm2d },
    LayerNorm { gamma: Var, beta: Var },
    Activation(Activation),
    MaxPool(usize),
    AvgPool(usize),
    GlobalAvgPool,
    Flatten,
    Dense { w: Var, b: Var, activation: Option<Activation> },
    Dropout(f64),
    Residual(Vec<Built>),
}

fn build_layers(
    specs: &[LayerSpec],
    input: Shape,
    outputs: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Vec<Built>> {
    let mut shape = input;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let layer = match spec {
            LayerSpec::Conv2d { filters, kernel, stride, padding, activation, .. } => {
                let Shape::Volume(c, h, w) = shape else { bail!("a convolution needs a volume") };
                let (f, k, s, p) =
                    (*filters as usize, *kernel as usize, *stride as usize, pad(*padding, *kernel) as usize);
                let fan_in = c * k * k;
                let layer = Built::Conv {
                    w: uniform(rng, &[f, c, k, k], fan_in, device)?,
                    b: uniform(rng, &[f], fan_in, device)?,
                    stride: s,
                    pad: p,
                    activation: *activation,
                };
                shape = Shape::Volume(f, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
                layer
            }
            LayerSpec::BatchNorm { .. } => Built::BatchNorm {
                bn: BatchNorm2d::new(
                    match shape {
                        Shape::Volume(c, _, _) => c,
                        Shape::Features(n) => n,
                    },
                    device,
                )?,
            },
            LayerSpec::LayerNorm { .. } => {
                let Shape::Features(n) = shape else { bail!("layer_norm needs features") };
                Built::LayerNorm { gamma: Var::ones(n, DType::F32, device)?, beta: Var::zeros(n, DType::F32, device)? }
            }
            LayerSpec::Activation { function, .. } => Built::Activation(*function),
            LayerSpec::MaxPool { size, .. } | LayerSpec::AvgPool { size, .. } => {
                let Shape::Volume(c, h, w) = shape else { bail!("pooling needs a volume") };
                let s = *size as usize;
                shape = Shape::Volume(c, h / s, w / s);
                if matches!(spec, LayerSpec::MaxPool { .. }) { Built::MaxPool(s) } else { Built::AvgPool(s) }
            }
            LayerSpec::GlobalAvgPool { .. } => {
                let Shape::Volume(c, _, _) = shape else { bail!("global_avg_pool needs a volume") };
                shape = Shape::Features(c);
                Built::GlobalAvgPool
            }
            LayerSpec::Flatten { .. } => {
                if let Shape::Volume(c, h, w) = shape {
                    shape = Shape::Features(c * h * w);
                }
                Built::Flatten
            }
            LayerSpec::Dense { units, activation, .. } => {
                let Shape::Features(n) = shape else { bail!("a dense layer needs features") };
                let units = units.map_or(outputs, |u| u as usize);
                shape = Shape::Features(units);
                Built::Dense {
                    w: uniform(rng, &[n, units], n, device)?,
                    b: uniform(rng, &[units], n, device)?,
                    activation: *activation,
                }
            }
            LayerSpec::Dropout { rate, .. } => Built::Dropout(*rate),
            LayerSpec::Residual { layers, .. } => Built::Residual(build_layers(layers, shape, outputs, rng, device)?),
        };
        out.push(layer);
    }
    Ok(out)
}

/// A list of layers through plain candle ops.
pub struct Sequential {
    layers: Vec<Built>,
    input: Shape,
    kernels: Kernels,
}

fn named(layers: &[Built], prefix: &str, out: &mut Vec<Named>) {
    for (i, layer) in layers.iter().enumerate() {
        let name = |what: &str| format!("{prefix}{i}.{what}");
        match layer {
            Built::Conv { w, b, .. } => {
                out.extend([Named::param(name("weight"), w, true), Named::param(name("bias"), b, true)]);
            }
            Built::Dense { w, b, .. } => {
                out.extend([Named::matrix(name("weight"), w, true), Named::param(name("bias"), b, true)]);
            }
            Built::BatchNorm { bn } => out.extend([
                Named::param(name("weight"), &bn.gamma, true),
                Named::param(name("bias"), &bn.beta, true),
                Named::buffer(name("running_mean"), &bn.running_mean),
                Named::buffer(name("running_var"), &bn.running_var),
            ]),
            Built::LayerNorm { gamma, beta } => {
                out.extend([Named::param(name("weight"), gamma, true), Named::param(name("bias"), beta, true)]);
            }
            Built::Residual(inner) => named(inner, &format!("{prefix}{i}.layers."), out),
            _ => {}
        }
    }
}

impl Sequential {
    fn run(&self, layers: &[Built], mut h: Tensor, mode: &mut Mode<'_>) -> Result<Tensor> {
        let train = mode.is_train();
        for layer in layers {
            h = match layer {
                Built::Conv { w, b, stride, pad, activation } => {
                    let y = h.conv2d(w.as_tensor(), *pad, *stride, 1, 1)?;
                    let y = y.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1))?)?;
                    match activation {
                        Some(a) => a.apply(&y)?,
                        None => y,
                    }
                }
                Built::BatchNorm { bn } => {
                    let volume = h.rank() == 4;
                    let x = if volume { h.clone() } else { h.reshape((h.dim(0)?, h.dim(1)?, 1, 1))? };
                    let fused = train && self.kernels == Kernels::Auto && x.device().is_cpu();
                    let y = if fused { bn.forward(&x, true)? } else { bn.forward_plain(&x, train, false)? };
                    if volume { y } else { y.flatten_from(1)? }
                }
                Built::LayerNorm { gamma, beta } => super::layers::layer_norm(&h, gamma, Some(beta))?,
                Built::Activation(a) => a.apply(&h)?,
                Built::MaxPool(s) | Built::AvgPool(s) => {
                    let (n, c, hh, ww) = h.dims4()?;
                    let (ph, pw) = (hh / s, ww / s);
                    let x = h.narrow(2, 0, ph * s)?.narrow(3, 0, pw * s)?.reshape((n, c, ph, *s, pw, *s))?;
                    if matches!(layer, Built::MaxPool(_)) { x.max(5)?.max(3)? } else { x.mean(5)?.mean(3)? }
                }
                Built::GlobalAvgPool => h.mean(3)?.mean(2)?,
                Built::Flatten => h.flatten_from(1)?,
                Built::Dense { w, b, activation } => {
                    let y = h.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
                    match activation {
                        Some(a) => a.apply(&y)?,
                        None => y,
                    }
                }
                Built::Dropout(p) => match mode.rng() {
                    Some(r) if *p > 0.0 => dropout(&h, *p, r)?,
                    _ => h,
                },
                Built::Residual(inner) => (self.run(inner, h.clone(), mode)? + h)?,
            };
        }
        Ok(h)
    }
}

impl Network for Sequential {
    fn named(&self) -> Vec<Named> {
        let mut out = Vec::new();
        named(&self.layers, "layers.", &mut out);
        out
    }

    fn forward(&self, x: &Tensor, mut mode: Mode<'_>) -> Result<Tensor> {
        let h = match self.input {
            Shape::Volume(c, h, w) => x.reshape((x.dim(0)?, c, h, w))?,
            Shape::Features(_) => x.clone(),
        };
        self.run(&self.layers, h, &mut mode)
    }
}
