"""Whole collision events from Pythia 8 seen by the parametrised calorimeter: RPV SUSY, QCD, pile-up.

Processes (pp at √s = 13 TeV, Pythia 8 with its default Monash 2013 tune, MPI and
hadronisation on):

========  ==========================================================================
signal    gluino pairs (``SUSY:gg2gluinogluino``, ``SUSY:qqbar2gluinogluino``) from an
          SLHA spectrum written by hepgen (:func:`slha_spectrum`): g̃ at ``m_gluino``,
          χ̃⁰₁ at ``m_neutralino``, every other sparticle at 5 TeV (decoupled); decay
          tables g̃ → q q̄ χ̃⁰₁ (q = d, u, s, c, equal shares) and χ̃⁰₁ → u d s / ū d̄ s̄
          (the RPV UDD coupling λ''₁₁₂, 50 % each), so every event has ten hard quarks,
          as in the benchmark of Bhimji et al., arXiv:1711.03573.
qcd       QCD multi-jet background: ``HardQCD:all`` with ``PhaseSpace:pTHatMin`` =
          ``qcd_pt_hat_min`` (default 400 GeV: below it the 200 GeV fat-jet selection of
          the analysis is rarely met; raise it to enrich the tail).
minbias   soft-QCD inelastic events (``SoftQCD:inelastic``); with ``mu > 0`` each image
          sums N min-bias events, N = μ (``pileup="fixed"``, the paper's μ = 20 sample) or
          N ~ Poisson(μ) (``pileup="poisson"``).
========  ==========================================================================

A hard-scatter process with ``mu > 0`` overlays N min-bias events on every event before the
detector.  The particles of an image (hard scatter and pile-up) go through
:class:`hepgen.simulate.detector.Calorimeter` together, so the detector sees the summed
deposits (as a real calorimeter does); without smearing the image of the sum is the sum of the
images.  Truth jets are anti-kT R = 1.0 jets (FastJet) of the visible final-state particles
(no ν, no μ) of the hard scatter only, ``pT > truth_jet_pt_min``, the ``n_truth_jets``
leading ones.

:func:`simulate_events` splits the work into chunks (:func:`hepgen.simulate.chunks.run_chunks`:
parallel, seeded, resumable, atomic) and writes an :class:`hepgen.data.events.EventImages`
file.  Chunk seeds come from ``SeedSequence(seed, spawn_key=(point, chunk, stream))``.

Unphysical or unknown inputs (χ̃⁰₁ not lighter than g̃, a negative μ, an unknown process)
raise ``ValueError`` before any event is generated (:func:`check_request`).

Example:
    >>> check_request("signal", [(1400.0, 400.0)], 0.0)
    [(1400.0, 400.0)]
    >>> check_request("signal", [(400.0, 1400.0)], 0.0)
    Traceback (most recent call last):
        ...
    ValueError: masses: the neutralino must be lighter than the gluino, found m_gluino=400 GeV, m_neutralino=1400 GeV
    >>> "1000021  1400" in slha_spectrum(1400.0, 400.0)
    True

References:
    Pythia 8.3: Bierlich et al., arXiv:2203.11601.  SLHA: Skands et al., hep-ph/0311123.
    FastJet: arXiv:1111.6097.  Whole-event GANs: Farrell et al., EPJ Web Conf. 214 (2019) 09005.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hepgen._extras import require_extra
from hepgen._fastjet import quiet_fastjet
from hepgen.data.events import PROCESSES, EventImages, read_events, write_events
from hepgen.simulate.chunks import chunk_dir_for, chunk_seed, finish_chunks, run_chunks
from hepgen.simulate.detector import Calorimeter, DetectorConfig

try:  # the optional extra hepgen[jets]: the module imports without it, generating raises MissingExtraError
    import awkward as ak
    import fastjet
    import pythia8mc
except ImportError:
    ak = fastjet = pythia8mc = None

_WHAT = "event simulation (Pythia 8 + FastJet)"

__all__ = ["EVENT_PROCESSES", "EventGenConfig", "check_request", "generate_events", "parse_masses",
           "pythia_settings", "simulate_events", "slha_spectrum"]

log = logging.getLogger(__name__)

EVENT_PROCESSES = ("signal", "qcd", "minbias")
_MAX_PYTHIA_SEED = 900_000_000
_DECOUPLED = 5000.0
_SPARTICLES = (1000001, 1000002, 1000003, 1000004, 1000005, 1000006, 1000011, 1000012, 1000013, 1000014,
               1000015, 1000016, 2000001, 2000002, 2000003, 2000004, 2000005, 2000006, 2000011, 2000013,
               2000015, 1000023, 1000024, 1000025, 1000035, 1000037)
_INVISIBLE = (12, 13, 14, 16)


@dataclass(frozen=True)
class EventGenConfig:
    """Settings of the event generation (GeV).

    Arguments:
        ecm: centre-of-mass energy.
        qcd_pt_hat_min: lower pT̂ cut of the QCD multi-jet background.
        truth_jet_radius, truth_jet_pt_min, n_truth_jets: the stored particle-level jets.
        detector: :class:`~hepgen.simulate.detector.DetectorConfig` settings (a dict).
        events_per_batch: events per ``Pythia.nextBatch`` call.
        extra_settings: more Pythia ``readString`` lines for the hard process (applied last).
    """

    ecm: float = 13_000.0
    qcd_pt_hat_min: float = 400.0
    truth_jet_radius: float = 1.0
    truth_jet_pt_min: float = 200.0
    n_truth_jets: int = 10
    detector: dict = field(default_factory=lambda: DetectorConfig().to_dict())
    events_per_batch: int = 20
    extra_settings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not (self.ecm > 0 and self.qcd_pt_hat_min > 0 and self.truth_jet_radius > 0):
            raise ValueError(f"EventGenConfig: ecm, qcd_pt_hat_min and truth_jet_radius must be > 0, found "
                             f"{self.ecm}, {self.qcd_pt_hat_min}, {self.truth_jet_radius}")
        if int(self.n_truth_jets) < 1 or int(self.events_per_batch) < 1:
            raise ValueError(f"EventGenConfig: n_truth_jets and events_per_batch must be >= 1, found "
                             f"{self.n_truth_jets}, {self.events_per_batch}")
        object.__setattr__(self, "detector", DetectorConfig(**dict(self.detector)).to_dict())
        object.__setattr__(self, "extra_settings", tuple(self.extra_settings))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extra_settings"] = list(self.extra_settings)
        return d


def check_request(process: str, masses: Sequence | None, mu: float, pileup: str = "fixed",
                  ecm: float = 13_000.0) -> list[tuple[float, float]]:
    """Refuse unknown or unphysical requests (``ValueError``); return the mass points as floats.

    Signal needs mass points ``(m_gluino, m_neutralino)`` with ``0 < m_neutralino < m_gluino``
    and ``2 m_gluino < ecm``; qcd and minbias take none (``[(0, 0)]`` is returned).
    """
    if process not in EVENT_PROCESSES:
        raise ValueError(f"process: expected one of {list(EVENT_PROCESSES)}, found {process!r}")
    if not (isinstance(mu, (int, float, np.number)) and math.isfinite(float(mu)) and float(mu) >= 0):
        raise ValueError(f"mu: expected a finite pile-up mean >= 0, found {mu!r}")
    if pileup not in ("fixed", "poisson"):
        raise ValueError(f"pileup: expected 'fixed' or 'poisson', found {pileup!r}")
    if pileup == "fixed" and float(mu) != int(float(mu)):
        raise ValueError(f"mu: pileup='fixed' overlays exactly mu events, expected an integer, found {mu}")
    if process != "signal":
        if masses:
            raise ValueError(f"masses: process {process!r} has no SUSY masses, found {list(masses)}")
        return [(0.0, 0.0)]
    if not masses:
        raise ValueError("masses: process 'signal' needs at least one (m_gluino, m_neutralino) point, found none")
    points = []
    for m in masses:
        if len(m) != 2:
            raise ValueError(f"masses: expected (m_gluino, m_neutralino) pairs in GeV, found {m!r}")
        mg, mn = float(m[0]), float(m[1])
        if not (math.isfinite(mg) and math.isfinite(mn) and mn > 0):
            raise ValueError(f"masses: expected finite masses > 0 GeV, found m_gluino={mg:g}, m_neutralino={mn:g}")
        if not mn < mg:
            raise ValueError(f"masses: the neutralino must be lighter than the gluino, found "
                             f"m_gluino={mg:g} GeV, m_neutralino={mn:g} GeV")
        if not 2 * mg < ecm:
            raise ValueError(f"masses: a gluino pair needs 2 m_gluino < ecm={ecm:g} GeV, found m_gluino={mg:g} GeV")
        points.append((mg, mn))
    return points


def parse_masses(text: str | Sequence[str] | None) -> list[tuple[float, float]] | None:
    """Mass points from the command line: ``"1000:300,1400:400"`` (or a list of ``"MG:MN"``).

    >>> parse_masses("1000:300, 1400:400")
    [(1000.0, 300.0), (1400.0, 400.0)]
    >>> parse_masses("1000")
    Traceback (most recent call last):
        ...
    ValueError: masses: expected M_GLUINO:M_NEUTRALINO pairs in GeV separated by commas, found '1000'
    """
    if text is None:
        return None
    items = [t for part in ([text] if isinstance(text, str) else list(text)) for t in part.split(",") if t.strip()]
    out = []
    for item in items:
        try:
            mg, mn = (float(v) for v in item.split(":"))
        except ValueError:
            raise ValueError(f"masses: expected M_GLUINO:M_NEUTRALINO pairs in GeV separated by commas, "
                             f"found {item.strip()!r}") from None
        out.append((mg, mn))
    return out or None


def slha_spectrum(m_gluino: float, m_neutralino: float) -> str:
    """SLHA text of the benchmark spectrum (see the module docstring).

    Hand-written rather than with ``pyslha``: it is 70 fixed lines, and Pythia only needs the
    blocks below; this keeps hepgen free of one more dependency.  Mixing matrices are the
    identity (a pure bino χ̃⁰₁); widths are 10 MeV (prompt decays).
    """
    lines = ["# hepgen RPV gluino benchmark (hepgen.simulate.events.slha_spectrum)",
             "BLOCK MODSEL", "    1    0", "BLOCK SMINPUTS", "    1  1.27934e+02", "    2  1.16637e-05",
             "    3  1.18000e-01", "    4  9.11876e+01", "    5  4.18000e+00", "    6  1.73000e+02",
             "    7  1.77700e+00", "BLOCK MINPAR", "    3  10.0", "BLOCK GAUGE Q= 1000.0", "    1  0.36",
             "    2  0.64", "    3  1.06", "BLOCK MASS", "   25  125.0", "   35  5000.0", "   36  5000.0",
             "   37  5000.0"]
    offsets = {1000025: 1.0, 1000035: 2.0, 1000037: 1.0}  # keep the neutralinos mass-ordered
    lines += [f"   {pid}  {_DECOUPLED + offsets.get(pid, 0.0):.1f}" for pid in _SPARTICLES]
    lines += [f"   1000021  {float(m_gluino):.1f}", f"   1000022  {float(m_neutralino):.1f}"]
    for block, size in (("NMIX", 4), ("UMIX", 2), ("VMIX", 2), ("STOPMIX", 2), ("SBOTMIX", 2), ("STAUMIX", 2)):
        lines += [f"BLOCK {block}"] + [f"  {i} {i} 1.0" for i in range(1, size + 1)]
    lines += ["BLOCK ALPHA", "  -0.1", "BLOCK HMIX Q= 1000.0", "  1 1000.0", "  2 10.0",
              "DECAY 1000021 1.0E-02"]
    lines += [f"   0.25  3  1000022  {q}  {-q}" for q in (1, 2, 3, 4)]
    lines += ["DECAY 1000022 1.0E-02", "   0.5  3  2  1  3", "   0.5  3  -2  -1  -3", ""]
    return "\n".join(lines)


def pythia_settings(process: str, seed: int, config: EventGenConfig = EventGenConfig(),
                    slha_file: str | None = None) -> list[str]:
    """The Pythia ``readString`` lines of one process (``slha_file`` for the signal)."""
    common = [f"Beams:eCM = {config.ecm:g}", "Random:setSeed = on", f"Random:seed = {int(seed)}",
              "Print:quiet = on", "Next:numberCount = 0"]
    if process == "signal":
        if slha_file is None:
            raise ValueError("pythia_settings: process 'signal' needs an SLHA file")
        proc = ["SUSY:gg2gluinogluino = on", "SUSY:qqbar2gluinogluino = on", f"SLHA:file = {slha_file}",
                "SLHA:verbose = 0"]
    elif process == "qcd":
        proc = ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {config.qcd_pt_hat_min:g}"]
    elif process == "minbias":
        proc = ["SoftQCD:inelastic = on"]
    else:
        raise ValueError(f"process: expected one of {list(EVENT_PROCESSES)}, found {process!r}")
    extra = list(config.extra_settings) if process != "minbias" else []
    return common + proc + extra


def _make_pythia(settings: list[str]):
    if pythia8mc is None:
        require_extra("jets", _WHAT)
    p = pythia8mc.Pythia("", False)
    for line in settings:
        if not p.readString(line):
            raise ValueError(f"Pythia rejected the setting {line!r}")
    if not p.init():
        raise RuntimeError(f"Pythia initialisation failed with settings {settings}")
    return p


class _Source:
    """One Pythia instance handing out final-state particles of single events."""

    def __init__(self, settings: list[str], per_batch: int) -> None:
        self.pythia = _make_pythia(settings)
        self.per_batch = int(per_batch)
        self.buffer: list[dict] = []
        self.n_events = 0
        self._charge: dict[int, bool] = {}

    def _charged(self, pid: np.ndarray) -> np.ndarray:
        for u in np.unique(pid):
            if int(u) not in self._charge:
                self._charge[int(u)] = self.pythia.particleData.charge(int(u)) != 0
        return np.array([self._charge[int(i)] for i in pid], bool)

    def take(self, n: int) -> list[dict]:
        while len(self.buffer) < n:
            batch = self.pythia.nextBatch(min(self.per_batch, n - len(self.buffer)))
            prt = batch.prt[batch.prt.status > 0]
            counts = ak.to_numpy(ak.num(prt))
            off = np.concatenate([[0], np.cumsum(counts)])
            cols = {"pid": ak.to_numpy(ak.flatten(prt.id)).astype(np.int64)}
            for c in ("px", "py", "pz", "e"):
                cols[c] = ak.to_numpy(ak.flatten(getattr(prt.p, c))).astype(np.float64)
            cols["charged"] = self._charged(cols["pid"])
            for k in range(len(counts)):
                self.buffer.append({key: v[off[k]:off[k + 1]] for key, v in cols.items()})
            self.n_events += len(counts)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def _truth_jets(events: list[dict], config: EventGenConfig) -> np.ndarray:
    """``(N, n_truth_jets, 4)`` [pt, eta, phi, mass] of anti-kT jets of the visible particles."""
    out = np.zeros((len(events), config.n_truth_jets, 4), np.float32)
    if not events:
        return out
    if ak is None or fastjet is None:
        require_extra("jets", _WHAT)
    quiet_fastjet()
    vis = [ev for ev in events]
    masks = [~np.isin(np.abs(ev["pid"]), _INVISIBLE) for ev in vis]
    counts = np.array([m.sum() for m in masks])
    cat = {c: np.concatenate([ev[c][m] for ev, m in zip(vis, masks)]) for c in ("px", "py", "pz", "e")}
    arr = ak.unflatten(ak.zip({"px": cat["px"], "py": cat["py"], "pz": cat["pz"], "E": cat["e"]}), counts)
    seq = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm, config.truth_jet_radius))
    jets = seq.inclusive_jets(min_pt=config.truth_jet_pt_min)
    for k, ev_jets in enumerate(ak.to_list(jets)):
        rows = []
        for j in ev_jets:
            pt = math.hypot(j["px"], j["py"])
            if pt <= config.truth_jet_pt_min:
                continue
            eta = math.asinh(j["pz"] / pt)
            m2 = j["E"] ** 2 - j["px"] ** 2 - j["py"] ** 2 - j["pz"] ** 2
            rows.append((pt, eta, math.atan2(j["py"], j["px"]), math.sqrt(max(m2, 0.0))))
        rows.sort(key=lambda r: -r[0])
        rows = rows[:config.n_truth_jets]
        if rows:
            out[k, :len(rows)] = rows
    return out


def generate_events(process: str, n_events: int, seed: int, config: EventGenConfig = EventGenConfig(),
                    masses: tuple[float, float] | None = None, mu: float = 0.0, pileup: str = "fixed",
                    ) -> EventImages:
    """Generate ``n_events`` event images of one process at one mass point in this process.

    Arguments:
        process: ``signal``, ``qcd`` or ``minbias``.
        n_events: images to make.
        seed: master seed of this chunk (Pythia seeds and the detector's are drawn from it).
        config: generation settings.
        masses: ``(m_gluino, m_neutralino)`` in GeV for the signal; None otherwise.
        mu: pile-up: min-bias events overlaid per image (``minbias`` with ``mu > 0``: the image
            is the pile-up alone, process label ``pileup``; ``mu = 0`` for ``minbias``: one
            min-bias event per image).
        pileup: ``fixed`` (N = μ) or ``poisson`` (N ~ Poisson(μ)).

    Returns:
        :class:`~hepgen.data.events.EventImages`; ``attrs`` hold ``n_hard_events``,
        ``n_minbias_events``, the wall time ``seconds`` and the CPU time of this process
        ``process_seconds`` (the cost that does not grow when other jobs share the cores).
    """
    (point,) = check_request(process, [masses] if masses is not None else None, mu, pileup, config.ecm)
    n_events = int(n_events)
    if n_events < 0:
        raise ValueError(f"n_events: expected >= 0, found {n_events}")
    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(chunk_seed(seed, 2))
    cal = Calorimeter(DetectorConfig(**config.detector))
    hard_seed, pu_seed = (chunk_seed(seed, k, maximum=_MAX_PYTHIA_SEED) for k in (0, 1))
    pure_pileup = process == "minbias" and mu > 0
    with tempfile.TemporaryDirectory(prefix="hepgen-slha-") as tmp:
        hard = []
        if not pure_pileup and n_events:
            slha = None
            if process == "signal":
                slha = os.path.join(tmp, "spectrum.slha")
                Path(slha).write_text(slha_spectrum(*point))
            src = _Source(pythia_settings(process, hard_seed, config, slha), config.events_per_batch)
            hard = src.take(n_events)
            n_hard = src.n_events
        else:
            n_hard = 0
        n_pu = (np.full(n_events, int(mu)) if pileup == "fixed" else rng.poisson(mu, n_events)) if mu > 0 \
            else np.zeros(n_events, int)
        pu_events: list[dict] = []
        n_minbias = 0
        if n_pu.sum():
            pu_src = _Source(pythia_settings("minbias", pu_seed, config), max(config.events_per_batch, 50))
            pu_events = pu_src.take(int(n_pu.sum()))
            n_minbias = pu_src.n_events
    parts = [[] for _ in range(n_events)]
    for k, ev in enumerate(hard):
        parts[k].append(ev)
    owner = np.repeat(np.arange(n_events), n_pu)
    for k, ev in zip(owner, pu_events):
        parts[k].append(ev)
    cols = {}
    for c in ("pid", "px", "py", "pz", "e", "charged"):
        cols[c] = np.concatenate([ev[c] for evs in parts for ev in evs]) if n_events and any(parts) \
            else np.zeros(0, bool if c == "charged" else float)
    index = np.concatenate([np.full(sum(len(ev["pid"]) for ev in evs), k) for k, evs in enumerate(parts)]) \
        if n_events else np.zeros(0, np.int64)
    images = cal.images(cols["pid"].astype(np.int64), cols["px"], cols["py"], cols["pz"], cols["e"],
                        index.astype(np.int64), n_events, rng, charged=cols["charged"])
    truth = _truth_jets(hard, config) if hard else np.zeros((n_events, config.n_truth_jets, 4), np.float32)
    label = "pileup" if pure_pileup else process
    conds = np.tile(np.array([point[0], point[1], float(mu)], np.float32), (n_events, 1))
    det = DetectorConfig(**config.detector)
    attrs = {"generator": "pythia8mc + hepgen.simulate.detector (hepgen.simulate.events)",
             "n_hard_events": int(n_hard), "n_minbias_events": int(n_minbias),
             "seconds": time.perf_counter() - t0, "process_seconds": time.process_time() - c0,
             "seed": int(seed), "eta_max": float(det.eta_max),
             "channel_names": ["total"] if det.channels == "total" else ["ecal", "hcal"], "pileup": pileup}
    return EventImages(images, conds, truth, np.full(n_events, PROCESSES.index(label), np.int8), attrs)


def _run_chunk(task: dict) -> dict:
    """Worker entry point: one chunk written atomically to ``task['path']``."""
    cfg = dict(task["config"])
    cfg["extra_settings"] = tuple(cfg.get("extra_settings", ()))
    data = generate_events(task["process"], task["n"], task["seed"], EventGenConfig(**cfg),
                           tuple(task["masses"]) if task["process"] == "signal" else None,
                           task["mu"], task["pileup"])
    write_events(task["path"], data, compression=None)
    return {"path": task["path"], "n": len(data)}


def _chunk_ok(path: Path, n: int) -> bool:
    try:
        return len(read_events(path)) == n
    except (ValueError, OSError):
        return False


def simulate_events(output: str | os.PathLike, process: str, n_per_point: int,
                    masses: Sequence[tuple[float, float]] | None = None, mu: float = 0.0,
                    pileup: str = "fixed", seed: int = 0, config: EventGenConfig = EventGenConfig(),
                    workers: int = 1, chunk_size: int = 200, resume: bool = True,
                    progress: bool = True) -> EventImages:
    """Generate event images of one process (at every mass point for the signal) and write ``output``.

    Arguments:
        output: the HDF5 file to write (:func:`hepgen.data.events.write_events`).
        process: ``signal``, ``qcd`` or ``minbias``.
        n_per_point: images per mass point (per call for qcd and minbias).
        masses: ``[(m_gluino, m_neutralino), ...]`` in GeV for the signal (a grid in one call).
        mu, pileup: see :func:`generate_events`.
        seed: master seed; chunk ``c`` of point ``p`` is seeded from ``SeedSequence(seed, (p, c))``.
        config: generation settings.
        workers, chunk_size, resume, progress: see :func:`hepgen.simulate.chunks.run_chunks`.

    Returns:
        the merged :class:`EventImages` (``attrs`` hold the settings, ``cpu_seconds``, the summed
        wall time of the chunks, and ``process_seconds``, their summed CPU time).
    """
    points = check_request(process, masses, mu, pileup, config.ecm)
    require_extra("jets", _WHAT, ("pythia8mc", "fastjet", "awkward"))  # before any worker starts
    if int(n_per_point) < 1 or int(chunk_size) < 1 or int(workers) < 1:
        raise ValueError(f"n_per_point, chunk_size and workers must be >= 1, found {n_per_point}, "
                         f"{chunk_size}, {workers}")
    output = Path(output)
    n_per_point, chunk_size = int(n_per_point), int(chunk_size)
    chunk_dir = chunk_dir_for(output)
    manifest = {"process": process, "masses": [list(p) for p in points], "mu": float(mu), "pileup": pileup,
                "n_per_point": n_per_point, "seed": int(seed), "chunk_size": chunk_size,
                "config": config.to_dict()}
    tasks = []
    for p, point in enumerate(points):
        for c, start in enumerate(range(0, n_per_point, chunk_size)):
            tasks.append({"process": process, "masses": list(point), "mu": float(mu), "pileup": pileup,
                          "n": min(chunk_size, n_per_point - start), "seed": chunk_seed(seed, p, c),
                          "config": config.to_dict(), "path": str(chunk_dir / f"p{p:03d}_{c:05d}.h5")})
    run_chunks(chunk_dir, manifest, tasks, _run_chunk, lambda t: _chunk_ok(Path(t["path"]), t["n"]),
               workers=workers, resume=resume, progress=progress, desc=f"pythia {process}", unit="event")
    parts = [read_events(t["path"]) for t in tasks]
    attrs = {**parts[0].attrs, "seed": int(seed), "process_name": process, "mu": float(mu),
             "masses": json.dumps([list(p) for p in points]), "config": json.dumps(config.to_dict()),
             "n_hard_events": int(sum(p.attrs.get("n_hard_events", 0) for p in parts)),
             "n_minbias_events": int(sum(p.attrs.get("n_minbias_events", 0) for p in parts)),
             "cpu_seconds": float(sum(p.attrs.get("seconds", 0.0) for p in parts)),
             "process_seconds": float(sum(p.attrs.get("process_seconds", 0.0) for p in parts))}
    attrs.pop("seconds", None)
    data = EventImages.concatenate(parts, attrs)
    write_events(output, data)
    finish_chunks(chunk_dir)
    return data
