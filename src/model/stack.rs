//! The mlp, linear and cnn kinds: convolutions (perhaps none) then dense layers. Trained by
//! runner's CPU kernels (`kernels/`: the whole step below candle's per-op layer) where the
//! tensors are on the CPU and the model has no dropout nor GELU/SiLU, else by candle's
//! autograd over [`Stack::forward`]. Parameter names are those of a PyTorch module with
//! `convs` and `dense` `nn.ModuleList`s (`convs.0.weight`, `dense.1.bias`, ...).

use super::network::eval_outputs;
use super::network::{
    Batch, HostRows, Kernels, Mode, Named, Network, Step, StepLoss, autograd_loss_and_grads, in_pieces,
};
use super::spec::{activation_and_dropout, too_many};
use super::{Activation, DataShape, Init, Kind, dropout, max_pool2, uniform};
use crate::kernels::conv::ConvShape;
use crate::kernels::{self, ConvLayer, Layer as DenseLayer, Net, Targets, with_values};
use crate::params::ParamSource;
use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Storage, Tensor, Var};
use rand_chacha::ChaCha8Rng;

/// A dense layer: `x @ w + b` with `w` stored (in, out).
struct Dense {
    w: Var,
    b: Var,
}

/// A convolution with `out` filters of `k x k` over `in` channels, "same" padding.
struct Conv {
    w: Var,
    b: Var,
    pad: usize,
}

/// Convolutions then dense layers: the mlp, linear and cnn kinds.
pub struct Stack {
    convs: Vec<Conv>,
    /// (channels, height, width) the convolutions read.
    image: Option<(usize, usize, usize)>,
    pool: bool,
    dense: Vec<Dense>,
    activation: Activation,
    dropout: f64,
    /// Whether the CPU kernels may train it.
    kernels: Kernels,
    /// Its parameters' names where another kind built it (a sequential list), in
    /// [`Stack::vars`] order.
    names: Option<Vec<String>>,
}

/// `kind = "mlp"`: dense layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MlpSpec {
    pub hidden: Vec<u64>,
    pub activation: Activation,
    pub dropout: f64,
}

/// `kind = "linear"`: one dense layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinearSpec {
    pub init: Init,
}

/// `kind = "cnn"`: convolutions (each perhaps pooled), then dense layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CnnSpec {
    pub channels: Vec<u64>,
    pub kernel_size: u64,
    pub pool: bool,
    pub hidden: Vec<u64>,
    pub activation: Activation,
    pub dropout: f64,
}

/// What a stack is made of, from the mlp, linear or cnn options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout<'a> {
    /// Output channels of each convolution, their kernel size, and whether each is pooled.
    convs: Option<(&'a [u64], u64, bool)>,
    hidden: &'a [u64],
    activation: Activation,
    dropout: f64,
    /// Every parameter starts at 0.
    zeros: bool,
}

impl<'a> Layout<'a> {
    /// Convolutions of `channels` (none: dense layers only) with `kernel_size` and "same"
    /// padding, each pooled or not, then dense layers: what a sequential list that is one
    /// of these describes.
    pub(crate) fn new(
        channels: Option<&'a [u64]>,
        kernel_size: u64,
        pool: bool,
        hidden: &'a [u64],
        activation: Activation,
        dropout: f64,
    ) -> Layout<'a> {
        Layout { convs: channels.map(|c| (c, kernel_size, pool)), hidden, activation, dropout, zeros: false }
    }

    /// The parameter count for `data`, or why the stack cannot be built for it.
    fn parameters(&self, data: DataShape) -> Result<u128, String> {
        let (features, outputs, image) = (data.features, data.outputs, data.image);
        let mut params: u128 = 0;
        let mut width = features as u128;
        if let Some((channels, kernel_size, pool)) = self.convs {
            let Some((c, h, w)) = image else {
                return Err(
                    "the cnn model needs image data (digits, mnist, cifar10, cifar100, or npz/npy images); use mlp or linear for this data set".into()
                );
            };
            let (mut c, mut h, mut w) = (c as u128, h as u128, w as u128);
            let k = kernel_size as u128;
            for (i, &out) in channels.iter().enumerate() {
                let out = out as u128;
                params = params
                    .saturating_add(out.saturating_mul(c).saturating_mul(k).saturating_mul(k))
                    .saturating_add(out);
                c = out;
                (h, w) = (h + 2 * (k / 2) + 1 - k, w + 2 * (k / 2) + 1 - k);
                if pool {
                    if h < 2 || w < 2 {
                        return Err(format!(
                            "the {}x{} image is too small for {} pooled convolutions: it is {h}x{w} after {i}; use fewer channels entries or pool = false",
                            image.map_or(0, |i| i.1),
                            image.map_or(0, |i| i.2),
                            channels.len()
                        ));
                    }
                    (h, w) = (h / 2, w / 2);
                }
            }
            width = c.saturating_mul(h).saturating_mul(w);
        }
        for out in self.hidden.iter().map(|&h| h as u128).chain([outputs as u128]) {
            params = params.saturating_add(width.saturating_mul(out)).saturating_add(out);
            width = out;
        }
        too_many(params, "use smaller hidden layers or fewer channels")
    }

    fn build(
        self,
        data: DataShape,
        rng: &mut ChaCha8Rng,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Box<dyn Network>> {
        Ok(Box::new(Stack::new(self, data.features, data.outputs, data.image, rng, kernels, device)?))
    }
}

