//! The CIFAR ResNet of He et al. 2016 (section 4.2): a 3x3 convolution to 16 channels,
//! three stages of `n` basic blocks (two 3x3 convolutions with batch normalisation, and a
//! shortcut) at 16, 32 and 64 channels (times `width`), the second and third starting with
//! stride 2, then global average pooling and a linear layer: depth 6n + 2. Shortcuts that
//! change the shape are option A (the input subsampled and zero-padded with channels, no
//! parameters) or B (a strided 1x1 convolution and batch normalisation). Initialised as
//! PyTorch's reference implementations do: Kaiming normal convolution and linear weights,
//! PyTorch's default linear bias, batch normalisation at scale 1 and shift 0. Parameter
//! names are those of the PyTorch module in bench/resnet_fidelity.py (`stem.conv.weight`,
//! `blocks.3.a.bn.running_mean`, an option-B projection `blocks.3.shortcut.conv.weight`,
//! `fc.weight`).

use super::layers::{BatchNorm2d, EPS, kaiming_normal, relu, uniform_bias};
use super::network::Kernels;
use super::network::{Mode, Named, Network};
use super::spec::too_many;
use super::{DataShape, Kind};
use crate::kernels::add_relu::add_relu;
use crate::kernels::basic_block::{ConvBnParams, basic_block};
use crate::kernels::conv_bn::conv_bn;
use crate::kernels::conv_op::conv2d;
use crate::kernels::resnet_trunk::{BlockParams, resnet_trunk};
use crate::params::ParamSource;
use anyhow::{Result, bail};
use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

/// A ResNet's shortcut where a block changes the shape (He et al. 2016, section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Shortcut {
    /// The input subsampled and padded with zero channels: no parameters (the paper's CIFAR choice).
    A,
    /// A strided 1x1 convolution and batch normalisation.
    B,
}

/// A 3x3 (or 1x1) convolution without bias followed by batch normalisation.
struct ConvBn {
    w: Var,
    bn: BatchNorm2d,
    stride: usize,
    pad: usize,
}

impl ConvBn {
    fn new(rng: &mut ChaCha8Rng, c_in: usize, c_out: usize, k: usize, stride: usize, dev: &Device) -> Result<ConvBn> {
        Ok(ConvBn {
            w: kaiming_normal(rng, &[c_out, c_in, k, k], c_in * k * k, dev)?,
            bn: BatchNorm2d::new(c_out, dev)?,
            stride,
            pad: k / 2,
        })
    }

    fn forward(&self, x: &Tensor, train: bool, plain: bool) -> Result<Tensor> {
        self.forward_with(x, train, false, plain)
    }

    /// [`ConvBn::forward`] then a ReLU.
    fn forward_relu(&self, x: &Tensor, train: bool, plain: bool) -> Result<Tensor> {
        self.forward_with(x, train, true, plain)
    }

    /// In training one op (`conv_bn`: the convolution's output is no node of the graph),
    /// which also moves the running statistics; in evaluation the convolution, then the
    /// batch norm with the running statistics. `plain`: candle's convolution and batch
    /// norm as candle ops, on any device.
    fn forward_with(&self, x: &Tensor, train: bool, relu: bool, plain: bool) -> Result<Tensor> {
        if plain {
            let z = x.conv2d(self.w.as_tensor(), self.pad, self.stride, 1, 1)?;
            return self.bn.forward_plain(&z, train, relu);
        }
        if !train {
            let z = conv2d(x, self.w.as_tensor(), self.stride, self.pad)?;
            return if relu { self.bn.forward_relu(&z, false) } else { self.bn.forward(&z, false) };
        }
        let affine = (self.bn.gamma.as_tensor(), self.bn.beta.as_tensor());
        let (y, stats) = conv_bn(x, self.w.as_tensor(), affine, (self.stride, self.pad), EPS, relu)?;
        let (n, _, h, w) = y.dims4()?;
        self.bn.update_running(&stats, n * h * w)?;
        Ok(y)
    }
}

/// How a block's input reaches its output.
enum Skip {
    Identity,
    /// Option A: every other pixel of every other row, `pad` zero channels on each side.
    Pad {
        pad: usize,
    },
    /// Option B: a strided 1x1 convolution and batch normalisation.
    Project(ConvBn),
}

