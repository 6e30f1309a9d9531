#!/usr/bin/python3
"""torch.optim reference trajectories for tests/core/train/optimizer_parity_test.

Writes into OUT:
  scenarios.txt          one line per scenario: its name, then key=value
                         hyper-parameters (Python float repr), the torch state
                         names it keeps and, with a schedule, the per-step lr
  initial/<p>.npy        the starting parameters
  gradients/<p>.npy      the 20 gradient sets, stacked: [20, *shape]
  <scenario>/<p>.npy     the parameter after each step: [20, *shape]
  <scenario>/<p>.<s>.npy the state tensor <s> after each step
  <scenario>/grad_norm.npy  clip_grad_norm_'s total_norm of each step (float32)
  torch_capability.txt   the CPU kernels torch dispatched to (AVX2, DEFAULT...)

Runs torch's single-tensor (non-foreach) CPU paths, one thread, parameters in
name order (the order ApplyStep takes them).
"""
import argparse
import math
import os

import numpy as np
import torch

STEPS = 20
MAX_GRAD_NORM = 0.3
# Names sort as the C++ std::map sorts them; W1 has ~1e4 elements (kept
# small: the reference files are written on every test run) and a
# tail beyond the eight-lane blocks, "scale" is a scalar.
SHAPES = {"W1": (37, 271), "W2": (3, 5, 7), "b1": (17,), "scale": ()}

SGD = {
    "sgd": dict(lr=0.1),
    "sgd_momentum": dict(lr=0.1, momentum=0.9),
    "sgd_dampening": dict(lr=0.1, momentum=0.9, dampening=0.3),
    "sgd_nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "sgd_weight_decay": dict(lr=0.1, weight_decay=0.01),
    "sgd_momentum_weight_decay": dict(lr=0.05, momentum=0.8, weight_decay=0.05),
}
ADAM = {
    "adam": dict(lr=0.01),
    "adam_weight_decay": dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw": dict(lr=0.01, weight_decay=0.1, decoupled=True),
    "adam_amsgrad": dict(lr=0.01, eps=1e-6, amsgrad=True),
    "adamw_amsgrad": dict(lr=0.02, betas=(0.85, 0.995), weight_decay=0.05,
                          amsgrad=True, decoupled=True),
}


def scenarios():
    """name -> (kind, hyper-parameters, max_grad_norm, lr schedule or None)."""
    out = {}
    for table, kind in ((SGD, "sgd"), (ADAM, "adam")):
        for name, hp in table.items():
            out[name] = (kind, hp, 0.0, None)
            out[name + "_clip"] = (kind, hp, MAX_GRAD_NORM, None)
    decay = [0.2 * 0.9**k for k in range(STEPS)]
    out["sgd_momentum_schedule"] = ("sgd", SGD["sgd_momentum"], 0.0, decay)
    warmup = [0.03 * min(1.0, (k + 1) / 5) * 0.95**k for k in range(STEPS)]
    out["adamw_schedule_clip"] = ("adam", ADAM["adamw"], MAX_GRAD_NORM, warmup)
    return out


def make_data():
    rng = np.random.default_rng(20240611)
    initial = {n: np.asarray(0.5 * rng.standard_normal(s), dtype=np.float32)
               for n, s in SHAPES.items()}
    # Total norms from ~0.1 to ~3: clipping at 1.0 acts on some steps only.
    scales = 10.0 ** rng.uniform(-3.5, -2.0, STEPS)
    grads = {n: np.stack([np.asarray(scales[k] * rng.standard_normal(s),
                                    dtype=np.float32) for k in range(STEPS)])
             for n, s in SHAPES.items()}
    grads["b1"][6] = 0  # one all-zero gradient
    for n in grads:  # and a step where every gradient is zero
        grads[n][12] = 0
    return initial, grads


def make_optimizer(kind, hp, params):
    hp = dict(hp)
    if kind == "sgd":
        return torch.optim.SGD(params, foreach=False, **hp)
    cls = torch.optim.AdamW if hp.pop("decoupled", False) else torch.optim.Adam
    hp.setdefault("weight_decay", 0.0)  # AdamW's default is the caller's
    return cls(params, foreach=False, **hp)


def manifest_line(name, kind, hp, max_grad_norm, schedule, state_names):
    fields = {"kind": kind, "max_grad_norm": max_grad_norm}
    for key, value in hp.items():
        if key == "betas":
            fields["beta1"], fields["beta2"] = value
        else:
            fields[key] = value
    fields["state"] = ",".join(state_names) or "-"
    if schedule is not None:
        fields["lr_schedule"] = ",".join(repr(float(v)) for v in schedule)
    return " ".join([name] + [
        f"{k}={repr(float(v)) if isinstance(v, float) else str(v).lower()}"
        for k, v in fields.items()])


def run(kind, hp, max_grad_norm, schedule, initial, grads):
    params = [torch.nn.Parameter(torch.from_numpy(np.array(initial[n])))
              for n in SHAPES]
    opt = make_optimizer(kind, hp, params)
    record = {n: [] for n in SHAPES}
    norms = []
    for k in range(STEPS):
        for p, n in zip(params, SHAPES):
            p.grad = torch.from_numpy(np.array(grads[n][k]))
        # Without clipping the norm is still reported; an infinite max_norm
        # multiplies every gradient by exactly 1.
        limit = max_grad_norm if max_grad_norm > 0 else math.inf
        norms.append(torch.nn.utils.clip_grad_norm_(params, limit).item())
        if schedule is not None:
            for group in opt.param_groups:
                group["lr"] = schedule[k]
        opt.step()
        for p, n in zip(params, SHAPES):
            record[n].append(p.detach().numpy().copy())
            for s, v in opt.state[p].items():
                if s != "step" and v is not None:
                    record.setdefault(f"{n}.{s}", []).append(v.numpy().copy())
    states = sorted({key.split(".", 1)[1] for key in record if "." in key})
    return record, np.array(norms, dtype=np.float32), states


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    torch.set_num_threads(1)
    initial, grads = make_data()
    for sub, arrays in (("initial", initial), ("gradients", grads)):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        for n, a in arrays.items():
            np.save(os.path.join(out, sub, n + ".npy"), a)
    lines = []
    for name, (kind, hp, max_norm, schedule) in scenarios().items():
        record, norms, states = run(kind, hp, max_norm, schedule, initial,
                                    grads)
        if max_norm > 0:
            clipped = int(np.sum(norms > max_norm))
            assert 0 < clipped < STEPS, f"{name}: clipping on {clipped} steps"
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for key, steps in record.items():
            np.save(os.path.join(out, name, key + ".npy"), np.stack(steps))
        np.save(os.path.join(out, name, "grad_norm.npy"), norms)
        lines.append(manifest_line(name, kind, hp, max_norm, schedule, states))
    with open(os.path.join(out, "scenarios.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # ApplyStep follows the AVX2 kernels (fused multiply-adds); the test
    # demands bitwise equality only when torch ran them.
    capability = "".join(line.split(":")[1].strip()
                         for line in torch.__config__.show().splitlines()
                         if "CPU capability usage" in line)
    with open(os.path.join(out, "torch_capability.txt"), "w") as f:
        f.write(capability + "\n")
    print(f"torch {torch.__version__} ({capability}): "
          f"{len(lines)} scenarios x {STEPS} steps in {out}")

if __name__ == "__main__":
    main()