impl MlpSpec {
    pub(crate) fn layout(&self) -> Layout<'_> {
        Layout { convs: None, hidden: &self.hidden, activation: self.activation, dropout: self.dropout, zeros: false }
    }
}

impl LinearSpec {
    pub(crate) fn layout(&self) -> Layout<'_> {
        Layout { convs: None, hidden: &[], activation: Activation::Relu, dropout: 0.0, zeros: self.init == Init::Zeros }
    }
}

impl CnnSpec {
    pub(crate) fn layout(&self) -> Layout<'_> {
        Layout {
            convs: Some((&self.channels, self.kernel_size, self.pool)),
            hidden: &self.hidden,
            activation: self.activation,
            dropout: self.dropout,
            zeros: false,
        }
    }
}

/// A stack kind's `check` and `build`: its [`Layout`]'s.
macro_rules! layout_check_and_build {
    () => {
        fn check(&self, data: DataShape) -> Result<u128, String> {
            self.layout().parameters(data)
        }

        fn build(
            &self,
            data: DataShape,
            rng: &mut ChaCha8Rng,
            kernels: Kernels,
            device: &Device,
        ) -> Result<Box<dyn Network>> {
            self.layout().build(data, rng, kernels, device)
        }
    };
}

impl Kind for MlpSpec {
    const KIND: &'static str = "mlp";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let hidden = p.counts("hidden", &[128, 64], 1, "sizes of the hidden layers")?;
        let (activation, dropout) = activation_and_dropout(p)?;
        Ok(MlpSpec { hidden, activation, dropout })
    }

    layout_check_and_build!();
}

impl Kind for LinearSpec {
    const KIND: &'static str = "linear";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let init = p.choice(
            "init",
            &["uniform", "zeros"],
            Some("uniform"),
            "initial weights: PyTorch's U(-1/sqrt(in), 1/sqrt(in)), or all zeros (a known start, for checks)",
        )?;
        Ok(LinearSpec { init: if init == "zeros" { Init::Zeros } else { Init::Uniform } })
    }

    layout_check_and_build!();
}

impl Kind for CnnSpec {
    const KIND: &'static str = "cnn";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let channels = p.counts("channels", &[16, 32], 1, "output channels of each convolution")?;
        let kernel_size = p.steps("kernel_size", Some(3), 1, "convolution kernel size (odd keeps the size)")?;
        let pool = p.flag("pool", true, "2x2 max-pooling after each convolution")?;
        let hidden = p.counts("hidden", &[64], 1, "sizes of the dense layers after the convolutions")?;
        let (activation, dropout) = activation_and_dropout(p)?;
        Ok(CnnSpec { channels, kernel_size, pool, hidden, activation, dropout })
    }

    layout_check_and_build!();
}

