"""Inference benchmark of a trained generator against the reference simulator, in one run.

:func:`run_bench` measures, for every (device, threads, sampling path, batch size):

* latency of one call (median and best of repeated calls) and throughput in showers/s of
  the whole :class:`~hepgen.domains.showers.inference.ShowerSampler` (noise draw + condition encoding +
  network + inverse preprocessing, i.e. showers in MeV);
* the speed-up over the reference simulator (:class:`~hepgen.simulate.calorimeter.ShowerSimulator`)
  producing showers for the same incident energies on the same machine and thread count;
* the speed-up over Geant4 on the same geometry, when the optional ``hepgen[geant4]`` extra
  is installed and a Geant4 preset has the checkpoint's binning (the ``demo`` preset for the
  demo's binning): Geant4's mean seconds per shower over the checkpoint's log-uniform energy
  range, from ``geant4_n`` showers timed in this process on one core
  (:func:`hepgen.simulate.geant4.timing.time_geant4_showers`: stratified energies, the
  estimator is described there), times the model's showers/s; otherwise one line says why;
* achieved FLOP/s — the network's matmul FLOPs per shower counted once with
  ``torch.utils.flop_counter.FlopCounterMode`` (nominal fp32 FLOPs for every path; the
  elementwise work is not counted) times showers/s — and its ratio to the dense-matmul
  FLOP/s measured on the same machine and thread count (a roofline ratio);
* peak memory: the peak resident set size while the point runs (the kernel's ``VmHWM``,
  reset before each point through ``/proc/self/clear_refs``; Linux only) and, on a GPU,
  ``torch.cuda.max_memory_allocated``.

Optionally (``fidelity_n > 0``) every path's fidelity cost: showers from each path on the
same conditions and the same noise, each compared with reference showers (the simulator's
or a file's) by the validation metrics (classifier AUC, mean separation power), and
the AUC difference to fp32.  For families with a step count (``sample_steps``, e.g.
``flow_matching``) the same is done for a list of step counts (steps vs AUC curve).

Timings are only comparable within one run on an otherwise idle machine; the result
records the load average before and after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode

from hepgen._version import __version__
from hepgen._extras import needs_extra
from hepgen._io import atomic_path
from hepgen.data.formats import ShowerData
from hepgen.domains.showers.evaluate import evaluate
from hepgen.domains.showers.inference import SAMPLING_PATHS, ShowerSampler, compiles, prepare_path
from hepgen.export import export_onnx, ort_session
from hepgen.simulate.calorimeter import ShowerSimulator
from hepgen.simulate.geant4.timing import describe as describe_geant4
from hepgen.simulate.geant4.timing import time_geant4_showers

__all__ = [
    "BENCH_PATHS",
    "BENCH_SCHEMA",
    "DEFAULT_BATCH_SIZES",
    "ORT_PATHS",
    "OrtModels",
    "format_table",
    "matmul_flops",
    "network_flops_per_shower",
    "peak_rss",
    "plot_bench",
    "run_bench",
    "time_calls",
    "write_bench",
]

log = logging.getLogger(__name__)

BENCH_SCHEMA = "hepgen.bench/1"
DEFAULT_BATCH_SIZES = (1, 10, 100, 1_000, 10_000)
#: paths through onnxruntime (CPU): the exported graph, and its dynamically int8-quantised copy
ORT_PATHS = ("ort", "ort-int8")
BENCH_PATHS = (*SAMPLING_PATHS, *ORT_PATHS)


# --- measurement helpers ----------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device: torch.device | str = "cpu", min_time: float = 0.5, min_calls: int = 3,
               max_calls: int = 1000, warmup: int = 1) -> np.ndarray:
    """Wall-clock seconds of repeated calls of ``fn()`` after ``warmup`` untimed calls.

    Calls are repeated until ``min_calls`` calls and ``min_time`` seconds in total, or
    ``max_calls``.  On a GPU the device is synchronised around every call.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    total = 0.0
    while len(times) < max_calls and (len(times) < min_calls or total < min_time):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return np.asarray(times)


