//! Every model kind through its fast path (runner's CPU kernels) and through plain candle
//! ops from the same initial weights: the same outputs, step-0 gradients and 20-step loss
//! curve to float tolerance, at one and two threads.

use super::network::{Batch, InMemory, Kernels, Loss, Step};
use super::{Activation, CnnSpec, MlpSpec, ModelSpec, ResnetSpec, Shortcut, TransformerSpec, build};
use crate::model::transformer::DecayOn;
use crate::optim::{Optimizer, OptimizerSpec};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type Rows = InMemory;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i + seed) * 7919 + 13) % 10_007) as f32 / 5003.5 - 1.0).collect()
}

fn image_rows(n: usize, features: usize, classes: u32) -> Rows {
    let c: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % classes).collect();
    InMemory::rows(values(n * features, 1), features, c).unwrap()
}

fn token_rows(n: usize, t: usize, vocab: u32) -> Rows {
    let tokens: Vec<u32> = (0..n * (t + 1)).map(|i| ((i * 31 + 7) % 97) as u32 % vocab).collect();
    let x: Vec<u32> = (0..n).flat_map(|r| tokens[r * (t + 1)..r * (t + 1) + t].to_vec()).collect();
    let y: Vec<u32> = (0..n).flat_map(|r| tokens[r * (t + 1) + 1..(r + 1) * (t + 1)].to_vec()).collect();
    InMemory::tokens(x, y, n, t).unwrap()
}

/// (evaluation outputs, step-0 gradients, 20 losses) of `spec` on `kernels`.
fn curve(
    spec: &ModelSpec,
    io: (usize, usize, Option<(usize, usize, usize)>),
    rows: &Rows,
    kernels: Kernels,
    threads: usize,
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<f64>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let net = build(spec, io.0, io.1, io.2, 11, kernels, &candle_core::Device::Cpu).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut outputs = Vec::new();
        net.outputs(rows.x(), &mut |t| {
            outputs.extend(flat(&t));
            Ok(())
        })
        .unwrap();
        let vars = net.vars();
        let opt = OptimizerSpec::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 5e-4 };
        let mut optimizer = Optimizer::new(&opt, vars.clone()).unwrap().with_decay_mask(net.decay_mask()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut grads, mut losses, mut first) = (GradStore::default(), Vec::new(), Vec::new());
        for step in 0..20 {
            let mut how = Step { loss: Loss::CrossEntropy, micro_batch: rows.len(), threads, dropout: &mut rng };
            losses.push(net.loss_and_grads(rows, &mut how, &mut grads).unwrap().value().unwrap());
            if step == 0 {
                let named = net.named();
                first = named.iter().filter(|n| n.trainable).map(|n| flat(grads.get(&n.var).unwrap())).collect();
            }
            optimizer.step(&grads, 0.02).unwrap();
        }
        (outputs, first, losses)
    })
}

/// The fast and the plain path of `spec` agree within `tol` (relative to each compared
/// quantity's largest value), at one and two threads.
fn agree(spec: &ModelSpec, io: (usize, usize, Option<(usize, usize, usize)>), rows: &Rows, tol: f64) {
    for threads in [1, 2] {
        let fast = curve(spec, io, rows, Kernels::Auto, threads);
        let plain = curve(spec, io, rows, Kernels::Plain, threads);
        let close = |what: &str, a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs())) as f64;
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
            assert!(worst <= tol * scale, "{spec:?} at {threads} threads, {what}: differs by {worst:e} of {scale:e}");
        };
        close("outputs", &fast.0, &plain.0);
        assert_eq!(fast.1.len(), plain.1.len());
        for (i, (a, b)) in fast.1.iter().zip(&plain.1).enumerate() {
            close(&format!("gradient {i}"), a, b);
        }
        for (step, (a, b)) in fast.2.iter().zip(&plain.2).enumerate() {
            assert!((a - b).abs() <= tol * b.abs(), "{spec:?} at {threads} threads, loss at step {step}: {a} vs {b}");
        }
        // The curve goes down: the steps train.
        assert!(plain.2[19] < plain.2[0], "{:?}", plain.2);
    }
}

#[test]
fn the_mlp_fast_and_plain_agree() {
    let spec = ModelSpec::Mlp(MlpSpec { hidden: vec![16, 12], activation: Activation::Relu, dropout: 0.0 });
    agree(&spec, (20, 5, None), &image_rows(24, 20, 5), 1e-4);
}

#[test]
fn the_cnn_fast_and_plain_agree() {
    let spec = ModelSpec::Cnn(CnnSpec {
        channels: vec![4, 6],
        kernel_size: 3,
        pool: true,
        hidden: vec![10],
        activation: Activation::Relu,
        dropout: 0.0,
    });
    agree(&spec, (64, 4, Some((1, 8, 8))), &image_rows(12, 64, 4), 1e-4);
}

#[test]
fn resnets_with_either_shortcut_fast_and_plain_agree() {
    for shortcut in [Shortcut::A, Shortcut::B] {
        let spec = ModelSpec::Resnet(ResnetSpec { depth: 8, width: 1, shortcut, weight_decay_bn: false });
        agree(&spec, (3 * 8 * 8, 10, Some((3, 8, 8))), &image_rows(6, 3 * 8 * 8, 10), 1e-3);
    }
}

#[test]
fn the_transformer_fast_and_plain_agree() {
    let spec = ModelSpec::Transformer(TransformerSpec {
        layers: 2,
        heads: 2,
        d_model: 16,
        context: None,
        dropout: 0.0,
        bias: true,
        weight_decay_on: DecayOn::Matrices,
    });
    agree(&spec, (8, 13, None), &token_rows(4, 8, 13), 1e-4);
}

#[test]
fn the_gpus_step_gives_the_cpus_loss_and_gradients() {
    // What a GPU runs (the loss summed on the device and read later), here on the CPU,
    // against the CPU's autograd step: whole batches and micro-batches (accumulation).
    use super::network::{StepLoss, autograd_loss_and_grads, device_loss_and_grads};
    let spec = ModelSpec::Mlp(MlpSpec { hidden: vec![16], activation: Activation::Relu, dropout: 0.0 });
    let rows = image_rows(24, 20, 5);
    for micro_batch in [24, 10] {
        let net = build(&spec, 20, 5, None, 11, Kernels::Plain, &Device::Cpu).unwrap();
        let (mut a, mut b) = (GradStore::default(), GradStore::default());
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut how = Step { loss: Loss::CrossEntropy, micro_batch, threads: 1, dropout: &mut rng };
        let host = autograd_loss_and_grads(&*net, &rows, &mut how, &mut a, false).unwrap();
        let there = device_loss_and_grads(&*net, &rows, &mut how, &mut b).unwrap();
        assert!(matches!(there, StepLoss::Pending(_)));
        let (host, there) = (host.value().unwrap(), there.value().unwrap());
        assert!((host - there).abs() <= 1e-6 * host.abs(), "micro-batch {micro_batch}: {host} vs {there}");
        for var in net.vars() {
            let (x, y) = (a.get(&var).unwrap(), b.get(&var).unwrap());
            let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-6, "micro-batch {micro_batch}: a gradient differs by {diff}");
        }
    }
}
