"""Where the default CNN's CPU time goes: each convolution of it in XLA against PyTorch (oneDNN).

``benchmarks/encoders.py`` times the whole training step; this script times each convolution of
the default encoder (``ModelSpec()``: 3x3 stem 6 -> 16 at 64 x 64, then two residual stages,
16 and 32 wide, each with a stride-2 3x3 convolution, a 3x3 convolution and a stride-2 1x1
skip) on batches of 64, forward alone and forward + backward (the gradients training needs:
kernel and input, except the stem, whose input needs no gradient), in the same process and
interleaved rounds, and prints the milliseconds and the ratio PyTorch / XLA (above 1: XLA
faster). The JAX arm uses the library's own convolution
(``encoders.conv.fast_conv``: other formulations
for the strided ones). It also tries the XLA CPU flags that could route convolutions
elsewhere (``--flags``: one subprocess per flag set, whole-network training step only).

Run: ``python benchmarks/encoder_layers.py`` (``--rounds 5``; ``--flags`` adds the flag sweep).
PyTorch is a benchmark-only dependency (``pip install torch``, CPU wheel).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

LAYERS = (  # (name, input size, cin, cout, kernel, stride)
    ("stem 3x3", 64, 6, 16, 3, 1),
    ("stage 1 conv1 3x3 /2", 64, 16, 16, 3, 2),
    ("stage 1 conv2 3x3", 32, 16, 16, 3, 1),
    ("stage 1 skip 1x1 /2", 64, 16, 16, 1, 2),
    ("stage 2 conv1 3x3 /2", 32, 16, 32, 3, 2),
    ("stage 2 conv2 3x3", 16, 32, 32, 3, 1),
    ("stage 2 skip 1x1 /2", 32, 16, 32, 1, 2),
)
FLAG_SETS = ("", "--xla_cpu_use_onednn=true", "--xla_cpu_use_xnnpack=true",
             "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
             "--xla_cpu_experimental_onednn_custom_call=true",
             "--xla_cpu_use_thunk_runtime=false", "--xla_cpu_enable_fast_math=true",
             "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME")


def jax_arms(size, cin, cout, k, stride, batch):
    """``(forward, forward+backward)`` callables for one convolution in JAX (jitted)."""
    import jax

    from geocausal.encoders.conv import fast_conv

    x = jax.random.normal(jax.random.key(0), (batch, size, size, cin))
    w = jax.random.normal(jax.random.key(1), (k, k, cin, cout)) * 0.1

    def f(x, w):
        return fast_conv(x, w, stride)

    fwd = jax.jit(f)
    argnums = (1,) if cin == 6 else (0, 1)  # the stem's input needs no gradient
    grad = jax.jit(jax.grad(lambda x, w: (f(x, w) ** 2).sum(), argnums=argnums))
    return (lambda: jax.block_until_ready(fwd(x, w))), (lambda: jax.block_until_ready(grad(x, w)))


def torch_arms(size, cin, cout, k, stride, batch, threads):
    """``(forward, forward+backward)`` for the same convolution in PyTorch, channels-last."""
    import torch

    torch.set_num_threads(threads)
    fmt = torch.channels_last
    x = torch.randn(batch, cin, size, size).contiguous(memory_format=fmt)
    x.requires_grad_(cin != 6)
    c = torch.nn.Conv2d(cin, cout, k, stride, k // 2, bias=False).to(memory_format=fmt)

    def fwd():
        with torch.inference_mode():
            c(x)

    def both():
        c.zero_grad(set_to_none=True)
        (c(x) ** 2).sum().backward()

    return fwd, both


def ms(call, steps):
    call()
    t = time.perf_counter()
    for _ in range(steps):
        call()
    return (time.perf_counter() - t) / steps * 1e3


def layer_table(rounds: int, steps: int, batch: int = 64) -> list[dict]:
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    rows = []
    for name, size, cin, cout, k, s in LAYERS:
        jf, jb = jax_arms(size, cin, cout, k, s, batch)
        tf, tb = torch_arms(size, cin, cout, k, s, batch, threads)
        t = {a: [] for a in ("jf", "jb", "tf", "tb")}
        for _ in range(rounds):
            for a, call in (("jf", jf), ("tf", tf), ("jb", jb), ("tb", tb)):
                t[a].append(ms(call, steps))
        med = {a: float(np.median(v)) for a, v in t.items()}
        rows.append({"layer": name, **med, "fwd_ratio": med["tf"] / med["jf"],
                     "train_ratio": med["tb"] / med["jb"]})
    return rows


def flag_sweep() -> list[tuple[str, str]]:
    """Whole-network training images/s of the JAX arm under each XLA flag set (subprocesses)."""
    out = []
    code = ("import sys; sys.argv=['x','--small']; sys.path.insert(0,'benchmarks');"
            "import encoders as e, numpy as np, jax;"
            "from geocausal.encoders.modules import ModelSpec;"
            "rng=np.random.default_rng(0); x=rng.normal(size=(64,64,64,6)).astype('float32');"
            "y=rng.integers(0,2,(64,1)).astype('float32');"
            "tr,_=e.jax_calls(x,y,ModelSpec(encoder='cnn',in_bands=6,n_outputs=1));"
            "print(64/e.seconds_per_call(tr,6))")
    for flags in FLAG_SETS:
        env = dict(os.environ, XLA_FLAGS=flags)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=600)
        val = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else (
            "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:80])
        out.append((flags or "(none)", val))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--flags", action="store_true", help="also sweep XLA CPU flags")
    args = ap.parse_args(argv)
    import jax
    import torch

    rows = layer_table(args.rounds, args.steps)
    print(f"jax {jax.__version__}, torch {torch.__version__}; batch 64; median of {args.rounds} "
          "interleaved rounds; ms per call")
    print("| layer | XLA fwd | oneDNN fwd | ratio | XLA fwd+bwd | oneDNN fwd+bwd | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['jf']:.2f} | {r['tf']:.2f} | {r['fwd_ratio']:.2f} | "
              f"{r['jb']:.2f} | {r['tb']:.2f} | {r['train_ratio']:.2f} |")
    tot = {a: sum(r[a] for r in rows) for a in ("jf", "tf", "jb", "tb")}
    print(f"| all convolutions | {tot['jf']:.2f} | {tot['tf']:.2f} | {tot['tf'] / tot['jf']:.2f} | "
          f"{tot['jb']:.2f} | {tot['tb']:.2f} | {tot['tb'] / tot['jb']:.2f} |")
    if args.flags:
        print("\nXLA CPU flags, whole training step (JAX images/s):")
        for flags, val in flag_sweep():
            print(f"- `{flags}`: {val}")


if __name__ == "__main__":
    main()