def matmul_flops(device: torch.device | str = "cpu", n: int = 1024, dtype: torch.dtype = torch.float32,
                 min_time: float = 0.5) -> float:
    """Measured dense-matmul FLOP/s: best of repeated ``(n × n) @ (n × n)`` products (2 n³ FLOPs)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_calls(lambda: a @ b, device, min_time=min_time, min_calls=5)
    return 2.0 * n**3 / float(times.min())


def network_flops_per_shower(module: torch.nn.Module, inputs: tuple, batch: int) -> float:
    """Matmul FLOPs per shower of one call ``module(*inputs)`` on a batch of ``batch``."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return counter.get_total_flops() / batch


@contextlib.contextmanager
def peak_rss():
    """Context manager yielding a dict filled on exit with ``peak_rss_mib`` (the process's
    peak resident set size inside the block) and ``rss_increase_mib`` (peak minus the RSS at
    entry); both None where ``/proc/self/clear_refs`` cannot reset the peak (non-Linux)."""
    out: dict = {"peak_rss_mib": None, "rss_increase_mib": None}

    def status(key: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return float(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        ok = True
    except OSError:
        ok = False
    start = status("VmRSS") if ok else None
    try:
        yield out
    finally:
        if ok and start is not None:
            peak = status("VmHWM")
            if peak is not None:
                out["peak_rss_mib"] = peak
                out["rss_increase_mib"] = peak - start


def _conditions(generator, n: int, seed: int) -> tuple[np.ndarray, dict]:
    """Energies log-uniform in the checkpoint's range and extra conditions uniform in theirs."""
    rng = np.random.default_rng(seed)
    lo, hi = generator.meta.get("energy_range", [1e3, 1e5])
    e = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))
    conds = {}
    for name in generator.condition_names:
        clo, chi = (np.asarray(x, dtype=float) for x in generator.meta["condition_ranges"][name])
        conds[name] = rng.uniform(clo, chi, size=(n, np.atleast_1d(clo).size))
    return e, conds


class _Inputs:
    """Pre-built input tensors of one batch size on one device."""

    def __init__(self, sampler: ShowerSampler, energies: np.ndarray, conds: dict, device: torch.device, seed: int):
        n = len(energies)
        self.e = torch.as_tensor(energies, dtype=torch.float32).reshape(n, 1).to(device)
        extra = sampler.condition_matrix(conds, n)
        self.extra = None if extra is None else torch.as_tensor(extra).to(device)
        self.noise_dim = sampler.noise_dim
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device
        self.n = n

    def call(self, module) -> torch.Tensor:
        """One sampling call: draw the noise, run the module (what a user's loop does)."""
        if self.noise_dim is None:
            return module(self.e, None, self.extra, generator=self.generator)
        z = torch.randn(self.n, self.noise_dim, generator=self.generator, device=self.device)
        return module(self.e, z, self.extra)


class _OrtSampler:
    """An onnxruntime session with the call signature of :class:`~hepgen.domains.showers.inference.ShowerSampler`."""

    def __init__(self, onnx_path: str, threads: int, with_conditions: bool) -> None:
        self.session = ort_session(onnx_path, threads, "the ort sampling paths (onnxruntime)")
        self.with_conditions = with_conditions

    def __call__(self, incident_energy, noise, conditions=None, generator=None) -> torch.Tensor:
        feeds = {"incident_energy": incident_energy.numpy(), "noise": noise.numpy()}
        if self.with_conditions:
            feeds["conditions"] = conditions.numpy()
        return torch.from_numpy(self.session.run(["showers"], feeds)[0])


