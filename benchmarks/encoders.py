"""Training and inference images/s of the default encoder against the same network in PyTorch.

The default encoder is the ResNet-style CNN of ``ModelSpec()`` (3x3 stem, two residual stages
16 and 32 wide, mean+max pooling, 32-d embedding) with a one-output logistic head. Both
frameworks run the same network on the same 64x64x6 batches of 64 images with AdamW after
global-norm clipping; augmentation is off in both so only the network and the optimiser are
timed. Inference is the forward pass to the head. Both are timed in this process, one after
the other; the ratio is JAX/PyTorch images per second (above 1 = JAX faster).

PyTorch is imported only here (``pip install torch``, CPU wheel); it is not a dependency.

Run: ``python benchmarks/encoders.py`` (``--small`` for a quick check).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from geocausal.encoders.modules import ModelSpec, build_model
from geocausal.encoders.objectives import binary
from geocausal.encoders.train import TrainConfig, _forward, make_optimizer, make_train_step


def seconds_per_call(call, steps: int, warmup: int = 2) -> float:
    """Mean wall seconds of ``call(i)`` over ``steps`` calls after ``warmup`` untimed ones.

    ``call`` returns JAX arrays; the timer waits for them, so asynchronous dispatch is counted.
    """
    out = None
    for i in range(warmup):
        out = call(i)
    jax.block_until_ready(out)
    t = time.perf_counter()
    for i in range(steps):
        out = call(i)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / steps


def train_call(step, params, rest, opt_state, batch, lr):
    """``call(i)`` for :func:`seconds_per_call`: one training step, carrying the state along."""
    state = [params, opt_state]

    def call(i):
        state[0], state[1], loss = step(state[0], rest, state[1], batch, jax.random.key(i), lr)
        return loss

    return call


def bench_jax(x, y, steps, spec):
    model = build_model(spec, 0)
    cfg = TrainConfig(flips=False, band_dropout=0.0, compute_dtype="float32")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = make_optimizer(cfg).init(params)
    step = make_train_step(graphdef, binary(), cfg, "float32")
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    dt_train = seconds_per_call(train_call(step, params, rest, opt_state, batch,
                                           jnp.float32(1e-3)), steps)
    fwd = _forward(graphdef, "head", "float32", False, False)
    dt_infer = seconds_per_call(lambda i: fwd(params, rest, batch["x"], None, None), steps)
    return x.shape[0] / dt_train, x.shape[0] / dt_infer


def bench_torch(x, y, steps, spec):
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.skip = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

        def forward(self, v):
            h = self.conv2(torch.relu(self.conv1(v)))
            return torch.relu(h + (v if self.skip is None else self.skip(v)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = spec.widths
            self.stem = nn.Conv2d(spec.in_bands, w[0], 3, 1, 1)
            blocks, cin = [], w[0]
            for c in w:
                blocks.append(Block(cin, c, 2))
                cin = c
            self.blocks = nn.Sequential(*blocks)
            self.proj = nn.Linear(2 * cin, spec.embed_dim)
            self.head = nn.Linear(spec.embed_dim, 1)

        def forward(self, v):
            h = self.blocks(torch.relu(self.stem(v)))
            h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
            return self.head(self.proj(h))

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    lossf = nn.BCEWithLogitsLoss()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(xt), yt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    train = steps * x.shape[0] / (time.perf_counter() - t)
    with torch.inference_mode():
        for _ in range(2):
            net(xt)
        t = time.perf_counter()
        for _ in range(steps):
            net(xt)
        infer = steps * x.shape[0] / (time.perf_counter() - t)
    return train, infer, torch.__version__, torch.get_num_threads()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="quick run (few steps, 32x32)")
    args = ap.parse_args(argv)
    size, steps = (32, 3) if args.small else (64, 20)
    batch, bands = 64, 6
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, bands)).astype("float32")
    y = rng.integers(0, 2, (batch, 1)).astype("float32")
    spec = ModelSpec(encoder="cnn", in_bands=bands, n_outputs=1)
    jt, ji = bench_jax(x, y, steps, spec)
    tt, ti, tver, threads = bench_torch(x, y, steps, spec)
    print(f"default encoder: CNN widths={spec.widths} embed_dim={spec.embed_dim}; "
          f"{size}x{size}x{bands}, batch {batch}, {steps} timed steps; cpu cores {os.cpu_count()}")
    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {tver} ({threads} threads)")
    print(f"{'':10s}{'jax img/s':>12s}{'torch img/s':>14s}{'ratio':>8s}")
    print(f"{'train':10s}{jt:12.1f}{tt:14.1f}{jt / tt:8.2f}")
    print(f"{'inference':10s}{ji:12.1f}{ti:14.1f}{ji / ti:8.2f}")
    if not args.small:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import record

        what = f"default CNN, {size}x{size}x{bands}, batch {batch}, {jax.default_backend()}"
        record(f"encoder training, {what}", f"same network in PyTorch {tver}", jt / tt,
               result=f"{jt:.0f} vs {tt:.0f} images/s")
        record(f"encoder inference, {what}", f"same network in PyTorch {tver}", ji / ti,
               result=f"{ji:.0f} vs {ti:.0f} images/s")


if __name__ == "__main__":
    main()
