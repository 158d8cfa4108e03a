"""Reference learning rates for tests/schedule_reference.rs, from the upstream code.

Run:  python3 tests/reference/generate.py > tests/reference/schedules.json
Needs tensorflow-cpu 2.21 (which brings keras 3.15) for the Keras-computed cases and torch
2.15 for the torch-scheduler cases (`pip install tensorflow-cpu torch numpy` in a venv).

How each number is obtained (the "source" field of each case says which):
- keras-f64: the Keras 3 schedule object itself, every parameter passed as np.float64 so
  the whole computation is float64 (a bare Python float would be rounded to float32 first).
- keras-callback: the real keras.callbacks.ReduceLROnPlateau on a real model's optimizer,
  fed the metrics one epoch at a time; rates chosen exactly representable in float32,
  so Keras' float32 variable holds them exactly.
- tf-formula-f64: TensorFlow v1 linear_cosine / natural_exp (float32-only in TF, see
  SCHEDULE_REFERENCE.md) transcribed line by line from legacy_learning_rate_decay.py /
  learning_rate_schedule.py and evaluated in Python float64.
- torch-formula-f64: torch/optim/lr_scheduler.py 2.15 closed forms (StepLR, MultiStepLR,
  LinearLR, OneCycleLR._anneal_func and phases, CyclicLR.get_lr), evaluated in float64.
- torch-scheduler: torch's own scheduler objects (ReduceLROnPlateau with threshold_mode,
  CosineAnnealingLR in its chainable form) on an SGD optimizer, the rate read from
  param_groups after each step (Python floats: float64).
- expected-restart: a step where Keras 3 float64 misfloors the restart index (documented
  upstream defect); the value is the restart peak lr0*((1-alpha)*m_mul**i + alpha).
"""
import json, math, os, sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np
import keras

f = np.float64
S = keras.optimizers.schedules
cases = []


def add(name, schedule_toml, steps, values, source, extra=None):
    case = {"name": name, "schedule": schedule_toml, "source": source,
            "cases": [[int(s), float(v)] for s, v in zip(steps, values)]}
    if extra:
        case.update(extra)
    cases.append(case)


def keras_values(sched, steps):
    return [float(sched(f(s))) for s in steps]


# 1. piecewise constant: changes at boundary + 1.
steps = [0, 99, 100, 101, 199, 200, 201, 5000]
add("piecewise_constant", 'kind = "piecewise_constant"\nboundaries = [100, 200]\nvalues = [1.0, 0.5, 0.1]',
    steps, keras_values(S.PiecewiseConstantDecay([f(100), f(200)], [f(1.0), f(0.5), f(0.1)]), steps), "keras-f64")

# 2. exponential, smooth and staircase.
steps = [0, 1, 99, 100, 101, 250, 1000, 12345]
for stair in (False, True):
    add(f"exponential_decay staircase={stair}",
        f'kind = "exponential_decay"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.96\nstaircase = {str(stair).lower()}',
        steps, keras_values(S.ExponentialDecay(f(0.1), f(100), f(0.96), staircase=stair), steps), "keras-f64")

# 3. natural exp: TF builds ExponentialDecay(lr0, ds, exp(-decay_rate)); float32-only in TF.
for stair in (False, True):
    vals = []
    for s in steps:
        p = s / 100.0
        if stair:
            p = math.floor(p)
        vals.append(0.1 * math.exp(-0.5 * p))
    add(f"natural_exp_decay staircase={stair}",
        f'kind = "natural_exp_decay"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.5\nstaircase = {str(stair).lower()}',
        steps, vals, "tf-formula-f64")

# 4. polynomial, with and without cycle, power 1 and 0.5.
steps = [0, 1, 50, 99, 100, 101, 150, 200, 201, 1000]
for cycle in (False, True):
    for power in (1.0, 0.5):
        add(f"polynomial_decay cycle={cycle} power={power}",
            f'kind = "polynomial_decay"\nlearning_rate = 0.1\ndecay_steps = 100\nend_learning_rate = 0.001\npower = {power}\ncycle = {str(cycle).lower()}',
            steps, keras_values(S.PolynomialDecay(f(0.1), f(100), f(0.001), power=f(power), cycle=cycle), steps), "keras-f64")
add("polynomial_decay defaults", 'kind = "polynomial_decay"\nlearning_rate = 0.1\ndecay_steps = 100',
    steps, keras_values(S.PolynomialDecay(f(0.1), f(100), f(0.0001), power=f(1.0)), steps), "keras-f64")

# 5. inverse time.
steps = [0, 1, 99, 100, 101, 250, 1000, 12345]
for stair in (False, True):
    add(f"inverse_time_decay staircase={stair}",
        f'kind = "inverse_time_decay"\nlearning_rate = 0.1\ndecay_steps = 100\ndecay_rate = 0.5\nstaircase = {str(stair).lower()}',
        steps, keras_values(S.InverseTimeDecay(f(0.1), f(100), f(0.5), staircase=stair), steps), "keras-f64")