class OrtModels:
    """ONNX files of one generator in a temporary folder: exported once (lazily) by
    ``export(path) -> {"export_s", ...}``, and the int8 copy (``onnxruntime.quantization.
    quantize_dynamic``) made on demand.  Used by the shower and the jet benchmark
    (:mod:`hepgen.bench_jets`); :meth:`close` removes the folder."""

    def __init__(self, export) -> None:
        self.export = export
        self._dir = None
        self.files: dict[str, str] = {}
        self.export_s = None

    def path(self, name: str) -> str:
        """The file of ``name`` (``"ort"`` or ``"ort-int8"``), made first if needed."""
        import tempfile

        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="hepgen-bench-")
        if "ort" not in self.files:
            f = str(Path(self._dir.name) / "model.onnx")
            self.export_s = self.export(f)["export_s"]
            self.files["ort"] = f
        if name == "ort-int8" and name not in self.files:
            with needs_extra("onnx", "the ort-int8 sampling path (onnxruntime)"):  # lazy import (optional extra)
                from onnxruntime.quantization import QuantType, quantize_dynamic

            f = str(Path(self._dir.name) / "model-int8.onnx")
            ort_log = logging.getLogger()
            level = ort_log.level
            ort_log.setLevel(logging.ERROR)  # onnxruntime suggests pre-processing; not needed here
            try:
                quantize_dynamic(self.files["ort"], f, weight_type=QuantType.QInt8)
            finally:
                ort_log.setLevel(level)
            self.files[name] = f
        return self.files[name]

    def sampler(self, name: str, threads: int, with_conditions: bool) -> _OrtSampler:
        return _OrtSampler(self.path(name), threads, with_conditions)

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()


def _simulator_rate(generator, energies: np.ndarray, conds: dict, threads: int, seed: int) -> dict:
    from threadpoolctl import threadpool_limits

    sim = ShowerSimulator(generator.geometry)
    theta = conds.get("incident_theta")
    pos = conds.get("impact_position")
    with threadpool_limits(limits=threads):
        sim.simulate(energies[: min(20, len(energies))], theta=None if theta is None else theta[:20],
                     impact_position=None if pos is None else pos[:20], seed=seed)  # warm-up
        t0 = time.perf_counter()
        showers = sim.simulate(energies, theta=theta, impact_position=pos, seed=seed)
        dt = time.perf_counter() - t0
    return {"threads": threads, "n": len(energies), "seconds": dt, "showers_per_s": len(energies) / dt,
            "showers": showers}