struct Block {
    a: ConvBn,
    b: ConvBn,
    skip: Skip,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool, plain: bool) -> Result<Tensor> {
        if train && !plain && !matches!(self.skip, Skip::Project(_)) {
            // One op for the whole block: its two 3x3 convolutions and the shortcut.
            let (a, b) = (&self.a, &self.b);
            let (y, (stats_a, stats_b)) = basic_block(
                x,
                (a.w.as_tensor(), a.bn.gamma.as_tensor(), a.bn.beta.as_tensor()),
                (b.w.as_tensor(), b.bn.gamma.as_tensor(), b.bn.beta.as_tensor()),
                a.stride,
                EPS,
            )?;
            let (n, _, h, w) = y.dims4()?;
            self.a.bn.update_running(&stats_a, n * h * w)?;
            self.b.bn.update_running(&stats_b, n * h * w)?;
            return Ok(y);
        }
        let h = self.a.forward_relu(x, train, plain)?;
        let h = self.b.forward(&h, train, plain)?;
        let skip = match &self.skip {
            Skip::Identity => x.clone(),
            Skip::Pad { pad } => {
                let (n, c, hh, ww) = x.dims4()?;
                // x[:, :, ::2, ::2] of an even image (CIFAR's 32 and 16).
                let sub = x.reshape((n, c, hh / 2, 2, ww / 2, 2))?.narrow(3, 0, 1)?.narrow(5, 0, 1)?.reshape((
                    n,
                    c,
                    hh / 2,
                    ww / 2,
                ))?;
                sub.pad_with_zeros(1, *pad, *pad)?
            }
            Skip::Project(p) => p.forward(x, train, plain)?,
        };
        if plain { relu(&(h + skip)?) } else { Ok(add_relu(&h, &skip)?) }
    }
}

/// A built ResNet.
pub struct Resnet {
    stem: ConvBn,
    blocks: Vec<Block>,
    /// (in, out), as the other models' dense layers.
    fc_w: Var,
    fc_b: Var,
    image: (usize, usize, usize),
    /// Weight decay on batch norm's scale and shift and the linear bias too.
    decay_bn: bool,
    /// Plain candle ops only (no CPU kernels).
    plain: bool,
}

/// `kind = "resnet"`: the CIFAR ResNet of `depth` 6n + 2.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResnetSpec {
    pub depth: u64,
    pub width: u64,
    pub shortcut: Shortcut,
    pub weight_decay_bn: bool,
}

impl Kind for ResnetSpec {
    const KIND: &'static str = "resnet";

    fn read<P: ParamSource>(p: &mut P) -> Result<Self, P::Error> {
        let depth = p.steps("depth", Some(20), 8, "6n + 2 layers: 20, 32, 44, 56, 110 (8 for a quick try)")?;
        if let Err(why) = blocks_per_stage(depth) {
            return Err(p.invalid("depth", why));
        }
        let width = p.steps("width", Some(1), 1, "channel multiplier of the 16/32/64 stages (wide ResNets)")?;
        let shortcut = match p.choice(
            "shortcut",
            &["A", "B"],
            Some("A"),
            "where a block changes shape: A pads with zero channels (the paper's CIFAR choice), B projects with a 1x1 convolution",
        )? {
            "B" => Shortcut::B,
            _ => Shortcut::A,
        };
        let weight_decay_bn = p.flag(
            "weight_decay_bn",
            false,
            "apply the optimizer's weight decay to batch norm's scale and shift and the biases too",
        )?;
        Ok(ResnetSpec { depth, width, shortcut, weight_decay_bn })
    }

    fn check(&self, data: DataShape) -> Result<u128, String> {
        let Some((c0, h, w)) = data.image else {
            return Err("the resnet model needs image data (digits, mnist, cifar10, cifar100, or npz/npy images); use mlp or linear for this data set".into());
        };
        let n = blocks_per_stage(self.depth).map_err(|e| format!("`depth` {e}"))? as u128;
        if h % 4 != 0 || w % 4 != 0 {
            return Err(format!(
                "the resnet halves the {h}x{w} image twice: its sides must be multiples of 4 (CIFAR's 32x32, MNIST's 28x28)"
            ));
        }
        let [a, b, c] = stage_widths(self.width).map(|c| c as u128);
        let conv_bn = |c_in: u128, c_out: u128, k: u128| {
            c_in.saturating_mul(c_out).saturating_mul(k * k).saturating_add(2 * c_out)
        };
        let mut params = conv_bn(c0 as u128, a, 3);
        params = params.saturating_add((2 * n).saturating_mul(conv_bn(a, a, 3)));
        for (c_in, planes) in [(a, b), (b, c)] {
            params = params
                .saturating_add(conv_bn(c_in, planes, 3))
                .saturating_add((2 * n - 1).saturating_mul(conv_bn(planes, planes, 3)));
            if self.shortcut == Shortcut::B {
                params = params.saturating_add(conv_bn(c_in, planes, 1));
            }
        }
        let outputs = data.outputs as u128;
        params = params.saturating_add(c.saturating_mul(outputs)).saturating_add(outputs);
        too_many(params, "use a smaller depth or width")
    }

