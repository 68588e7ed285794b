"""Where a shower checkpoint's sampling time goes: matrix products against everything else (issue 14).

    python benchmarks/profile_sampling.py hepgen-demo/run/best.pt --path compile --batch 1000 --threads 2

The issue's roofline target asks the sampler to reach >= 50 % of the machine's dense-matmul
FLOP/s (``hepgen bench``'s ``roofline_ratio``: the network's matmul FLOPs per shower × showers/s
÷ a 1024² fp32 matmul's FLOP/s).  That ratio is the product of two factors this script separates:

* the **share** of the sampling time spent in matrix products, and
* the **efficiency** of those products: their FLOPs ÷ their time ÷ the 1024² matmul's FLOP/s
  (the products of a flow are thin, e.g. (1000 × 128) @ (128 × 2112), and run below the
  square matmul's rate).

``roofline = share × efficiency`` at the profiled time per call (the ratio printed uses the rate
timed without the profiler, slightly higher); the efficiency is the ceiling the roofline would
reach if everything outside the products took no time.  One call of the chosen sampling path
(:func:`hepgen.domains.showers.inference.prepare_path`) is profiled ``--calls`` times with
:mod:`torch.profiler` (self CPU time per operator, summed into categories: ``matmul``, the
copies of the bias into the products' outputs, compiled element-wise kernels (the splines and
the lit-cell post-processing under ``torch.compile``), the noise, the rest).  Under ``compile``
the inductor kernels are recorded individually (``torch._inductor.config.cpp.enable_kernel_profile``,
an inductor setting, not public API: it only names the kernels in the profile).  The profiler
adds its own overhead, so the rate printed is timed apart, without it; the shares are from the
profile.  Run it alone on the machine: the figures are ratios of one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch._inductor.config as inductor_config
from torch.profiler import ProfilerActivity, profile

from hepgen.bench import _conditions, _Inputs, matmul_flops, network_flops_per_shower
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.inference import SAMPLING_PATHS, ShowerSampler, compiles, prepare_path

MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "mkl::_mkl_linear",
              "mkldnn::_linear_pointwise", "quantized::linear_dynamic")
#: wrappers whose self time is Python / dispatch around the kernels, not arithmetic
WRAPPERS = ("## Call CompiledFxGraph", "Torch-Compiled Region", "TorchDynamo Cache Lookup",
            "Pregraph bytecode", "AOTDispatcher")


def category(name: str) -> str:
    """The category of one profiler event name.

    >>> [category(n) for n in ("aten::addmm", "aten::copy_", "graph_1_cpp_fused_exp_2",
    ...                        "aten::normal_", "## Call CompiledFxGraph abc", "aten::gather")]
    ['matmul', 'copies', 'compiled kernels', 'noise', 'wrappers', 'other operators']
    """
    if name in MATMUL_OPS:
        return "matmul"
    if name == "aten::copy_":
        return "copies"
    if "cpp_fused" in name:
        return "compiled kernels"
    if name in ("aten::normal_", "aten::randn"):
        return "noise"
    if name.startswith(WRAPPERS):
        return "wrappers"
    return "other operators"


def summarise(events, calls: int) -> dict[str, float]:
    """Milliseconds per call in each :func:`category`, from ``(name, self CPU µs)`` pairs summed
    over ``calls`` profiled calls.

    >>> summarise([("aten::addmm", 3000.0), ("aten::mm", 1000.0), ("graph_0_cpp_fused_exp_1", 2000.0)], 2)
    {'matmul': 2.0, 'compiled kernels': 1.0}
    """
    sums: dict[str, float] = {}
    for name, self_us in events:
        c = category(name)
        sums[c] = sums.get(c, 0.0) + self_us / 1e3 / calls
    return sums


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--path", default="compile", choices=SAMPLING_PATHS)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=10, help="calls timed, and calls profiled")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=0,
                    help="also list the TOP operators / compiled kernels by self time (ms per call)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if compiles(args.path):
        inductor_config.cpp.enable_kernel_profile = True
    gen = ShowerGenerator.load(args.checkpoint)
    fp32 = ShowerSampler.from_generator(gen)
    module = prepare_path(fp32, args.path)
    # hepgen bench's own inputs (energies log-uniform in the checkpoint's range, extra conditions
    # uniform in theirs; the noise drawn in each call, as a user's loop does)
    energies, conds = _conditions(gen, args.batch, args.seed)
    inputs = _Inputs(fp32, energies, conds, torch.device("cpu"), args.seed)

    def call():
        return inputs.call(module)

    flops = network_flops_per_shower(lambda: inputs.call(fp32), (), args.batch)  # the whole sampler's products
    peak = matmul_flops("cpu")
    with torch.no_grad():
        t0 = time.perf_counter()
        call()
        print(f"{args.path}: first call {time.perf_counter() - t0:.1f} s", flush=True)
        call()
        times = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.calls):
                call()
    per_call = float(np.median(times))
    rate = args.batch / per_call
    sums = summarise(((ev.key, ev.self_cpu_time_total) for ev in prof.key_averages()), args.calls)
    total = sum(sums.values())
    print(f"checkpoint {args.checkpoint}; path {args.path}; batch {args.batch}; {args.threads} threads")
    print(f"rate {rate:,.0f} showers/s ({1e3 * per_call:.1f} ms per call, median of {args.calls}); "
          f"profiled {total:.1f} ms per call")
    print(f"{'category':18s} {'ms/call':>8s} {'share':>6s}")
    for c in ("matmul", "copies", "compiled kernels", "other operators", "noise", "wrappers"):
        if c in sums:
            print(f"{c:18s} {sums[c]:8.1f} {sums[c] / total:6.2f}")
    mm_s = sums.get("matmul", 0.0) / 1e3
    eff = flops * args.batch / mm_s / peak if mm_s else float("nan")
    print(f"matmul FLOPs {flops / 1e6:.2f} M per shower; dense 1024^2 matmul {peak / 1e9:.1f} GFLOP/s")
    print(f"matmul efficiency (their FLOP/s in the profile / dense) {eff:.2f}; "
          f"share of the profiled time {sums.get('matmul', 0.0) / total:.2f}")
    print(f"roofline (timed rate) {flops * rate / peak:.2f}; ceiling with nothing but the products {eff:.2f}")
    # the single operators and compiled kernels behind the categories, largest first
    top = sorted(((ev.self_cpu_time_total / 1e3 / args.calls, ev.key) for ev in prof.key_averages()),
                 reverse=True)[: args.top]
    for ms, name in top:
        print(f"  {ms:8.2f} ms/call  {category(name):16s} {name}")
    return {"showers_per_s": rate, "ms_per_call": sums, "profiled_ms_per_call": total,
            "flops_per_shower": flops, "matmul_flops": peak, "matmul_efficiency": eff,
            "roofline_ratio": flops * rate / peak, "top_events": top}


if __name__ == "__main__":
    main()
