"""torch's own scheduler objects, for generate.py (run in a process of their own: torch and
TensorFlow in one process abort). Prints a JSON list of cases."""
import json
import torch

cases = []


def add(name, schedule_toml, steps, values, source, extra=None):
    cases.append({"name": name, "schedule": schedule_toml, "steps": list(steps), "values": values,
                  "source": source, "extra": extra})


# PyTorch's own objects: ReduceLROnPlateau's threshold modes, CosineAnnealingLR past T_max.


def torch_optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))], lr=lr)


def torch_plateau_object(metrics, **kw):
    opt = torch_optimizer(1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out

# Chosen so that "abs" and "rel" decide differently: small absolute gains on a large loss.
loss_abs = [10.0, 9.995, 9.99, 9.985, 9.5, 9.49, 9.48, 9.47, 9.46, 9.0, 8.999, 8.998]
# Accuracy in percent: gains of 0.01 pass the absolute threshold and fail the relative one.
acc_abs = [50.0, 50.01, 50.02, 50.03, 51.0, 51.01, 51.02, 51.03, 51.04, 52.0]
for mode_name, metrics, monitor, tmode in (
    ("min", loss_abs, "val_loss", "abs"),
    ("min", loss_abs, "val_loss", "rel"),
    ("max", acc_abs, "val_accuracy", "abs"),
    ("max", acc_abs, "val_accuracy", "rel"),
):
    add(f"reduce_on_plateau compat=torch threshold_mode={tmode} mode={mode_name}",
        f'kind = "reduce_on_plateau"\nlearning_rate = 1.0\nmonitor = "{monitor}"\nfactor = 0.5\npatience = 1\n'
        f'cooldown = 1\nmin_delta = 0.004\ncompat = "torch"\nthreshold_mode = "{tmode}"',
        range(1, len(metrics) + 1),
        torch_plateau_object(metrics, mode=mode_name, factor=0.5, patience=1, cooldown=1, threshold=0.004,
                             threshold_mode=tmode),
        "torch-scheduler", {"metrics": metrics})


def torch_cosine_annealing(lr, t_max, eta_min, steps):
    opt = torch_optimizer(lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out

# Past T_max the rate climbs back up (period 2 * T_max); every step of three periods.
for t_max, eta_min in ((10, 0.001), (7, 0.0)):
    n = 6 * t_max + 3
    add(f"cosine_annealing t_max={t_max} eta_min={eta_min}",
        f'kind = "cosine_annealing"\nlearning_rate = 0.1\nt_max = {t_max}\neta_min = {eta_min}',
        range(n), torch_cosine_annealing(0.1, t_max, eta_min, n), "torch-scheduler")


json.dump(cases, __import__("sys").stdout)
