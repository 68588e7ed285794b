"""Sampling speed of a trained event-image generator against Pythia 8 + the parametrised
calorimeter, in one process (``hepgen bench`` on an events checkpoint; issue 15).

:func:`run_event_bench` measures, for every (thread count, sampling path, batch size), whole
``generator.sample`` calls (noise, conditions, network, inverse scaling, the pixel calibration
of ``hepgen calibrate`` if the checkpoint has one, numpy images) at one condition point:

* ``ms_per_image_wall`` (median call / batch) and ``ms_per_image_cpu`` (CPU time of this process
  over the timed calls / images, all threads: the comparison that holds on a loaded machine);
* ``speedup_vs_simulator``: the simulator's CPU seconds per image over the model's, the
  simulator measured in the same process (:func:`simulator_cost`): per **pile-up image** at the
  checkpoint's μ when its condition point has μ > 0 (that many min-bias events overlaid), else per
  **signal event** at its masses; Pythia's initialisation taken out by differencing two runs.

Paths are those of :data:`hepgen.domains.events.inference.EVENT_SAMPLING_PATHS` (``fp32``,
``channels_last``, ``bf16``, ``compile``, ``bf16-compile``); an ensemble checkpoint samples through
its members, which prepare their path per call, so the compiled paths are refused for it.
``benchmarks/bench_events.py speed`` is the longer study (interleaved rounds, fidelity per path).

Timings are comparable only within one run; the result records the load average before and after.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hepgen._io import atomic_path
from hepgen._version import __version__
from hepgen.bench import time_calls
from hepgen.domains.events.inference import EVENT_SAMPLING_PATHS, prepare_event_path
from hepgen.simulate.events import EventGenConfig, generate_events

__all__ = ["DEFAULT_EVENT_BATCH_SIZES", "EVENT_BENCH_SCHEMA", "format_event_table", "path_modules",
           "plot_event_bench", "run_event_bench", "simulator_cost"]

EVENT_BENCH_SCHEMA = "hepgen.bench_events/1"
DEFAULT_EVENT_BATCH_SIZES = (1, 128, 1024)


def simulator_cost(condition: Sequence[float], n: int, seed: int = 0, config: EventGenConfig | None = None,
                   generate=None) -> dict:
    """Marginal CPU and wall seconds per image of Pythia 8 + detector at one condition point.

    ``condition`` is ``[m_gluino, m_neutralino, mu]`` (GeV, GeV, —): μ > 0 times pile-up images
    of μ min-bias events (``minbias``), else signal events at the two masses.  Two runs of
    ``n0 = max(1, n // 20)`` and ``n0 + n`` images in this process; their difference over ``n``
    takes Pythia's initialisation (~10 s) out.  ``generate``: the simulator (default
    :func:`hepgen.simulate.events.generate_events`; anything with its signature and its
    ``attrs["process_seconds"]`` / ``attrs["seconds"]``).

    >>> fake = lambda process, n_events, seed, config, masses=None, mu=0.0: type("E", (), {"attrs": {
    ...     "process_seconds": 10.0 + 0.04 * n_events, "seconds": 11.0 + 0.05 * n_events}})()
    >>> c = simulator_cost([0.0, 0.0, 20.0], 100, generate=fake)
    >>> c["process"], c["mu"], round(c["cpu_s_per_image"], 6), round(c["wall_s_per_image"], 6), c["n"]
    ('minbias', 20.0, 0.04, 0.05, [5, 105])
    """
    mg, mn, mu = (float(v) for v in condition)
    if n < 1:
        raise ValueError(f"simulator_cost: n: expected >= 1 images, found {n}")
    config = config or EventGenConfig()
    generate = generate or generate_events
    kw = {"process": "minbias", "mu": mu} if mu > 0 else {"process": "signal", "masses": (mg, mn)}
    n0 = max(1, n // 20)
    runs = [generate(n_events=k, seed=seed, config=config, **kw).attrs for k in (n0, n0 + n)]
    return {**{k: v for k, v in kw.items() if k != "masses"}, "masses": [mg, mn], "n": [n0, n0 + n],
            "cpu_s_per_image": (runs[1]["process_seconds"] - runs[0]["process_seconds"]) / n,
            "wall_s_per_image": (runs[1]["seconds"] - runs[0]["seconds"]) / n}


def path_modules(generator, paths: Sequence[str]) -> dict[str, dict]:
    """Per sampling path, the keyword arguments of ``generator.sample`` that reuse one prepared
    module across calls: ``{"module": prepare_event_path(generator.sampler(), path)}`` for a single
    generator (a compiled path compiles once per batch shape); ``{}`` for an ensemble, whose members
    prepare their path per call, so that compiled paths are refused for it (they would compile on
    every call).

    >>> class Mixture: pass   # no sampler(): an ensemble
    >>> path_modules(Mixture(), ["fp32", "bf16"])
    {'fp32': {}, 'bf16': {}}
    """
    if not hasattr(generator, "sampler"):
        if any("compile" in p for p in paths):
            raise ValueError(f"sampling paths: an ensemble checkpoint samples through its members, which would "
                             f"compile per call; expected paths without compile, found {list(paths)}")
        return {p: {} for p in paths}
    return {p: {"module": prepare_event_path(generator.sampler(), p)} for p in paths}


def _condition(generator) -> list[float]:
    """The generator's first training condition point ``[m_gluino, m_neutralino, mu]``."""
    points = (generator.meta or {}).get("condition_points") or [[1400.0, 400.0, 0.0]]
    return [float(v) for v in points[0]]