# 6. cosine: past decay_steps it holds alpha * lr.
steps = [0, 1, 500, 999, 1000, 1001, 2000, 5000]
for alpha in (0.0, 0.1):
    add(f"cosine_decay alpha={alpha}",
        f'kind = "cosine_decay"\nlearning_rate = 0.1\ndecay_steps = 1000\nalpha = {alpha}',
        steps, keras_values(S.CosineDecay(f(0.1), f(1000), alpha=f(alpha)), steps), "keras-f64")

# 7. cosine restarts: t_mul = 1 and != 1, m_mul, alpha; exact restart steps.
steps = [0, 1, 50, 99, 100, 101, 150, 199, 200, 299, 300, 301, 700, 701, 1500]
for t_mul, m_mul, alpha in ((1.0, 1.0, 0.0), (2.0, 1.0, 0.0), (2.0, 0.5, 0.1), (1.5, 0.9, 0.05)):
    add(f"cosine_decay_restarts t_mul={t_mul} m_mul={m_mul} alpha={alpha}",
        f'kind = "cosine_decay_restarts"\nlearning_rate = 0.1\nfirst_decay_steps = 100\nt_mul = {t_mul}\nm_mul = {m_mul}\nalpha = {alpha}',
        steps, keras_values(S.CosineDecayRestarts(f(0.1), f(100), t_mul=f(t_mul), m_mul=f(m_mul), alpha=f(alpha)), steps),
        "keras-f64")
# t_mul = 3, first = 1: restarts at 1, 4, 13, 40, 121, 364; Keras f64 misfloors at 121.
steps = [0, 1, 2, 4, 13, 40, 41, 364]
sched = S.CosineDecayRestarts(f(0.1), f(1), t_mul=f(3.0), m_mul=f(0.5), alpha=f(0.0))
add("cosine_decay_restarts t_mul=3 first=1",
    'kind = "cosine_decay_restarts"\nlearning_rate = 0.1\nfirst_decay_steps = 1\nt_mul = 3.0\nm_mul = 0.5',
    steps, keras_values(sched, steps), "keras-f64")
assert float(sched(f(121))) == 0.0, "Keras no longer misfloors at 121: use keras-f64 for it"
add("cosine_decay_restarts t_mul=3 first=1 misfloored restart",
    'kind = "cosine_decay_restarts"\nlearning_rate = 0.1\nfirst_decay_steps = 1\nt_mul = 3.0\nm_mul = 0.5',
    [121], [0.1 * 0.5 ** 5], "expected-restart")

# 8. linear cosine (TF only, float32 only): transcribed from TF in float64.
def linear_cosine(lr0, ds, s, num_periods=0.5, alpha=0.0, beta=0.001):
    s = min(s, ds)
    linear = (ds - s) / ds
    cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_periods * s / ds))
    return lr0 * ((alpha + linear) * cosine + beta)

steps = [0, 1, 250, 500, 999, 1000, 1001, 3000]
add("linear_cosine_decay defaults", 'kind = "linear_cosine_decay"\nlearning_rate = 0.1\ndecay_steps = 1000',
    steps, [linear_cosine(0.1, 1000, s) for s in steps], "tf-formula-f64")
add("linear_cosine_decay periods=2 alpha=0.1 beta=0.01",
    'kind = "linear_cosine_decay"\nlearning_rate = 0.1\ndecay_steps = 1000\nnum_periods = 2.0\nalpha = 0.1\nbeta = 0.01',
    steps, [linear_cosine(0.1, 1000, s, 2.0, 0.1, 0.01) for s in steps], "tf-formula-f64")
# 9. noisy linear cosine with zero variance is linear cosine exactly (TF, same formula).
add("noisy_linear_cosine_decay zero variance",
    'kind = "noisy_linear_cosine_decay"\nlearning_rate = 0.1\ndecay_steps = 1000\ninitial_variance = 0.0',
    steps, [linear_cosine(0.1, 1000, s) for s in steps], "tf-formula-f64")

# 10. reduce on plateau, through the real Keras callback.
def keras_plateau(metrics, **kw):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    cb = keras.callbacks.ReduceLROnPlateau(**kw)
    cb.set_model(model)
    cb.on_train_begin()
    out = []
    for epoch, m in enumerate(metrics):
        cb.on_epoch_end(epoch, {kw.get("monitor", "val_loss"): m})
        out.append(float(np.asarray(model.optimizer.learning_rate)))
    return out

loss = [1.0, 0.9, 0.95, 0.9, 0.92, 0.91, 0.93, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
for kw, toml in (
    (dict(factor=0.5, patience=2), "factor = 0.5\npatience = 2"),
    (dict(factor=0.5, patience=2, cooldown=2), "factor = 0.5\npatience = 2\ncooldown = 2"),
    (dict(factor=0.5, patience=1, min_lr=0.125), "factor = 0.5\npatience = 1\nmin_lr = 0.125"),
    (dict(factor=0.5, patience=2, min_delta=0.06), "factor = 0.5\npatience = 2\nmin_delta = 0.06"),
):
    add(f"reduce_on_plateau {kw}", f'kind = "reduce_on_plateau"\nlearning_rate = 1.0\n{toml}',
        range(1, len(loss) + 1), keras_plateau(loss, **kw), "keras-callback", {"metrics": loss})
acc = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7]
# Keras 3 cannot infer the mode of a bare logged metric, so it is told "max"; ours infers it.
add("reduce_on_plateau val_accuracy (auto = max)",
    'kind = "reduce_on_plateau"\nlearning_rate = 1.0\nmonitor = "val_accuracy"\nfactor = 0.5\npatience = 2',
    range(1, len(acc) + 1), keras_plateau(acc, monitor="val_accuracy", mode="max", factor=0.5, patience=2), "keras-callback",
    {"metrics": acc})

