"""Training and inference images/s of the default encoder against the same network in PyTorch.

The default encoder is the ResNet-style CNN of ``ModelSpec()`` (3x3 stem, two residual stages
16 and 32 wide, mean+max pooling, 32-d embedding) with a one-output logistic head. Both
frameworks run the same network on the same 64x64x6 batches of 64 images with AdamW after
global-norm clipping; augmentation is off in both so only the network and the optimiser are
timed. Inference is the forward pass to the head (JAX's includes the per-band normalisation).
Both are timed in this process in interleaved rounds (each round runs every arm once, so both
see the same load on a shared machine); the ratio is the median over rounds of JAX/PyTorch
images per second (above 1 = JAX faster). The PyTorch arm is the careful one: as many threads
as XLA uses, the faster of NCHW and channels-last, eval mode and inference mode for inference.

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
from geocausal.encoders.train import (
    TrainConfig,
    _forward,
    make_optimizer,
    make_train_step,
    own_copy,
)


def xla_threads() -> int:
    """Intra-op threads XLA's CPU client uses (all cores this process may run on)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
    """``call(i)`` for :func:`seconds_per_call`: one training step, carrying the state along.

    The step donates its params and optimiser state, so it trains copies: ``params`` stays
    usable (e.g. for the inference timing).
    """
    state = [own_copy(params), own_copy(opt_state)]

    def call(i):
        state[0], state[1], loss = step(state[0], rest, state[1], batch, jax.random.key(i), lr)
        return loss

    return call


def jax_calls(x, y, spec):
    """``(train(i), infer(i))`` for the default encoder in JAX: the library's own jitted step
    (donated buffers, pure ``jax.jit`` over the split graph and state) and forward pass (with
    the per-band normalisation fused in); the batch is on the device once."""
    model = build_model(spec, 0)
    cfg = TrainConfig(flips=False, band_dropout=0.0, compute_dtype="float32")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = make_optimizer(cfg).init(params)
    step = make_train_step(graphdef, binary(), cfg, "float32")
    batch = jax.device_put({"x": jnp.asarray(x), "y": jnp.asarray(y)})
    train = train_call(step, params, rest, opt_state, batch, jnp.float32(1e-3))
    fwd = _forward(graphdef, "head", "float32", False, False)
    return train, (lambda i: fwd(params, rest, batch["x"], None, None))


def torch_calls(x, y, spec, threads):
    """``(train(i), infer(i), torch version, memory format)`` for the same network in PyTorch,
    written with care: as many intra-op threads as XLA uses, the memory format (NCHW or
    channels-last) that is faster here (picked by timing both), ``zero_grad(set_to_none)``,
    inference in ``eval()`` mode under ``torch.inference_mode()``."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(threads)

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

    lossf = nn.BCEWithLogitsLoss()
    yt = torch.from_numpy(y)

    def build(fmt):
        net = Net().to(memory_format=fmt)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        xt = xt.contiguous(memory_format=fmt)

        def train(i):
            net.train()
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xt), yt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            return loss

        def infer(i):
            net.eval()
            with torch.inference_mode():
                return net(xt)

        return train, infer

    best = None
    for name, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
        train, infer = build(fmt)
        dt = plain_seconds(train, 3) + plain_seconds(infer, 3)
        if best is None or dt < best[0]:
            best = (dt, train, infer, name)
    return best[1], best[2], torch.__version__, best[3]


def plain_seconds(call, steps: int, warmup: int = 1) -> float:
    """Mean wall seconds of ``call(i)`` (synchronous) after ``warmup`` untimed calls."""
    for i in range(warmup):
        call(i)
    t = time.perf_counter()
    for i in range(steps):
        call(i)
    return (time.perf_counter() - t) / steps


def interleaved(calls: dict, steps: int, rounds: int) -> dict:
    """Images/s per arm as the median over ``rounds``; in each round every arm runs ``steps``
    timed calls one after the other, so both frameworks see the same machine load (on a shared
    machine a sequential A-then-B timing measures the neighbours, not the frameworks).

    Returns ``{name: [seconds per call in each round]}``.
    """
    out = {k: [] for k in calls}
    for _ in range(rounds):
        for name, (call, is_jax) in calls.items():
            out[name].append(seconds_per_call(call, steps, 1) if is_jax
                             else plain_seconds(call, steps))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="quick run (few steps, 32x32)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--force", action="store_true",
                    help="record even when other processes load the machine")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    size, steps, rounds = (32, 2, 2) if args.small else (64, 5, args.rounds)
    batch, bands = 64, 6
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, bands)).astype("float32")
    y = rng.integers(0, 2, (batch, 1)).astype("float32")
    spec = ModelSpec(encoder="cnn", in_bands=bands, n_outputs=1)
    threads = xla_threads()
    jtrain, jinfer = jax_calls(x, y, spec)
    ttrain, tinfer, tver, fmt = torch_calls(x, y, spec, threads)
    sec = interleaved({"jax train": (jtrain, True), "torch train": (ttrain, False),
                       "jax inference": (jinfer, True), "torch inference": (tinfer, False)},
                      steps, rounds)
    r_train = [t / j for j, t in zip(sec["jax train"], sec["torch train"], strict=True)]
    r_inf = [t / j for j, t in zip(sec["jax inference"], sec["torch inference"], strict=True)]
    jt, tt = batch / np.median(sec["jax train"]), batch / np.median(sec["torch train"])
    ji, ti = batch / np.median(sec["jax inference"]), batch / np.median(sec["torch inference"])
    rt, ri = float(np.median(r_train)), float(np.median(r_inf))
    print(f"default encoder: CNN widths={spec.widths} embed_dim={spec.embed_dim}; "
          f"{size}x{size}x{bands}, batch {batch}; {rounds} interleaved rounds of {steps} "
          f"steps per arm; cpu cores {os.cpu_count()}")
    print(f"jax {jax.__version__} ({jax.default_backend()}, {threads} threads), torch {tver} "
          f"({threads} threads, {fmt})")
    print(f"{'':10s}{'jax img/s':>12s}{'torch img/s':>14s}{'ratio':>8s}  per-round ratios")
    print(f"{'train':10s}{jt:12.1f}{tt:14.1f}{rt:8.2f}  "
          + " ".join(f"{v:.2f}" for v in r_train))
    print(f"{'inference':10s}{ji:12.1f}{ti:14.1f}{ri:8.2f}  "
          + " ".join(f"{v:.2f}" for v in r_inf))
    # PyTorch's threads spin and collapse when other processes share the cores (a 0.25x run
    # became 2.3x at load ~5), so a busy machine's ratio is not recorded
    load = load0  # before this run (its own threads raise the average during it)
    print(f"load average (1 min) before the run {load:.2f} on {threads} cores")
    busy = load > 0.75 * threads + 0.5
    if busy and not args.small:
        print("NOT RECORDED: other processes load the machine; rerun when it is quiet "
              "(or --force)")
    if not args.small and (not busy or args.force):
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import record

        what = f"default CNN, {size}x{size}x{bands}, batch {batch}, {jax.default_backend()}"
        peer = f"same network in PyTorch {tver} ({threads} threads, {fmt}, eval+inference_mode)"
        record(f"encoder training, {what}", peer, rt,
               result=f"{jt:.0f} vs {tt:.0f} images/s (median of {rounds} interleaved rounds; "
                      f"load {load:.1f})")
        record(f"encoder inference, {what}", peer, ri,
               result=f"{ji:.0f} vs {ti:.0f} images/s (median of {rounds} interleaved rounds; "
                      f"load {load:.1f})")


if __name__ == "__main__":
    main()