    fn build(
        &self,
        data: DataShape,
        rng: &mut ChaCha8Rng,
        kernels: Kernels,
        device: &Device,
    ) -> Result<Box<dyn Network>> {
        let Some(image) = data.image else { bail!("the resnet model needs image data") };
        let shape = (self.depth, self.width, self.shortcut);
        let net = Resnet::new(shape, (image, data.outputs), self.weight_decay_bn, rng, device)?;
        Ok(Box::new(net.with_kernels(kernels)))
    }
}

/// The blocks of each stage for depth `depth` (6n + 2), or why there is none.
pub fn blocks_per_stage(depth: u64) -> Result<usize, String> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) {
        return Err(format!("must be 6n + 2 for n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), found {depth}"));
    }
    Ok(((depth - 2) / 6) as usize)
}

/// The widths of the three stages: 16, 32, 64 times `width`.
pub fn stage_widths(width: u64) -> [usize; 3] {
    [16, 32, 64].map(|c| c * width as usize)
}

impl Resnet {
    /// The ResNet of `depth` and `width` for `image`s and `outputs` classes, its weights
    /// drawn from `rng` and placed on `dev`.
    pub fn new(
        (depth, width, shortcut): (u64, u64, Shortcut),
        (image, outputs): ((usize, usize, usize), usize),
        decay_bn: bool,
        rng: &mut ChaCha8Rng,
        dev: &Device,
    ) -> Result<Resnet> {
        let n = blocks_per_stage(depth).map_err(anyhow::Error::msg)?;
        let (c0, h, w) = image;
        if h % 4 != 0 || w % 4 != 0 {
            bail!("the resnet halves the {h}x{w} image twice: its sides must be multiples of 4 (CIFAR's 32x32)");
        }
        let widths = stage_widths(width);
        let stem = ConvBn::new(rng, c0, widths[0], 3, 1, dev)?;
        let mut blocks = Vec::new();
        let mut c_in = widths[0];
        for (stage, &planes) in widths.iter().enumerate() {
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let a = ConvBn::new(rng, c_in, planes, 3, stride, dev)?;
                let b = ConvBn::new(rng, planes, planes, 3, 1, dev)?;
                let skip = if stride == 1 && c_in == planes {
                    Skip::Identity
                } else {
                    match shortcut {
                        Shortcut::A => Skip::Pad { pad: (planes - c_in) / 2 },
                        Shortcut::B => Skip::Project(ConvBn::new(rng, c_in, planes, 1, stride, dev)?),
                    }
                };
                blocks.push(Block { a, b, skip });
                c_in = planes;
            }
        }
        let fc_w = kaiming_normal(rng, &[c_in, outputs], c_in, dev)?;
        let fc_b = uniform_bias(rng, outputs, c_in, dev)?;
        Ok(Resnet { stem, blocks, fc_w, fc_b, image, decay_bn, plain: false })
    }

    /// Every convolution + batch norm with its name (PyTorch's module path).
    fn conv_bns(&self) -> Vec<(String, &ConvBn)> {
        let mut all = vec![("stem".to_string(), &self.stem)];
        for (i, b) in self.blocks.iter().enumerate() {
            all.extend([(format!("blocks.{i}.a"), &b.a), (format!("blocks.{i}.b"), &b.b)]);
            if let Skip::Project(p) = &b.skip {
                all.push((format!("blocks.{i}.shortcut"), p));
            }
        }
        all
    }

    /// The stem and every block in training as one op (option-A shortcuts), and the
    /// running statistics of each batch norm updated from the batch's.
    fn trunk(&self, x: &Tensor) -> Result<Tensor> {
        fn params(l: &ConvBn) -> ConvBnParams<'_> {
            (l.w.as_tensor(), l.bn.gamma.as_tensor(), l.bn.beta.as_tensor())
        }
        let blocks: Vec<BlockParams<'_>> =
            self.blocks.iter().map(|b| (params(&b.a), params(&b.b), b.a.stride)).collect();
        let (y, stats) = resnet_trunk(x, params(&self.stem), &blocks, EPS)?;
        let layers = std::iter::once(&self.stem).chain(self.blocks.iter().flat_map(|b| [&b.a, &b.b]));
        for (layer, (stats, count)) in layers.zip(&stats) {
            layer.bn.update_running(stats, *count)?;
        }
        Ok(y)
    }

    /// The logits of a batch `x` (n, c*h*w); `train` normalises with batch statistics and
    /// updates the running ones.
    fn run(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (c, h, w) = self.image;
        let plain = self.plain || !x.device().is_cpu();
        let x = x.reshape((x.dim(0)?, c, h, w))?;
        let h = if train && !plain && self.blocks.iter().all(|b| !matches!(b.skip, Skip::Project(_))) {
            self.trunk(&x)?
        } else {
            let mut h = self.stem.forward_relu(&x, train, plain)?;
            for b in &self.blocks {
                h = b.forward(&h, train, plain)?;
            }
            h
        };
        let pooled = h.mean(3)?.mean(2)?;
        Ok(pooled.matmul(self.fc_w.as_tensor())?.broadcast_add(self.fc_b.as_tensor())?)
    }
}