impl Stack {
    /// Builds `layout` (checked by [`Layout::parameters`]) for `features` inputs and
    /// `outputs` outputs, weights drawn from `rng`.
    pub(crate) fn new(
        layout: Layout<'_>,
        features: usize,
        outputs: usize,
        image: Option<(usize, usize, usize)>,
        rng: &mut ChaCha8Rng,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Stack> {
        let (mut convs, mut width, mut conv_image) = (Vec::new(), features, None);
        if let Some((channels, kernel_size, pool)) = layout.convs {
            let Some((mut c, mut h, mut w)) = image else {
                bail!(
                    "the cnn model needs image data (digits, mnist, cifar10, cifar100, or npz/npy images); use mlp or linear for this data set"
                )
            };
            conv_image = image;
            let k = kernel_size as usize;
            for &out in channels {
                let out = out as usize;
                let fan_in = c * k * k;
                convs.push(Conv {
                    w: uniform(rng, &[out, c, k, k], fan_in, device)?,
                    b: uniform(rng, &[out], fan_in, device)?,
                    pad: k / 2,
                });
                c = out;
                // "Same" padding k / 2: an even kernel makes the image one pixel larger.
                (h, w) = (h + 2 * (k / 2) + 1 - k, w + 2 * (k / 2) + 1 - k);
                if pool {
                    if h < 2 || w < 2 {
                        bail!(
                            "the image is too small for {} pooled convolutions; use fewer channels entries or pool = false",
                            channels.len()
                        );
                    }
                    (h, w) = (h / 2, w / 2);
                }
            }
            width = c * h * w;
        }
        let hidden: Vec<usize> = layout.hidden.iter().map(|&h| h as usize).collect();
        let mut dense = Vec::new();
        let zeros = layout.zeros;
        for out in hidden.into_iter().chain([outputs]) {
            dense.push(if zeros {
                let zero = |shape: &[usize]| Var::zeros(shape, DType::F32, device);
                Dense { w: zero(&[width, out])?, b: zero(&[out])? }
            } else {
                Dense { w: uniform(rng, &[width, out], width, device)?, b: uniform(rng, &[out], width, device)? }
            });
            width = out;
        }
        let (activation, dropout) = (layout.activation, layout.dropout);
        let pool = layout.convs.is_some_and(|(_, _, pool)| pool);
        Ok(Stack { convs, image: conv_image, pool, dense, activation, dropout, kernels, names: None })
    }

    /// The same network with its parameters named `names` (in [`Stack::vars`] order).
    pub(crate) fn named_as(mut self, names: Vec<String>) -> Stack {
        self.names = Some(names);
        self
    }

    /// Every parameter, in a fixed order.
    pub fn vars(&self) -> Vec<Var> {
        let convs = self.convs.iter().flat_map(|c| [c.w.clone(), c.b.clone()]);
        convs.chain(self.dense.iter().flat_map(|d| [d.w.clone(), d.b.clone()])).collect()
    }

    /// The network's output for a batch `x` of shape (n, features). With `dropout_rng`
    /// (training), dropout masks are drawn from it; without (evaluation), dropout is off.
    pub fn forward(&self, x: &Tensor, dropout_rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let mut h = x.clone();
        if let Some((c, hh, ww)) = self.image {
            h = h.reshape((x.dim(0)?, c, hh, ww))?;
            for conv in &self.convs {
                h = h.conv2d(conv.w.as_tensor(), conv.pad, 1, 1, 1)?;
                h = h.broadcast_add(&conv.b.as_tensor().reshape((1, (), 1, 1))?)?;
                h = self.activation.apply(&h)?;
                if self.pool {
                    h = max_pool2(&h)?;
                }
            }
            h = h.flatten_from(1)?;
        }
        let mut rng = dropout_rng;
        let last = self.dense.len() - 1;
        for (i, d) in self.dense.iter().enumerate() {
            h = h.matmul(d.w.as_tensor())?.broadcast_add(d.b.as_tensor())?;
            if i < last {
                h = self.activation.apply(&h)?;
                if let (Some(r), true) = (rng.as_deref_mut(), self.dropout > 0.0) {
                    h = dropout(&h, self.dropout, r)?;
                }
            }
        }
        Ok(h)
    }
}

impl Stack {
    /// Whether [`Stack::fused_loss_and_grads`] can train this model: dense layers and
    /// convolutions, no dropout, and an activation whose derivative follows from its output.
    pub fn fusable(&self) -> bool {
        self.dropout == 0.0 && self.kernel_activation().is_some()
    }

    /// The activation as the kernels know it, where they have it.
    fn kernel_activation(&self) -> Option<kernels::Activation> {
        match self.activation {
            Activation::Relu => Some(kernels::Activation::Relu),
            Activation::LeakyRelu => Some(kernels::Activation::LeakyRelu),
            Activation::Tanh => Some(kernels::Activation::Tanh),
            Activation::Sigmoid => Some(kernels::Activation::Sigmoid),
            Activation::Gelu | Activation::Silu => None,
        }
    }

