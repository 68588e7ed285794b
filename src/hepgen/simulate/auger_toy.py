"""An Auger-like surface-detector **toy**: the mismatch structure of the refiner study, not a physics simulation.

Erdmann, Geiger, Glombitza and Schmidt (arXiv:1802.03325) refine simulated Pierre Auger
surface-detector events towards "data" that differ in the balance of the electromagnetic
(EM) and muonic signal and in noise.  This module reproduces that *structure* with a few
lines of parametrised toy physics, so that the refiner of :mod:`hepgen.refine` can be
demonstrated on the study's own kind of experiment.  None of the numbers below are fitted
to Auger data; do not use the toy for physics.

Event model (all per event, vectorised with numpy):

* footprint: ``9 × 9`` stations on a square grid of ``spacing_m`` (1500 m); the core is
  uniform in the central cell; azimuth uniform; ``sin²θ`` uniform in ``[0, sin²60°]``;
  energy log-uniform in ``energy_range`` (EeV).
* size: ``S1000 = 20 VEM · (E / 10 EeV)^(1/1.08)``; the EM part ``f_em · S1000`` is
  attenuated by ``exp(−(sec θ − 1)/0.6)``, the muonic part ``(1 − f_em) · S1000`` by
  ``exp(−(sec θ − 1)/3)``.
* lateral distribution (shower-plane distance ``r``, m): ``S(r) = S1000 (r/1000)^−β
  ((r + 700)/1700)^−β`` with ``β_em = 2.6`` (steep) and ``β_μ = 2.0`` (flat).
* time traces, ``n_t = 80`` bins of 25 ns starting at the station's first particle:
  EM particles arrive with a Gamma(2, τ_em) delay, ``τ_em = 2 + 6 r/1000`` bins, and
  deposit in quanta of 0.05 VEM (Poisson); muons arrive with a Gamma(1.5, τ_μ) delay,
  ``τ_μ = 1 + 3 r/1000`` bins, Poisson in number with log-normal (σ = 0.3) amplitudes of
  1 VEM each; both pulses decay with a 1.5-bin exponential (the water tank's light decay).
* readout: Gaussian baseline noise ``noise_vem`` per bin; a station whose recorded signal
  stays below ``trigger_vem`` in total is not triggered and reads all zeros.

``mode="sim"`` uses ``f_em = 0.7`` (70 % EM / 30 % muons) and noise 0.03 VEM; ``mode="data"``
uses ``f_em = 0.3`` (30 % / 70 %) and noise 0.08 VEM: the mismatch of the study.

Example:
    >>> d = simulate_auger(3, mode="sim", seed=1)
    >>> d.traces.shape, d.energy.shape
    ((3, 9, 9, 80), (3, 1))
    >>> bool(simulate_auger(3, mode="sim", seed=1).traces.sum() == d.traces.sum())
    True
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from scipy.special import gammainc  # regularised lower incomplete Gamma (arrival-time CDF)

from hepgen.data.traces import TraceData, read_traces, write_traces
from hepgen.simulate.chunks import chunk_dir_for, chunk_seed, finish_chunks, run_chunks

__all__ = ["MODES", "AugerToyConfig", "simulate_auger", "simulate_auger_file"]

#: (EM fraction, noise VEM per bin) of the two modes of the study
MODES = {"sim": (0.7, 0.03), "data": (0.3, 0.08)}
_C_M_PER_NS = 0.299792458


class AugerToyConfig:
    """Parameters of the toy (see the module docstring); every argument is keyword-only.

    Arguments:
        em_fraction: EM share of S1000 at vertical incidence (sim 0.7, data 0.3).
        noise_vem: Gaussian baseline noise per time bin, VEM.
        grid: stations per side (9).  n_t: time bins (80).  spacing_m: 1500.  bin_ns: 25.
        energy_range: (lo, hi) EeV, log-uniform.  max_zenith_deg: 60.
        trigger_vem: total recorded signal a station needs to be read out (3 VEM).
    """

    def __init__(self, *, em_fraction: float = 0.7, noise_vem: float = 0.03, grid: int = 9, n_t: int = 80,
                 spacing_m: float = 1500.0, bin_ns: float = 25.0, energy_range=(3.0, 100.0),
                 max_zenith_deg: float = 60.0, trigger_vem: float = 3.0) -> None:
        if not 0.0 <= em_fraction <= 1.0:
            raise ValueError(f"em_fraction: expected a number in [0, 1], found {em_fraction!r}")
        if not (noise_vem >= 0 and trigger_vem >= 0):
            raise ValueError(f"noise_vem and trigger_vem: expected >= 0, found {noise_vem!r}, {trigger_vem!r}")
        if int(grid) < 1 or int(n_t) < 8:
            raise ValueError(f"grid >= 1 and n_t >= 8 expected, found grid={grid!r}, n_t={n_t!r}")
        lo, hi = (float(v) for v in energy_range)
        if not 0 < lo < hi:
            raise ValueError(f"energy_range: expected 0 < lo < hi (EeV), found {energy_range!r}")
        if not 0 <= max_zenith_deg < 90:
            raise ValueError(f"max_zenith_deg: expected [0, 90), found {max_zenith_deg!r}")
        self.em_fraction, self.noise_vem = float(em_fraction), float(noise_vem)
        self.grid, self.n_t = int(grid), int(n_t)
        self.spacing_m, self.bin_ns = float(spacing_m), float(bin_ns)
        self.energy_range = (lo, hi)
        self.max_zenith_deg, self.trigger_vem = float(max_zenith_deg), float(trigger_vem)

    @classmethod
    def for_mode(cls, mode: str, **overrides) -> AugerToyConfig:
        """The configuration of ``mode`` (``"sim"`` or ``"data"``), with ``overrides``."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {sorted(MODES)}, found {mode!r}")
        em, noise = MODES[mode]
        return cls(**{"em_fraction": em, "noise_vem": noise, **overrides})

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def _pulse_profile(tau: np.ndarray, shape: float, n_t: int) -> np.ndarray:
    """(..., n_t) probability per bin of a Gamma(shape, tau) arrival delay (bins), bin 0 = first particle."""
    edges = np.arange(n_t + 1, dtype=np.float64)
    cdf = gammainc(shape, edges / tau[..., None])
    return np.diff(cdf, axis=-1)