# --- the benchmark ----------------------------------------------------------------------------
def run_bench(
    generator,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: Sequence[int] | None = None,
    devices: Sequence[str] | None = None,
    paths: Sequence[str] = ("fp32", "int8"),
    fidelity_n: int = 0,
    steps: Sequence[int] | None = None,
    simulator_n: int = 1000,
    min_time: float = 0.5,
    real=None,
    seed: int = 0,
    fast: bool = True,
    checkpoint: str | None = None,
    progress: bool = False,
    geant4_n: int = 20,
    geant4_max_seconds: float | None = 120.0,
) -> dict:
    """Measure sampling speed (and optionally fidelity) of ``generator``; see the module docstring.

    Arguments:
        generator: a :class:`~hepgen.domains.showers.generator.ShowerGenerator`.
        batch_sizes: showers per call, scanned for every device, thread count and path.
        threads: CPU thread counts (default ``[1, os.cpu_count()]``).
        devices: ``"cpu"`` and/or ``"cuda"`` (default: cpu, plus cuda when available).
        paths: sampling paths from :data:`~hepgen.domains.showers.inference.SAMPLING_PATHS`; paths a
            device does not support (int8 off the CPU) are skipped with a note.
        fidelity_n: showers per path for the fidelity comparison (0: skip; the classifier
            needs >= 200).
        steps: step counts to scan for families with ``sample_steps`` (default: the
            model's, halved down to 1).
        simulator_n: showers simulated per thread count for the simulator's rate.
        min_time: seconds of repeated calls per measurement point (at least 3 calls).
        real: a :class:`~hepgen.data.formats.ShowerData` used as the reference of the
            fidelity test (default: the simulator at the same conditions).
        seed: seeds conditions and noise.
        fast: use the pruned flow sampler (see :mod:`hepgen.domains.showers.inference`).
        checkpoint: recorded in the result.
        progress: log each point.
        geant4_n: Geant4 showers timed on the checkpoint's geometry for ``speedup_vs_geant4``
            (0: skip); see :func:`hepgen.simulate.geant4.timing.time_geant4_showers`.
        geant4_max_seconds: stop the Geant4 timing after this many seconds of showers.

    Returns:
        a JSON-able dict (schema ``hepgen.bench/1``): ``runs`` (one row per point),
        ``simulator``, ``geant4`` (Geant4's s/shower and how it was timed, or ``reason``),
        ``matmul_flops``, ``flops_per_shower``, ``compile_s``, ``fidelity``, ``best`` and machine
        facts.  Each row's ``speedup_vs_geant4`` is its showers/s × Geant4's s/shower (None
        when Geant4 was not timed).
    """
    threads = list(threads) if threads else sorted({1, os.cpu_count() or 1})
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    unknown = [p for p in paths if p not in BENCH_PATHS]
    if unknown:
        raise ValueError(f"paths {unknown}: expected names from {BENCH_PATHS}")
    if any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, found {list(batch_sizes)}")
    batch_sizes = sorted({int(b) for b in batch_sizes})
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    torch_threads = torch.get_num_threads()
    base = ShowerSampler.from_generator(generator, fast=fast)
    result: dict = {
        "schema": BENCH_SCHEMA,
        "hepgen_version": __version__,
        "torch_version": torch.__version__,
        "checkpoint": checkpoint,
        "family": generator.model.family,
        "sampler": type(base.sampler).__name__,
        "n_voxels": base.n_voxels,
        "noise_dim": base.noise_dim,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "load_avg_start": list(os.getloadavg())},
        "batch_sizes": batch_sizes,
        "threads": threads,
        "devices": list(devices),
        "paths": list(paths),
        "notes": [],
        "runs": [],
        "simulator": {},
        "geant4": None,
        "matmul_flops": {},
        "flops_per_shower": None,
        "compile_s": {},
        "onnx_export_s": None,
    }
    if base.noise_dim is None and any(p in ORT_PATHS for p in paths):
        result["notes"].append(f"onnxruntime paths skipped: family {generator.model.family!r} cannot be exported")
        paths = [p for p in paths if p not in ORT_PATHS]
    ort_models = OrtModels(lambda f: export_onnx(generator, f, fast=fast))
    sim_e, sim_c = _conditions(generator, simulator_n, seed + 1)
    g4 = time_geant4_showers(generator.geometry, generator.meta.get("energy_range", [1e3, 1e5]), n=geant4_n,
                             max_seconds=geant4_max_seconds, seed=seed + 1)
    result["geant4"] = g4
    g4_s = g4["s_per_shower"] if g4["available"] else None
    b0 = min(256, max(batch_sizes))
    e0, c0 = _conditions(generator, b0, seed)
    flops = network_flops_per_shower(
        lambda e, z, x: base.sampler(base.encoder(e, x), z) if base.noise_dim is not None
        else base.sampler(base.encoder(e, x), torch.Generator().manual_seed(0)),
        (torch.as_tensor(e0, dtype=torch.float32).reshape(-1, 1),
         None if base.noise_dim is None else torch.randn(b0, base.sampler.noise_dim),  # the network's noise
         None if not base.condition_names else torch.as_tensor(base.condition_matrix(c0, b0))),
        b0,
    )
    result["flops_per_shower"] = flops
    try:
        for device_name in devices:
            device = torch.device(device_name)
            thread_list = threads if device.type == "cpu" else [torch_threads]
            for nt in thread_list:
                torch.set_num_threads(int(nt))
                key = f"{device.type}:{nt}" if device.type == "cpu" else device.type
                peak = matmul_flops(device, min_time=min_time)
                result["matmul_flops"][key] = peak
                if device.type == "cpu":
                    sim = _simulator_rate(generator, sim_e, sim_c, int(nt), seed)
                    sim.pop("showers")
                    result["simulator"][str(nt)] = sim
                    sim_rate = sim["showers_per_s"]
                else:
                    sim_rate = max((v["showers_per_s"] for v in result["simulator"].values()), default=None)
                for path in paths:
                    if path in ("int8", *ORT_PATHS) and device.type != "cpu":
                        result["notes"].append(f"{path} skipped on {device.type} (CPU only here)")
                        continue
                    if path == "fp16" and device.type == "cpu":
                        result["notes"].append("fp16 skipped on cpu (no fp16 matmul kernels worth timing)")
                        continue
                    if path in ORT_PATHS:
                        module = ort_models.sampler(path, int(nt), bool(base.n_extra_conditions))
                    else:
                        module = prepare_path(base, path, device)
                    for bs in batch_sizes:
                        e, c = _conditions(generator, bs, seed)
                        inputs = _Inputs(base, e, c, device, seed)
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        with torch.no_grad(), peak_rss() as mem:
                            if compiles(path):  # the first call compiles
                                t0 = time.perf_counter()
                                inputs.call(module)
                                result["compile_s"][f"{key}:{bs}"] = time.perf_counter() - t0
                            times = time_calls(lambda i=inputs, m=module: i.call(m), device, min_time=min_time)
                        med = float(np.median(times))
                        rate = bs / med
                        row = {
                            "device": device.type, "threads": int(nt), "path": path, "batch_size": bs,
                            "calls": len(times), "latency_ms_median": 1e3 * med, "latency_ms_min": 1e3 * float(times.min()),
                            "showers_per_s": rate, "achieved_flops": flops * rate,
                            "roofline_ratio": flops * rate / peak,
                            "speedup_vs_simulator": rate / sim_rate if sim_rate else None,
                            "speedup_vs_geant4": rate * g4_s if g4_s else None,
                            **mem,
                            "gpu_peak_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                                             if device.type == "cuda" else None),
                        }
                        result["runs"].append(row)
                        if progress:
                            log.info("%s threads=%s %s batch=%d: %.0f showers/s (%.1fx simulator, roofline %.2f)",
                                     device.type, nt, path, bs, rate, row["speedup_vs_simulator"] or float("nan"),
                                     row["roofline_ratio"])
        if fidelity_n:
            result["fidelity"] = _fidelity(generator, base, paths, fidelity_n, real, seed, steps, fast, progress,
                                           ort_models)
    finally:
        torch.set_num_threads(torch_threads)
        result["onnx_export_s"] = ort_models.export_s
        ort_models.close()
    result["notes"] = list(dict.fromkeys(result["notes"]))  # once per note, not per thread count
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    result["best"] = _best(result["runs"])
    return result