# PyTorch plateau (compat = "torch"): transcription of ReduceLROnPlateau.step, rel threshold.
def torch_plateau(metrics, lr, factor, patience, threshold, cooldown, min_lr, eps=1e-8):
    best, bad, cd, out = math.inf, 0, 0, []
    for m in metrics:
        if m < best * (1 - threshold):
            best, bad = m, 0
        else:
            bad += 1
        if cd > 0:
            cd -= 1
            bad = 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > eps:
                lr = new
            cd, bad = cooldown, 0
        out.append(lr)
    return out

add("reduce_on_plateau compat=torch",
    'kind = "reduce_on_plateau"\nlearning_rate = 1.0\nfactor = 0.5\npatience = 2\ncooldown = 1\ncompat = "torch"',
    range(1, len(loss) + 1), torch_plateau(loss, 1.0, 0.5, 2, 1e-4, 1, 0.0), "torch-formula-f64", {"metrics": loss})

# PyTorch's own objects (ReduceLROnPlateau's threshold modes, CosineAnnealingLR past
# T_max), computed by torch_cases.py in a process of its own: torch and TensorFlow loaded
# into one process abort (their LLVMs collide).
import subprocess
here = os.path.dirname(os.path.abspath(__file__))
for c in json.loads(subprocess.run([sys.executable, os.path.join(here, "torch_cases.py")],
                                   check=True, capture_output=True, text=True).stdout):
    add(c["name"], c["schedule"], c["steps"], c["values"], c["source"], c.get("extra"))

# PyTorch families, from the closed forms in torch/optim/lr_scheduler.py.
steps = [0, 1, 29, 30, 31, 59, 60, 61, 200]
add("step", 'kind = "step"\nlearning_rate = 0.1\nstep_size = 30\ngamma = 0.5', steps,
    [0.1 * 0.5 ** (e // 30) for e in steps], "torch-formula-f64")
add("multistep", 'kind = "multistep"\nlearning_rate = 0.1\nmilestones = [30, 60, 60]\ngamma = 0.1', steps,
    [0.1 * 0.1 ** sum(1 for m in (30, 60, 60) if m <= e) for e in steps], "torch-formula-f64")
steps = [0, 1, 2, 5, 9, 10, 11, 100]
add("linear", 'kind = "linear"\nlearning_rate = 0.1\nstart_factor = 0.25\nend_factor = 1.0\ntotal_steps = 10', steps,
    [0.1 * (0.25 + (1.0 - 0.25) * min(e, 10) / 10) for e in steps], "torch-formula-f64")


def one_cycle(e, max_lr, T, pct=0.3, anneal="cos", div=25.0, final_div=1e4, three=False):
    init = max_lr / div
    mn = init / final_div
    if three:
        phases = [(pct * T - 1, init, max_lr), (2 * pct * T - 2, max_lr, init), (T - 1, init, mn)]
    else:
        phases = [(pct * T - 1, init, max_lr), (T - 1, max_lr, mn)]
    start = 0
    for i, (end, a, b) in enumerate(phases):
        if e <= end or i == len(phases) - 1:
            p = (e - start) / (end - start)
            if anneal == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1)
            return (b - a) * p + a
        start = end

steps = [0, 1, 29, 30, 31, 50, 98, 99]
for anneal, three in (("cos", False), ("linear", False), ("cos", True)):
    add(f"one_cycle anneal={anneal} three_phase={three}",
        f'kind = "one_cycle"\nmax_lr = 0.1\ntotal_steps = 100\nanneal = "{anneal}"\nthree_phase = {str(three).lower()}',
        steps, [one_cycle(e, 0.1, 100, anneal=anneal, three=three) for e in steps], "torch-formula-f64")


def cyclic(e, base, mx, up, down, mode, gamma=1.0):
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + e / total)
    x = 1.0 + e / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    g = {"triangular": 1.0, "triangular2": 1 / (2.0 ** (cycle - 1)), "exp_range": gamma ** e}[mode]
    return base + (mx - base) * scale * g

steps = [0, 1, 10, 19, 20, 21, 39, 40, 50, 60, 95, 120]
for mode in ("triangular", "triangular2", "exp_range"):
    add(f"cyclic mode={mode}",
        f'kind = "cyclic"\nbase_lr = 0.01\nmax_lr = 0.1\nstep_size_up = 20\nstep_size_down = 30\nmode = "{mode}"\ngamma = 0.99',
        steps, [cyclic(e, 0.01, 0.1, 20, 30, mode, 0.99) for e in steps], "torch-formula-f64")

json.dump(cases, sys.stdout, indent=1)
print()