    /// Calls `f` with the network read in place from the parameters (held read-locked
    /// meanwhile), after checking that it takes `features` inputs.
    fn with_net<R>(&self, features: usize, f: impl FnOnce(&Net<'_>) -> Result<R>) -> Result<R> {
        let vars = self.vars();
        let guards: Vec<_> = vars.iter().map(|v| v.as_tensor().storage_and_layout()).collect();
        let mut slices = Vec::with_capacity(guards.len());
        for (storage, layout) in &guards {
            let Storage::Cpu(cpu) = &**storage else { bail!("the fused step runs on the CPU") };
            if !layout.is_contiguous() {
                bail!("the fused step needs contiguous parameters");
            }
            slices.push(&cpu.as_slice::<f32>()?[layout.start_offset()..]);
        }
        let mut image = self.image;
        let mut convs = Vec::with_capacity(self.convs.len());
        for (c, s) in self.convs.iter().zip(slices.chunks(2)) {
            let Some(input) = image else { bail!("the convolutions need an image shape") };
            let (c_out, k) = (c.w.dims()[0], c.w.dims()[2]);
            let Some(shape) = ConvShape::new(input, c_out, k, 1, c.pad) else {
                bail!("a {k}x{k} convolution does not fit the {}x{} image", input.1, input.2)
            };
            let (oh, ow) = (shape.out_h(), shape.out_w());
            image = Some(if self.pool { (c_out, oh / 2, ow / 2) } else { (c_out, oh, ow) });
            convs.push(ConvLayer { w: &s[0][..c_out * shape.patch()], b: &s[1][..c_out], shape });
        }
        let dense: Vec<DenseLayer<'_>> = self
            .dense
            .iter()
            .zip(slices[2 * self.convs.len()..].chunks(2))
            .map(|(d, s)| {
                let (inputs, outputs) = (d.w.dims()[0], d.w.dims()[1]);
                DenseLayer { w: &s[0][..inputs * outputs], b: &s[1][..outputs], inputs, outputs }
            })
            .collect();
        let takes = match (convs.first(), dense.first()) {
            (Some(c), _) => c.shape.c_in * c.shape.h * c.shape.w,
            (None, Some(d)) => d.inputs,
            (None, None) => bail!("the network has no layers"),
        };
        if takes != features || image.is_some_and(|(c, h, w)| dense.first().is_some_and(|d| d.inputs != c * h * w)) {
            bail!("the batch has {features} features, the network takes {takes}");
        }
        let Some(activation) = self.kernel_activation() else { bail!("the fused step has no {:?}", self.activation) };
        f(&Net { convs, pool: self.pool, dense, activation })
    }

    /// [`Net::loss_and_grads`] of this network, the gradients written into the tensors
    /// `grads` already holds for the parameters (a store kept from step to step is reused
    /// in place), else into new ones it is given.
    pub fn fused_loss_and_grads(
        &self,
        data: &[f32],
        rows: &[u32],
        features: usize,
        targets: Targets<'_>,
        parts: usize,
        grads: &mut GradStore,
    ) -> Result<f64> {
        let grad_tensors = self.gradient_tensors(grads)?;
        self.with_net(features, |net| net.loss_and_grads(data, rows, features, targets, parts, &grad_tensors))
    }

    /// The tensors of `grads` that receive each parameter's gradient (in [`Stack::vars`]
    /// order): those it holds, else new ones it is given.
    fn gradient_tensors(&self, grads: &mut GradStore) -> Result<Vec<Tensor>> {
        let mut tensors = Vec::new();
        for var in self.vars() {
            tensors.push(match grads.get(&var) {
                Some(g) if g.dims() == var.dims() && g.is_contiguous() => g.clone(),
                _ => {
                    let g = Tensor::zeros(var.shape(), candle_core::DType::F32, &Device::Cpu)?;
                    grads.insert(var.as_tensor(), g.clone());
                    g
                }
            });
        }
        Ok(tensors)
    }

    /// The network's outputs for the rows `x` (no dropout: evaluation), row after row,
    /// computed in pieces of at most 128 rows spread over the current rayon pool.
    pub fn fused_outputs(&self, x: &[f32], features: usize) -> Result<Vec<f32>> {
        self.with_net(features, |net| Ok(net.outputs(x, features)))
    }

    /// Whether the CPU kernels run this model (see [`Stack::fusable`]).
    fn kernels_apply(&self) -> bool {
        self.kernels == Kernels::Auto && self.fusable() && self.dense[0].w.device().is_cpu()
    }
}

impl Network for Stack {
    fn named(&self) -> Vec<Named> {
        let convs = self.convs.iter().enumerate().flat_map(|(i, c)| {
            [Named::param(format!("convs.{i}.weight"), &c.w, true), Named::param(format!("convs.{i}.bias"), &c.b, true)]
        });
        let dense = self.dense.iter().enumerate().flat_map(|(i, d)| {
            [
                Named::matrix(format!("dense.{i}.weight"), &d.w, true),
                Named::param(format!("dense.{i}.bias"), &d.b, true),
            ]
        });
        let named: Vec<Named> = convs.chain(dense).collect();
        match &self.names {
            Some(names) => named.into_iter().zip(names).map(|(n, name)| Named { name: name.clone(), ..n }).collect(),
            None => named,
        }
    }