def _decay(x: np.ndarray, bins: float) -> np.ndarray:
    """Exponential light decay along the last axis: y[t] = (1 − a) Σ_k a^k x[t − k], a = exp(−1/bins)."""
    a = np.exp(-1.0 / bins)
    y = np.empty_like(x)
    acc = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1]):  # 80 steps, vectorised over events and stations
        acc = a * acc + x[..., t]
        y[..., t] = (1 - a) * acc
    return y


def _simulate_batch(n: int, cfg: AugerToyConfig, rng: np.random.Generator) -> dict:
    g = cfg.grid
    lo, hi = cfg.energy_range
    energy = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    s2max = np.sin(np.radians(cfg.max_zenith_deg)) ** 2
    zenith = np.arcsin(np.sqrt(rng.uniform(0, s2max, n)))
    phi = rng.uniform(-np.pi, np.pi, n)
    core = rng.uniform(-0.5, 0.5, (n, 2)) * cfg.spacing_m
    pos = (np.arange(g) - (g - 1) / 2) * cfg.spacing_m
    sx, sy = np.meshgrid(pos, pos, indexing="ij")
    dx = sx[None] - core[:, 0, None, None]  # (n, g, g), m
    dy = sy[None] - core[:, 1, None, None]
    along = dx * np.cos(phi)[:, None, None] + dy * np.sin(phi)[:, None, None]
    r = np.sqrt(np.maximum(dx**2 + dy**2 - (np.sin(zenith)[:, None, None] * along) ** 2, 0.0))
    r = np.maximum(r, 300.0)  # no station sits inside the core region of the toy
    sec = 1.0 / np.cos(zenith)
    s1000 = 20.0 * (energy / 10.0) ** (1 / 1.08)
    s_em = cfg.em_fraction * s1000 * np.exp(-(sec - 1) / 0.6)
    s_mu = (1 - cfg.em_fraction) * s1000 * np.exp(-(sec - 1) / 3.0)

    def ldf(beta):
        return (r / 1000.0) ** -beta * ((r + 700.0) / 1700.0) ** -beta

    mean_em = s_em[:, None, None] * ldf(2.6)
    mean_mu = s_mu[:, None, None] * ldf(2.0)
    km = r / 1000.0
    p_em = _pulse_profile(2.0 + 6.0 * km, 2.0, cfg.n_t)  # (n, g, g, n_t)
    p_mu = _pulse_profile(1.0 + 3.0 * km, 1.5, cfg.n_t)
    quantum = 0.05
    em = rng.poisson(mean_em[..., None] * p_em / quantum) * quantum
    n_mu = rng.poisson(mean_mu[..., None] * p_mu)
    amp = np.exp(rng.normal(0.0, 0.3, n_mu.shape) - 0.045)  # log-normal, mean 1 VEM per muon
    mu = n_mu * amp
    traces = _decay(em + mu, 1.5) + rng.normal(0.0, cfg.noise_vem, (n, g, g, cfg.n_t)) if cfg.noise_vem else \
        _decay(em + mu, 1.5)
    triggered = traces.sum(axis=-1) >= cfg.trigger_vem
    traces = np.where(triggered[..., None], traces, 0.0)
    return {"traces": traces.astype(np.float32), "energy": energy[:, None], "zenith": zenith[:, None]}