def run_event_bench(generator, batch_sizes: Sequence[int] = DEFAULT_EVENT_BATCH_SIZES,
                    threads: Sequence[int] | None = None, paths: Sequence[str] = ("fp32", "bf16"),
                    simulator_n: int = 200, min_time: float = 0.5, seed: int = 0, checkpoint: str | None = None,
                    condition: Sequence[float] | None = None, progress: bool = True) -> dict:
    """Measure an event generator's sampling speed (and the simulator's); see the module docstring.

    Arguments:
        generator: an :class:`~hepgen.domains.events.EventGenerator` or ``EventEnsemble``.
        batch_sizes: images per ``sample`` call.
        threads: torch thread counts (default: 1 and all cores).
        paths: sampling paths.
        simulator_n: images of the differenced simulator runs (0: no simulator, no speed-up).
        min_time: seconds of timed calls per point (at least 3 calls).
        seed: the noise seed.
        condition: ``[m_gluino, m_neutralino, mu]`` to sample at (default: the first training point).

    Returns:
        JSON-able dict: ``points`` (one per thread count, path, batch size), ``simulator``,
        ``condition``, load averages, versions.
    """
    unknown = [p for p in paths if p not in EVENT_SAMPLING_PATHS]
    if unknown:
        raise ValueError(f"hepgen bench --paths: expected paths among {EVENT_SAMPLING_PATHS} for an events "
                         f"checkpoint, found {unknown}")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"hepgen bench --batch-sizes: expected positive batch sizes, found {list(batch_sizes)}")
    threads = list(threads or sorted({1, os.cpu_count() or 1}))
    cond = [float(v) for v in (condition if condition is not None else _condition(generator))]
    load0 = list(os.getloadavg())
    before = torch.get_num_threads()
    modules = path_modules(generator, paths)
    sim = simulator_cost(cond, simulator_n, seed=seed) if simulator_n > 0 else None
    points = []
    try:
        for nt in threads:
            torch.set_num_threads(nt)
            for path in paths:
                for bs in batch_sizes:
                    c = np.tile(np.asarray(cond, np.float32), (bs, 1))
                    kw = modules[path]

                    def call(c=c, bs=bs, kw=kw, path=path):
                        return generator.sample(c, seed=seed, batch_size=bs, path=path, **kw)

                    call()  # warm-up (compiles the compiled paths for this batch shape)
                    c0 = time.process_time()
                    times = time_calls(call, min_time=min_time, warmup=0)
                    cpu = time.process_time() - c0
                    row = {"threads": nt, "path": path, "batch_size": int(bs), "calls": len(times),
                           "ms_per_image_wall": 1e3 * float(np.median(times)) / bs,
                           "ms_per_image_cpu": 1e3 * cpu / (bs * len(times))}
                    row["speedup_vs_simulator"] = (1e3 * sim["cpu_s_per_image"] / row["ms_per_image_cpu"]
                                                   if sim else None)
                    points.append(row)
                    if progress:
                        print(f"  threads {nt} {path} batch {bs}: {row['ms_per_image_cpu']:.3f} ms CPU per image",
                              flush=True)
    finally:
        torch.set_num_threads(before)
    return {"schema": EVENT_BENCH_SCHEMA, "checkpoint": checkpoint, "family": generator.model.family,
            "calibrated": getattr(generator, "calibration", None) is not None, "condition": cond,
            "simulator": sim, "points": points, "load_average_before": load0,
            "load_average_after": list(os.getloadavg()),
            "versions": {"hepgen": __version__, "torch": torch.__version__, "python": platform.python_version()}}