impl Resnet {
    /// The same network on `kernels` (plain: candle's ops only).
    pub fn with_kernels(self, kernels: Kernels) -> Resnet {
        Resnet { plain: kernels == Kernels::Plain, ..self }
    }
}

impl Network for Resnet {
    /// The trainable parameters (each convolution's weight, its batch norm's scale and
    /// shift, block by block; then the linear layer's weight and bias), then every batch
    /// norm's running mean and variance. Weight decay applies to convolution and linear
    /// weights, and to batch norm's scale and shift and the linear bias only with
    /// `weight_decay_bn`.
    fn named(&self) -> Vec<Named> {
        let layers = self.conv_bns();
        let bn = self.decay_bn;
        let mut out: Vec<Named> = layers
            .iter()
            .flat_map(|(p, l)| {
                [
                    Named::param(format!("{p}.conv.weight"), &l.w, true),
                    Named::param(format!("{p}.bn.weight"), &l.bn.gamma, bn),
                    Named::param(format!("{p}.bn.bias"), &l.bn.beta, bn),
                ]
            })
            .collect();
        out.extend([Named::matrix("fc.weight", &self.fc_w, true), Named::param("fc.bias", &self.fc_b, bn)]);
        out.extend(layers.iter().flat_map(|(p, l)| {
            [
                Named::buffer(format!("{p}.bn.running_mean"), &l.bn.running_mean),
                Named::buffer(format!("{p}.bn.running_var"), &l.bn.running_var),
            ]
        }));
        out
    }

    /// The logits of a batch `x` (n, c*h*w); training normalises with batch statistics
    /// and updates the running ones.
    fn forward(&self, x: &Tensor, mode: Mode<'_>) -> Result<Tensor> {
        self.run(x, mode.is_train())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    fn params(depth: u64, width: u64, shortcut: Shortcut) -> usize {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        Resnet::new((depth, width, shortcut), ((3, 32, 32), 10), false, &mut rng, &Device::Cpu)
            .unwrap()
            .parameter_count()
    }

    #[test]
    fn parameter_counts_are_the_papers() {
        // He et al. 2016, table 6 (0.27M for ResNet-20 ... 1.7M for ResNet-110), option A:
        // the counts of the widely used PyTorch reference (akamaster/pytorch_resnet_cifar10),
        // batch norm's scale and shift and the linear layer included.
        assert_eq!(params(20, 1, Shortcut::A), 269_722);
        assert_eq!(params(32, 1, Shortcut::A), 464_154);
        assert_eq!(params(44, 1, Shortcut::A), 658_586);
        assert_eq!(params(56, 1, Shortcut::A), 853_018);
        assert_eq!(params(110, 1, Shortcut::A), 1_727_962);
        // Option B adds two 1x1 projections with their batch norms.
        assert_eq!(params(20, 1, Shortcut::B), 269_722 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64));
        assert_eq!(
            blocks_per_stage(21).unwrap_err(),
            "must be 6n + 2 for n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), found 21"
        );
    }

    #[test]
    fn shapes_for_every_depth_and_both_shortcuts() {
        for depth in [8, 14, 20] {
            for shortcut in [Shortcut::A, Shortcut::B] {
                for width in [1, 2] {
                    let mut rng = ChaCha8Rng::seed_from_u64(depth);
                    let net =
                        Resnet::new((depth, width, shortcut), ((3, 32, 32), 7), false, &mut rng, &Device::Cpu).unwrap();
                    let x = Tensor::zeros((2, 3 * 32 * 32), candle_core::DType::F32, &Device::Cpu).unwrap();
                    for train in [true, false] {
                        assert_eq!(net.run(&x, train).unwrap().dims(), &[2, 7], "{depth} {shortcut:?} {width}");
                    }
                    assert_eq!(net.vars().len(), net.decay_mask().len());
                }
            }
        }
    }
}