def simulate_auger(n: int, mode: str = "sim", seed: int | np.random.Generator = 0,
                   config: AugerToyConfig | None = None, batch_size: int = 500) -> TraceData:
    """Simulate ``n`` toy events in memory.

    Arguments:
        n: number of events (>= 0).
        mode: ``"sim"`` or ``"data"`` (see :data:`MODES`); ignored when ``config`` is given.
        seed: int or ``numpy.random.Generator``.
        config: a full :class:`AugerToyConfig`.
        batch_size: events simulated together (memory ≈ 60 kB each).

    Returns:
        :class:`hepgen.data.traces.TraceData` with ``traces`` ``(n, 9, 9, 80)`` VEM,
        ``energy`` ``(n, 1)`` EeV and ``zenith`` ``(n, 1)`` rad.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected an integer >= 0, found {n!r}")
    cfg = config if config is not None else AugerToyConfig.for_mode(mode)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    parts = [_simulate_batch(min(batch_size, n - s), cfg, rng) for s in range(0, n, batch_size)]
    g = cfg.grid
    if parts:
        traces = np.concatenate([p["traces"] for p in parts])
        energy = np.concatenate([p["energy"] for p in parts])
        zenith = np.concatenate([p["zenith"] for p in parts])
    else:
        traces, energy, zenith = np.zeros((0, g, g, cfg.n_t), np.float32), np.zeros((0, 1)), np.zeros((0, 1))
    attrs = {"generator": "hepgen.simulate.auger_toy (a toy, not an Auger simulation)",
             "mode": mode if config is None else "custom", "em_fraction": cfg.em_fraction,
             "noise_vem": cfg.noise_vem,
             "seed": int(seed) if isinstance(seed, (int, np.integer)) else "generator"}
    return TraceData(traces, energy, zenith, cfg.spacing_m, cfg.bin_ns, attrs)


def _chunk_worker(task: dict) -> dict:
    cfg = AugerToyConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in task["config"].items()})
    data = simulate_auger(int(task["n"]), config=cfg, seed=int(task["seed"]))
    write_traces(task["path"], data)
    return task


def _chunk_done(task: dict) -> bool:
    path = Path(task["path"])
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f["traces"].shape[0] == int(task["n"])
    except (OSError, KeyError):
        return False


def simulate_auger_file(n: int, output: str | os.PathLike, mode: str = "sim", seed: int = 0,
                        chunk_size: int = 1000, workers: int = 1, resume: bool = True,
                        progress: bool = True) -> Path:
    """Simulate ``n`` toy events into ``output`` (HDF5, :mod:`hepgen.data.traces` layout).

    Runs through :func:`hepgen.simulate.chunks.run_chunks`: chunks of ``chunk_size`` events
    seeded by ``chunk_seed(seed, i)`` (the file does not depend on ``workers``), resumable
    after an interruption, merged atomically.
    """
    cfg = AugerToyConfig.for_mode(mode)
    output = Path(output)
    chunk_dir = chunk_dir_for(output)
    sizes = [min(chunk_size, n - s) for s in range(0, n, chunk_size)] or [0]
    tasks = [{"path": str(chunk_dir / f"chunk_{i:05d}.h5"), "n": m, "seed": chunk_seed(seed, i),
              "config": cfg.to_dict()} for i, m in enumerate(sizes)]
    manifest = {"generator": "auger_toy", "n": n, "mode": mode, "seed": seed, "chunk_size": chunk_size,
                "config": cfg.to_dict()}
    run_chunks(chunk_dir, manifest, tasks, _chunk_worker, _chunk_done, workers=workers, resume=resume,
               progress=progress, desc=f"auger toy ({mode})")
    parts = [read_traces(t["path"]) for t in tasks]
    merged = TraceData(np.concatenate([p.traces for p in parts]), np.concatenate([p.energy for p in parts]),
                       np.concatenate([p.zenith for p in parts]), cfg.spacing_m, cfg.bin_ns,
                       {**parts[0].attrs, "mode": mode, "seed": int(seed), "n_chunks": len(tasks)})
    write_traces(output, merged)
    finish_chunks(chunk_dir)
    return output