def format_event_table(result: dict) -> str:
    """The speed table as text: the simulator's cost, then one line per point.

    >>> r = {"condition": [0.0, 0.0, 20.0], "family": "dcgan", "calibrated": True, "simulator": {"process": "minbias",
    ...      "mu": 20.0, "masses": [0.0, 0.0], "cpu_s_per_image": 0.0374, "wall_s_per_image": 0.0376},
    ...      "points": [{"threads": 1, "path": "bf16", "batch_size": 256, "ms_per_image_wall": 0.25,
    ...                  "ms_per_image_cpu": 0.25, "speedup_vs_simulator": 149.6}]}
    >>> print(format_event_table(r))
    simulator: Pythia 8 + detector, 37.40 ms CPU (37.60 ms wall) per pile-up image at mu = 20
    model: dcgan with its pixel calibration at [0.0, 0.0, 20.0]
    threads path           batch  ms/image wall  ms/image CPU  speed-up (CPU s)
          1 bf16             256          0.250         0.250            149.6x
    """
    sim = result.get("simulator")
    lines = []
    if sim:
        what = (f"pile-up image at mu = {sim['mu']:g}" if sim["process"] == "minbias"
                else f"signal event at ({sim['masses'][0]:g}, {sim['masses'][1]:g}) GeV")
        lines.append(f"simulator: Pythia 8 + detector, {1e3 * sim['cpu_s_per_image']:.2f} ms CPU "
                     f"({1e3 * sim['wall_s_per_image']:.2f} ms wall) per {what}")
    else:
        lines.append("simulator: not measured (--n-pythia 0)")
    lines.append(f"model: {result['family']}{' with its pixel calibration' if result.get('calibrated') else ''} "
                 f"at {result['condition']}")
    lines.append(f"{'threads':>7s} {'path':14s} {'batch':>5s} {'ms/image wall':>14s} {'ms/image CPU':>13s} "
                 f"{'speed-up (CPU s)':>17s}")
    for p in result["points"]:
        s = p.get("speedup_vs_simulator")
        lines.append(f"{p['threads']:7d} {p['path']:14s} {p['batch_size']:5d} {p['ms_per_image_wall']:14.3f} "
                     f"{p['ms_per_image_cpu']:13.3f} {(f'{s:.1f}x' if s is not None else '-'):>17s}")
    return "\n".join(lines)


def plot_event_bench(result: dict, path) -> None:
    """Images per CPU-second vs batch size, one line per threads/path, the simulator and 100× it
    as horizontal lines; written atomically to ``path``."""
    fig = Figure(figsize=(6.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    groups: dict = {}
    for p in result["points"]:
        groups.setdefault((p["threads"], p["path"]), []).append((p["batch_size"], 1e3 / p["ms_per_image_cpu"]))
    for (nt, name), pts in groups.items():
        pts.sort()
        ax.plot([b for b, _ in pts], [r for _, r in pts], "o-", label=f"{name}, {nt} thread{'s' * (nt > 1)}")
    sim = result.get("simulator")
    if sim:
        rate = 1.0 / sim["cpu_s_per_image"]
        ax.axhline(rate, color="k", ls="--", label="Pythia 8 + detector")
        ax.axhline(100 * rate, color="gray", ls=":", label="100x Pythia 8 + detector")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images per CPU-second")
    ax.set_title(f"{result['family']} at {result['condition']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