    fn forward(&self, x: &Tensor, mut mode: Mode<'_>) -> Result<Tensor> {
        Stack::forward(self, x, mode.rng())
    }

    fn loss_and_grads(&self, batch: &dyn Batch, step: &mut Step<'_>, grads: &mut GradStore) -> Result<StepLoss> {
        if self.kernels_apply()
            && let Some((rows, targets, features)) = batch.host()
        {
            let parts = step.threads.max(1);
            return Ok(StepLoss::Value(match rows {
                HostRows::Of { x, rows } => with_values(x, |all: &[f32]| {
                    self.fused_loss_and_grads(all, rows, features, targets, parts, grads)
                })??,
                HostRows::Gathered { x, rows } => {
                    self.fused_loss_and_grads(x, rows, features, targets, parts, grads)?
                }
            }));
        }
        autograd_loss_and_grads(self, batch, step, grads, false)
    }

    fn outputs(&self, x: &Tensor, each: &mut dyn FnMut(Tensor) -> Result<()>) -> Result<()> {
        let n = x.dim(0)?;
        if !self.kernels_apply() || n == 0 || !x.device().is_cpu() {
            return eval_outputs(self, x, each);
        }
        // The fused forward pass (the same as training's), in parallel, handed on in
        // pieces of 1,024 rows.
        let features = x.elem_count() / n;
        let out = with_values(x, |x: &[f32]| self.fused_outputs(x, features))??;
        let width = out.len() / n;
        let all = Tensor::from_vec(out, (n, width), &Device::Cpu)?;
        in_pieces(n, 1024, |start, len| each(all.narrow(0, start, len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{cross_entropy, mse};

    // The fused step (runner's CPU kernels) against the plain path: candle's ops and
    // autograd on the same model and batch.

    /// The fused gradients against candle's autograd on the same model and batch.
    fn compare(activation: Activation, classification: bool, parts: usize) {
        let spec = MlpSpec { hidden: vec![7, 5], activation, dropout: 0.0 };
        compare_model(spec.layout(), 6, None, 9, activation, classification, parts);
    }

    fn compare_model(
        spec: Layout<'_>,
        features: usize,
        image: Option<(usize, usize, usize)>,
        n: usize,
        activation: Activation,
        classification: bool,
        parts: usize,
    ) {
        let outputs = if classification { 4 } else { 1 };
        let model = Stack::new(
            spec,
            features,
            outputs,
            image,
            &mut crate::model::init_rng(3),
            crate::model::Kernels::Auto,
            &Device::Cpu,
        )
        .unwrap();
        assert!(model.fusable());
        let x: Vec<f32> = (0..n * features).map(|i| ((i * 7919 + 13) % 10_007) as f32 / 5003.5 - 1.0).collect();
        let classes: Vec<u32> = (0..n as u32).map(|i| i * 3 % outputs as u32).collect();
        let values: Vec<f32> = (0..n).map(|i| i as f32 / 4.0 - 1.0).collect();
        let xt = Tensor::from_vec(x.clone(), (n, features), &Device::Cpu).unwrap();
        let out = model.forward(&xt, None).unwrap();
        let loss = if classification {
            cross_entropy(&out, &Tensor::from_vec(classes.clone(), n, &Device::Cpu).unwrap()).unwrap()
        } else {
            mse(&out, &Tensor::from_vec(values.clone(), (n, 1), &Device::Cpu).unwrap()).unwrap()
        };
        let expected = loss.backward().unwrap();
        // The evaluation's forward pass gives candle's outputs.
        let fused_out = model.fused_outputs(&x, features).unwrap();
        let candle_out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(fused_out.len(), candle_out.len());
        for (a, b) in fused_out.iter().zip(&candle_out) {
            assert!((a - b).abs() < 1e-5 + 1e-5 * b.abs(), "{activation:?} outputs: {a} vs {b}");
        }
        let targets = if classification { Targets::Classes(&classes) } else { Targets::Values(&values) };
        let rows: Vec<u32> = (0..n as u32).collect();
        let mut grads = GradStore::default();
        let fused_loss = model.fused_loss_and_grads(&x, &rows, features, targets, parts, &mut grads).unwrap();
        // A second step into the same store rewrites the gradients in place (not added to
        // the first's; the split may differ when threads had to wait: float rounding).
        let first: Vec<Tensor> = model.vars().iter().map(|v| grads.get(v).unwrap().copy().unwrap()).collect();
        model.fused_loss_and_grads(&x, &rows, features, targets, parts, &mut grads).unwrap();
        for (v, f) in model.vars().iter().zip(&first) {
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, b) in flat(grads.get(v).unwrap()).iter().zip(flat(f)) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "second step {a} vs first {b}");
            }
        }
        let want = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((fused_loss - want).abs() < 1e-5 * want.abs().max(1.0), "loss {fused_loss} vs {want}");
        for var in model.vars() {
            let a: Vec<f32> = grads.get(&var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = expected.get(&var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() < 1e-5 + 1e-4 * b.abs(), "{activation:?}: {a} vs {b}");
            }
        }
    }

    /// The cnn kind through the fused step (im2col convolutions, pooling, the flatten)
    /// against candle's conv2d, max_pool2d and autograd: odd image sizes, several channels,
    /// with and without pooling, a batch of one, split into parts.
    #[test]
    fn fused_cnn_gradients_match_candles_autograd() {
        for (activation, pool, kernel_size, image, n, parts) in [
            (Activation::Relu, true, 3, (1, 8, 8), 5, 1),
            (Activation::Relu, true, 3, (2, 7, 9), 4, 2),
            (Activation::Tanh, false, 3, (1, 5, 5), 3, 3),
            (Activation::LeakyRelu, true, 5, (3, 6, 6), 1, 1),
            (Activation::Sigmoid, true, 2, (1, 7, 7), 2, 2),
            (Activation::Relu, true, 3, (1, 6, 6), 300, 2), // several evaluation pieces of 128 rows
        ] {
            let spec = CnnSpec { channels: vec![3, 4], kernel_size, pool, hidden: vec![6], activation, dropout: 0.0 };
            let features = image.0 * image.1 * image.2;
            for classification in [true, false] {
                compare_model(spec.layout(), features, Some(image), n, activation, classification, parts);
            }
        }
    }

    /// Dense networks on several threads (lockstep.rs: column blocks of 16, a narrow last
    /// layer on the first thread alone, the first layer by its inputs) give candle's
    /// gradients, and one thread's loss and gradients to float rounding.
    #[test]
    fn lockstep_dense_steps_match_candle_and_one_thread() {
        let spec = MlpSpec { hidden: vec![40, 33], activation: Activation::Tanh, dropout: 0.0 };
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for classification in [true, false] {
                    compare_model(spec.layout(), 37, None, 11, Activation::Tanh, classification, threads);
                }
            });
        }
        let model = Stack::new(
            spec.layout(),
            37,
            4,
            None,
            &mut crate::model::init_rng(5),
            crate::model::Kernels::Auto,
            &Device::Cpu,
        )
        .unwrap();
        let x: Vec<f32> = (0..20 * 37).map(|i| ((i * 7919 + 13) % 10_007) as f32 / 5003.5 - 1.0).collect();
        let classes: Vec<u32> = (0..20).map(|i| i % 4).collect();
        let rows: Vec<u32> = (0..20).rev().collect();
        let step = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut grads = GradStore::default();
            let loss = pool
                .install(|| model.fused_loss_and_grads(&x, &rows, 37, Targets::Classes(&classes), threads, &mut grads))
                .unwrap();
            let values: Vec<Vec<f32>> =
                model.vars().iter().map(|v| grads.get(v).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect();
            (loss, values)
        };
        let (one, two) = (step(1), step(2));
        assert!((one.0 - two.0).abs() <= 1e-6 * one.0.abs(), "loss {} vs {}", one.0, two.0);
        // The first layer's product is summed in one part per thread, and the product
        // kernels may sum a column block in another order: float rounding.
        for (a, b) in one.1.iter().flatten().zip(two.1.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "one thread {a} vs two {b}");
        }
    }

    #[test]
    fn fused_gradients_match_candles_autograd() {
        for activation in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::LeakyRelu] {
            for classification in [true, false] {
                for parts in [1, 2, 4] {
                    compare(activation, classification, parts);
                }
            }
        }
    }
}