def _best(runs: list[dict]) -> dict:
    """The fastest row per (device, threads) at batch >= 1000 (or the largest batch)."""
    best: dict = {}
    for r in runs:
        key = f"{r['device']}:{r['threads']}"
        big = r["batch_size"] >= 1000
        cur = best.get(key)
        if cur is None or (big, r["showers_per_s"]) > (cur["batch_size"] >= 1000, cur["showers_per_s"]):
            best[key] = r
    return best


def _sample_with(module, sampler: ShowerSampler, energies, conds, seed: int, batch: int = 1000) -> np.ndarray:
    """Showers from ``module`` for the given conditions; the noise depends on ``seed`` only."""
    n = len(energies)
    g = torch.Generator().manual_seed(seed)
    z = None if sampler.noise_dim is None else torch.randn(n, sampler.noise_dim, generator=g)
    e = torch.as_tensor(energies, dtype=torch.float32).reshape(n, 1)
    extra = sampler.condition_matrix(conds, n)
    extra = None if extra is None else torch.as_tensor(extra)
    out = np.empty((n, sampler.n_voxels), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, n, batch):
            sl = slice(s, s + batch)
            x = extra[sl] if extra is not None else None
            if z is None:
                out[sl] = module(e[sl], None, x, generator=g).numpy()
            else:
                out[sl] = module(e[sl], z[sl], x).numpy()
    return out


def _fidelity(generator, base: ShowerSampler, paths, n: int, real, seed: int, steps, fast: bool,
              progress: bool, ort_models: OrtModels) -> dict:
    if real is not None:
        ref = real.subset(slice(0, n))
        energies = ref.incident_energies[:, 0]
        conds = {k: ref.conditions[k] for k in generator.condition_names}
        reference = "file"
    else:
        energies, conds = _conditions(generator, n, seed + 2)
        sim = _simulator_rate(generator, energies, conds, torch.get_num_threads(), seed + 3)
        ref = ShowerData(sim["showers"], energies.reshape(-1, 1), conds, generator.geometry)
        reference = "simulator"

    def score(showers: np.ndarray) -> dict:
        gen = ShowerData(showers, np.asarray(energies).reshape(-1, 1), conds, generator.geometry)
        # only the groups reported here: the O(N²) and regression groups cost minutes per path
        m = evaluate(ref, gen, seed=seed, groups=["features", "classifier"])
        return {"auc_low_level": m["classifier"]["low_level"]["auc"],
                "auc_high_level": m["classifier"]["high_level"]["auc"],
                "auc_err": m["classifier"]["low_level"]["auc_err"],
                "separation_power_mean": m["separation_power_mean"]}

    out: dict = {"n": int(n), "reference": reference, "paths": {}}
    fp32 = _sample_with(base, base, energies, conds, seed + 4)
    for path in ["fp32", *[p for p in paths if p not in ("fp32", "compile", "fp16")]]:
        if path in ORT_PATHS:
            module = ort_models.sampler(path, torch.get_num_threads(), bool(base.n_extra_conditions))
        else:
            module = base if path == "fp32" else prepare_path(base, path, "cpu")
        showers = fp32 if path == "fp32" else _sample_with(module, base, energies, conds, seed + 4)
        row = score(showers)
        diff = np.abs(showers.astype(np.float64) - fp32)
        row["max_abs_diff_mev_vs_fp32"] = float(diff.max())
        row["rel_l1_diff_vs_fp32"] = float(diff.sum() / max(np.abs(fp32).sum(), 1e-30))
        out["paths"][path] = row
        if progress:
            log.info("fidelity %s: %s", path, row)
    for path, row in out["paths"].items():
        row["delta_auc_low_level"] = row["auc_low_level"] - out["paths"]["fp32"]["auc_low_level"]
        row["delta_auc_high_level"] = row["auc_high_level"] - out["paths"]["fp32"]["auc_high_level"]
    if hasattr(generator.model, "sample_steps"):
        model = generator.model
        default = int(model.sample_steps)
        scan = list(steps) if steps else sorted({max(1, default // 2**k) for k in range(8)}, reverse=True)
        out["steps"] = []
        try:
            for k in scan:
                model.sample_steps = int(k)
                module = ShowerSampler.from_generator(generator, fast=fast)
                e, c = _conditions(generator, 1000, seed)
                inputs = _Inputs(module, e, c, torch.device("cpu"), seed)
                with torch.no_grad():
                    times = time_calls(lambda i=inputs, m=module: i.call(m), "cpu", min_time=0.2)
                row = {"steps": int(k), "showers_per_s": 1000 / float(np.median(times)),
                       **score(_sample_with(module, module, energies, conds, seed + 4))}
                out["steps"].append(row)
                if progress:
                    log.info("steps %d: %s", k, row)
        finally:
            model.sample_steps = default
    return out


# --- output -----------------------------------------------------------------------------------
def write_bench(result: dict, out_dir, plot=None) -> tuple[Path, Path]:
    """Write ``bench.json`` and ``bench.png`` into ``out_dir`` (atomically); return both paths.

    ``plot(result, path)`` draws the figure (default :func:`plot_bench`; the jet benchmark
    passes its own, :func:`hepgen.bench_jets.plot_jet_bench`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "bench.json"
    with atomic_path(js) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2, allow_nan=False, default=float) + "\n")
    png = out_dir / "bench.png"
    (plot or plot_bench)(result, png)
    return js, png


def plot_bench(result: dict, path) -> None:
    """Throughput vs batch size (one line per device/threads/path, simulator as dashed lines)
    and roofline ratio vs batch size; written atomically to ``path``."""
    # a Figure on the Agg canvas, not pyplot: no global backend switch in the caller's process (notebooks)
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    groups: dict = {}
    for r in result["runs"]:
        groups.setdefault((r["device"], r["threads"], r["path"]), []).append(r)
    for (dev, nt, name), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["batch_size"])
        label = f"{dev}{'' if dev != 'cpu' else f' {nt} thr'} {name}"
        bs = [r["batch_size"] for r in rows]
        ax1.plot(bs, [r["showers_per_s"] for r in rows], marker="o", label=label)
        ax2.plot(bs, [r["roofline_ratio"] for r in rows], marker="o", label=label)
    for nt, sim in sorted(result["simulator"].items()):
        ax1.axhline(sim["showers_per_s"], ls="--", color="gray", lw=1)
        ax1.text(min(result["batch_sizes"]), sim["showers_per_s"], f" simulator {nt} thr", fontsize=7,
                 va="bottom", color="gray")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel("showers / s")
    ax2.set_ylabel("achieved / dense-matmul FLOP/s")
    ax1.legend(fontsize=7)
    fig.suptitle(f"hepgen bench: {result['family']} ({result['sampler']}), {result['n_voxels']} voxels", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def format_table(result: dict) -> str:
    """The speed-up table as text: one line per measurement point."""
    g4 = result.get("geant4")
    with_g4 = bool(g4 and g4.get("available"))
    header = (f"{'device':6s} {'thr':>3s} {'path':8s} {'batch':>6s} {'latency ms':>11s} {'showers/s':>11s} "
              f"{'x simulator':>11s} " + (f"{'x Geant4':>11s} " if with_g4 else "")
              + f"{'roofline':>8s} {'peak RSS MiB':>12s}")
    lines = [header]
    for r in result["runs"]:
        sp = r["speedup_vs_simulator"]
        sg = r.get("speedup_vs_geant4")
        rss = r["peak_rss_mib"]
        lines.append(f"{r['device']:6s} {r['threads']:3d} {r['path']:8s} {r['batch_size']:6d} "
                     f"{r['latency_ms_median']:11.3f} {r['showers_per_s']:11.0f} "
                     f"{'' if sp is None else f'{sp:10.1f}x':>11s} "
                     + (f"{'' if sg is None else f'{sg:10.1f}x':>11s} " if with_g4 else "")
                     + f"{r['roofline_ratio']:8.2f} {'' if rss is None else f'{rss:12.0f}':>12s}")
    for nt, sim in sorted(result["simulator"].items()):
        lines.append(f"simulator (x simulator: GFlash, same binning), {nt} thread(s): {sim['showers_per_s']:.0f} "
                     "showers/s")
    if g4 is not None:
        lines.append(describe_geant4(g4) + (" (x Geant4: model showers/s x Geant4 s/shower)" if with_g4 else ""))
    for key, peak in result["matmul_flops"].items():
        lines.append(f"dense matmul {key}: {peak / 1e9:.1f} GFLOP/s; network {result['flops_per_shower'] / 1e6:.2f} "
                     "MFLOP/shower")
    return "\n".join(lines)
