"""JetNet-style jet samples from Pythia 8 and FastJet: gluon, light-quark, top, W and Z jets.

Each jet type has its own hard process in pp collisions at √s = 13 TeV (Pythia 8, Monash
2013 tune, multi-parton interactions and hadronisation on):

====  =====================================================================================
type  Pythia processes (all decays of the heavy objects forced to quarks: ``onIfAny = 1 2 3 4 5``)
====  =====================================================================================
g     ``HardQCD:gg2gg``, ``HardQCD:qqbar2gg``
q     ``HardQCD:qg2qg``, ``HardQCD:qq2qq``, ``HardQCD:qqbar2qqbarNew``, ``HardQCD:gg2qqbar``
t     ``Top:gg2ttbar``, ``Top:qqbar2ttbar``; W → quarks
w     ``WeakDoubleBoson:ffbar2WW``; W → quarks
z     ``WeakDoubleBoson:ffbar2gmZgmZ`` with ``WeakZ0:gmZmode = 2`` (pure Z); Z → quarks
====  =====================================================================================

Selection, in order (defaults of :class:`JetGenConfig`):

1. the hard 2 → 2 scattering has ``990 < pT_hat < 1010`` GeV (``PhaseSpace:pTHatMin/Max``),
   JetNet's parton-level window ΔpT/pT = 0.01 around 1 TeV;
2. all final-state particles except neutrinos are clustered with anti-kT, R = 0.8
   (FastJet, E-scheme);
3. a jet is kept if ``800 < pT < 1600`` GeV (JetNet's window for its 1 TeV bin) and
   ``|η| < 2.5`` (inside a tracker-like acceptance), and if it lies within ΔR(η, φ) < 0.4 of
   an outgoing object of the hard process of its type (the gluon; a u, d or s quark —
   c and b quarks entering ``qq2qq`` from the parton densities are not "light"; the top; the
   W; the Z), so a ``qg2qg`` event gives a q jet and its recoiling gluon is dropped.

JetNet itself (Kansal et al., arXiv:2106.11535) generated the partons with MadGraph5_aMC@NLO
at leading order and showered them with Pythia 8.212 (Monash 2013), with a simplified
detector; here Pythia 8 makes the hard process too and the constituents are stable
particles (no detector), so distributions are close to JetNet's but not identical.

Features per jet (:mod:`hepgen.data.jets`): the ``n_particles`` leading constituents by pT
with ``eta_rel = η − η_jet``, ``phi_rel = φ − φ_jet`` (wrapped into [−π, π)),
``pt_rel = pT / pT_jet``, ``mask``; the jet's ``pt``, ``eta`` (pseudorapidity), ``mass``
(of all constituents) and ``num_particles`` (all constituents); its type.

:func:`simulate_jets` splits the work into chunks of jets, runs them in worker processes,
writes each finished chunk to a file, and merges them atomically; re-running the same
command resumes (finished chunks are kept).  Every chunk has its own seed drawn from
``numpy.random.SeedSequence(seed, spawn_key=(type index, chunk index))``, so the output
does not depend on the number of workers.

References:
    Pythia 8.3: Bierlich et al., arXiv:2203.11601.
    FastJet: Cacciari, Salam, Soyez, arXiv:1111.6097; anti-kT: arXiv:0802.1189.
    JetNet: Kansal et al., arXiv:2106.11535.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hepgen._extras import needs_extra, require_extra
from hepgen._fastjet import quiet_fastjet
from hepgen.data.jets import JET_TYPES, JetData, jet_type_index, merge_jet_files, read_jets, write_jets
from hepgen.simulate.chunks import chunk_dir_for, finish_chunks, run_chunks
from hepgen.simulate.chunks import chunk_seed as _chunk_seed

_WHAT = "jet simulation (Pythia 8 + FastJet)"

__all__ = [
    "PROCESSES",
    "JetGenConfig",
    "chunk_seed",
    "generate_jets",
    "pythia_settings",
    "simulate_jets",
    "simulate_jets_to_file",
]

log = logging.getLogger(__name__)

_QUARK_DECAYS = "1 2 3 4 5"
PROCESSES: dict[str, tuple[str, ...]] = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on"),
    "q": ("HardQCD:qg2qg = on", "HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on", "HardQCD:gg2qqbar = on"),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", f"24:onIfAny = {_QUARK_DECAYS}"),
    "w": ("WeakDoubleBoson:ffbar2WW = on", "24:onMode = off", f"24:onIfAny = {_QUARK_DECAYS}"),
    "z": ("WeakDoubleBoson:ffbar2gmZgmZ = on", "WeakZ0:gmZmode = 2", "23:onMode = off",
          f"23:onIfAny = {_QUARK_DECAYS}"),
}
_INVISIBLE = (12, 14, 16)  # neutrinos are not clustered
_MAX_PYTHIA_SEED = 900_000_000  # Pythia's Random:seed range is 1 … 900 000 000


@dataclass(frozen=True)
class JetGenConfig:
    """Settings of the jet generation (GeV, radians).

    Arguments:
        n_particles: constituents kept per jet (JetNet: 30 or 150).
        ecm: centre-of-mass energy of the pp collisions.
        pt_hat_range: window of the hard scattering's pT (``PhaseSpace:pTHatMin/Max``).
        jet_pt_range: window of the jet pT.
        max_abs_eta: largest |η| of a jet.
        radius: anti-kT distance parameter R.
        match_dr: largest ΔR between a jet and the hard-process object of its type.
        events_per_batch: events per call of ``Pythia.nextBatch``.
        extra_settings: more Pythia ``readString`` lines (applied last).
    """

    n_particles: int = 30
    ecm: float = 13_000.0
    pt_hat_range: tuple[float, float] = (990.0, 1010.0)
    jet_pt_range: tuple[float, float] = (800.0, 1600.0)
    max_abs_eta: float = 2.5
    radius: float = 0.8
    match_dr: float = 0.4
    events_per_batch: int = 50
    extra_settings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if int(self.n_particles) < 1:
            raise ValueError(f"n_particles: expected >= 1, found {self.n_particles}")
        for name in ("pt_hat_range", "jet_pt_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi:
                raise ValueError(f"{name}: expected 0 <= LO < HI (GeV), found {lo} {hi}")
        if not (self.radius > 0 and self.match_dr > 0 and self.max_abs_eta > 0 and self.ecm > 0):
            raise ValueError("radius, match_dr, max_abs_eta and ecm must be > 0, found "
                             f"{self.radius}, {self.match_dr}, {self.max_abs_eta}, {self.ecm}")
        object.__setattr__(self, "pt_hat_range", tuple(float(x) for x in self.pt_hat_range))
        object.__setattr__(self, "jet_pt_range", tuple(float(x) for x in self.jet_pt_range))
        object.__setattr__(self, "extra_settings", tuple(self.extra_settings))

    def to_dict(self) -> dict:
        """JSON-able dict of the settings."""
        d = asdict(self)
        d["pt_hat_range"], d["jet_pt_range"], d["extra_settings"] = (
            list(self.pt_hat_range), list(self.jet_pt_range), list(self.extra_settings))
        return d


def chunk_seed(seed: int, type_index: int, chunk_index: int) -> int:
    """Pythia seed (1 … 900 000 000) of one chunk, from ``SeedSequence(seed, spawn_key=(type, chunk))``."""
    return _chunk_seed(seed, type_index, chunk_index, maximum=_MAX_PYTHIA_SEED)


def pythia_settings(jet_type: str, seed: int, config: JetGenConfig = JetGenConfig()) -> list[str]:
    """The Pythia ``readString`` lines for one jet type (see the module docstring)."""
    name = JET_TYPES[jet_type_index(jet_type)]
    lo, hi = config.pt_hat_range
    return [
        f"Beams:eCM = {config.ecm:g}",
        "Tune:pp = 14",  # Monash 2013, as JetNet
        *PROCESSES[name],
        f"PhaseSpace:pTHatMin = {lo:g}",
        f"PhaseSpace:pTHatMax = {hi:g}",
        "Random:setSeed = on",
        f"Random:seed = {int(seed)}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        *config.extra_settings,
    ]


def _make_pythia(jet_type: str, seed: int, config: JetGenConfig):
    with needs_extra("jets", _WHAT):  # lazy import of an optional extra (a worker process imports it)
        import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(jet_type, seed, config):
        if not pythia.readString(line):
            raise ValueError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia initialisation failed for jet type {jet_type!r} "
                           f"with settings {pythia_settings(jet_type, seed, config)}")
    return pythia


def _is_type(pid: np.ndarray, type_name: str) -> np.ndarray:
    a = np.abs(pid)
    return {"g": a == 21, "q": (a >= 1) & (a <= 3), "t": a == 6, "w": a == 24, "z": a == 23}[type_name]


def _pt_eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def _wrap(dphi):
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def _jets_from_batch(batch, type_name: str, config: JetGenConfig):
    """Cluster one ``nextBatch`` of events; return ``(particle_features, jet_features)`` of the kept jets."""
    with needs_extra("jets", _WHAT):  # lazy import of an optional extra
        import awkward as ak
        import fastjet

    prt = batch.prt
    status, pid = prt.status, prt.id
    # outgoing objects of the hard 2 → 2 process: entries whose mother is incoming parton 3 or 4
    hard = ((prt.mother1 == 3) | (prt.mother1 == 4)) & ((abs(status) == 22) | (abs(status) == 23))
    hp = prt[hard]
    h_n = ak.to_numpy(ak.num(hp))
    h_keep = _is_type(ak.to_numpy(ak.flatten(hp.id)), type_name)
    _, h_eta, h_phi = _pt_eta_phi(*(ak.to_numpy(ak.flatten(getattr(hp.p, c))) for c in ("px", "py", "pz")))
    h_off = np.concatenate([[0], np.cumsum(h_n)])

    apid = abs(pid)
    final = prt[(status > 0) & (apid != _INVISIBLE[0]) & (apid != _INVISIBLE[1]) & (apid != _INVISIBLE[2])]
    vec = ak.zip({"px": final.p.px, "py": final.p.py, "pz": final.p.pz, "E": final.p.e}, with_name="Momentum4D")
    f_n = ak.to_numpy(ak.num(vec))
    f_off = np.concatenate([[0], np.cumsum(f_n)])
    fpx, fpy, fpz = (ak.to_numpy(ak.flatten(getattr(vec, c))) for c in ("px", "py", "pz"))

    seq = fastjet.ClusterSequence(vec, fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius))
    lo, hi = config.jet_pt_range
    jets = seq.inclusive_jets(min_pt=lo)
    cons = seq.constituent_index(min_pt=lo)
    j_n = ak.to_numpy(ak.num(jets))
    jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(getattr(jets, c))) for c in ("px", "py", "pz", "E"))
    c_n = ak.to_numpy(ak.flatten(ak.num(cons, axis=2)))
    c_idx = ak.to_numpy(ak.flatten(cons, axis=None)).astype(np.int64)
    c_off = np.concatenate([[0], np.cumsum(c_n)])
    j_event = np.repeat(np.arange(len(j_n)), j_n)
    j_pt, j_eta, j_phi = _pt_eta_phi(jpx, jpy, jpz)
    j_mass = np.sqrt(np.maximum(je**2 - jpx**2 - jpy**2 - jpz**2, 0.0))

    P = config.n_particles
    out_pf, out_jf = [], []
    for j in np.flatnonzero((j_pt > lo) & (j_pt < hi) & (np.abs(j_eta) < config.max_abs_eta)):
        ev = j_event[j]
        sl = slice(h_off[ev], h_off[ev + 1])
        keep = h_keep[sl]
        if not keep.any():
            continue
        dr = np.hypot(h_eta[sl][keep] - j_eta[j], _wrap(h_phi[sl][keep] - j_phi[j]))
        # anti-kT jets are > R apart, so no two kept jets share one parton when match_dr <= R/2
        if dr.min() >= config.match_dr:
            continue
        idx = c_idx[c_off[j]:c_off[j + 1]] + f_off[ev]
        pt, eta, phi = _pt_eta_phi(fpx[idx], fpy[idx], fpz[idx])
        order = np.argsort(-pt, kind="stable")[:P]
        k = order.size
        pf = np.zeros((P, 4), dtype=np.float32)
        pf[:k, 0] = eta[order] - j_eta[j]
        pf[:k, 1] = _wrap(phi[order] - j_phi[j])
        pf[:k, 2] = pt[order] / j_pt[j]
        pf[:k, 3] = 1.0
        out_pf.append(pf)
        out_jf.append((j_pt[j], j_eta[j], j_mass[j], idx.size))
    return out_pf, out_jf


def generate_jets(jet_type: str, n_jets: int, seed: int, config: JetGenConfig = JetGenConfig(),
                  max_events: int | None = None) -> JetData:
    """Generate ``n_jets`` jets of one type in this process (one Pythia instance).

    Arguments:
        jet_type: ``g``, ``q``, ``t``, ``w``, ``z`` (or gluon, quark, top, W, Z).
        n_jets: jets to return (the last event's surplus jets are dropped).
        seed: Pythia seed, 1 … 900 000 000 (see :func:`chunk_seed`).
        config: process and selection settings.
        max_events: give up (``RuntimeError``) after this many events; default
            ``50 · n_jets + 1000``, far above the ~0.5–1 events per jet of the default cuts.

    Returns:
        :class:`hepgen.data.jets.JetData` with ``n_jets`` jets; ``attrs`` hold ``n_events``
        (events generated) and the wall time.
    """
    name = JET_TYPES[jet_type_index(jet_type)]
    if int(n_jets) < 0:
        raise ValueError(f"n_jets: expected >= 0, found {n_jets}")
    if not 1 <= int(seed) <= _MAX_PYTHIA_SEED:
        raise ValueError(f"seed: expected 1 … {_MAX_PYTHIA_SEED} (Pythia's range), found {seed}")
    n_jets = int(n_jets)
    max_events = 50 * n_jets + 1000 if max_events is None else int(max_events)
    quiet_fastjet()
    t0, c0 = time.perf_counter(), time.process_time()
    pythia = _make_pythia(name, seed, config) if n_jets else None
    pfs, jfs, n_events = [], [], 0
    while len(pfs) < n_jets:
        if n_events >= max_events:
            raise RuntimeError(f"{name} jets: {len(pfs)} of {n_jets} jets after {n_events} events; "
                               "the cuts select (almost) nothing — check JetGenConfig")
        batch = pythia.nextBatch(int(config.events_per_batch))
        n_events += len(batch)
        pf, jf = _jets_from_batch(batch, name, config)
        pfs += pf
        jfs += jf
    pf = np.stack(pfs[:n_jets]) if n_jets else np.zeros((0, config.n_particles, 4), np.float32)
    jf = np.asarray(jfs[:n_jets], dtype=np.float64).reshape(-1, 4)
    attrs = {"generator": "pythia8mc + fastjet (hepgen.simulate.pythia)", "n_events": n_events,
             "seconds": time.perf_counter() - t0, "process_seconds": time.process_time() - c0, "seed": int(seed)}
    return JetData(pf, jf, np.full(n_jets, JET_TYPES.index(name)), attrs)


def _run_chunk(task: dict) -> dict:
    """Worker entry point: generate one chunk and write it atomically to ``task['path']``."""
    config = JetGenConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in task["config"].items()})
    data = generate_jets(task["type"], task["n"], task["seed"], config)
    write_jets(task["path"], data, compression=None)
    return {"path": task["path"], "n": len(data), "n_events": data.attrs["n_events"],
            "seconds": data.attrs["seconds"]}


def _chunk_ok(path: Path, n: int, n_particles: int) -> bool:
    try:
        d = read_jets(path)
    except (ValueError, OSError):
        return False
    return len(d) == n and d.n_particles == n_particles


def simulate_jets(output: str | os.PathLike, jet_types: Sequence[str], n_per_type: int,
                  seed: int = 0, config: JetGenConfig = JetGenConfig(), workers: int = 1,
                  chunk_size: int = 1000, resume: bool = True, progress: bool = True) -> JetData:
    """:func:`simulate_jets_to_file`, then the file read back: the merged :class:`JetData`.

    ``attrs`` hold the settings, ``n_events``, the summed worker wall time ``cpu_seconds`` and
    CPU time ``process_seconds``.  The whole sample is in memory at the end; ``hepgen simulate jets`` calls
    :func:`simulate_jets_to_file`, whose memory holds one chunk.
    """
    simulate_jets_to_file(output, jet_types, n_per_type, seed=seed, config=config, workers=workers,
                          chunk_size=chunk_size, resume=resume, progress=progress)
    return read_jets(output)


def simulate_jets_to_file(output: str | os.PathLike, jet_types: Sequence[str], n_per_type: int,
                          seed: int = 0, config: JetGenConfig = JetGenConfig(), workers: int = 1,
                          chunk_size: int = 1000, resume: bool = True, progress: bool = True) -> dict:
    """Generate jets of several types in parallel chunks and write them to ``output`` (JetNet layout).

    Chunks are written to the folder ``.<output name>.chunks`` beside ``output``; a run that
    is interrupted keeps its finished chunks, and the same call resumes from them (a
    ``manifest.json`` there guards against resuming with other settings).  When every chunk
    is done they are merged, in type then chunk order, into ``output`` atomically and the
    folder is removed.

    Arguments:
        output: the HDF5 file to write.
        jet_types: names accepted by :func:`hepgen.data.jets.jet_type_index`.
        n_per_type: jets per type.
        seed: master seed; chunk seeds come from :func:`chunk_seed`.
        config: process and selection settings.
        workers: worker processes (1 = run in this process).
        chunk_size: jets per chunk (the unit of resumption and of the progress bar).
        resume: keep finished chunks of an earlier, interrupted run with the same settings;
            False deletes them first.
        progress: show a tqdm progress bar (jets).

    Returns:
        ``{"n", "n_particles", "types_present"}`` of the file written (chunk files are merged one
        at a time: :func:`hepgen.data.jets.merge_jet_files`); its attributes hold the settings,
        ``n_events``, the summed worker wall time ``cpu_seconds`` and CPU time ``process_seconds``.
    """
    output = Path(output)
    names = [JET_TYPES[jet_type_index(t)] for t in jet_types]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"jet types: expected distinct types, found {list(jet_types)}")
    if int(n_per_type) < 1 or int(chunk_size) < 1 or int(workers) < 1:
        raise ValueError(f"n_per_type, chunk_size and workers must be >= 1, found {n_per_type}, {chunk_size}, {workers}")
    require_extra("jets", _WHAT, ("pythia8mc", "fastjet", "awkward"))  # before any worker starts
    n_per_type, chunk_size, workers = int(n_per_type), int(chunk_size), int(workers)
    chunk_dir = chunk_dir_for(output)
    manifest = {"jet_types": names, "n_per_type": n_per_type, "seed": int(seed), "chunk_size": chunk_size,
                "config": config.to_dict()}
    tasks = []
    for name in names:
        t = JET_TYPES.index(name)
        for c, start in enumerate(range(0, n_per_type, chunk_size)):
            n = min(chunk_size, n_per_type - start)
            tasks.append({"type": name, "n": n, "seed": chunk_seed(seed, t, c), "config": config.to_dict(),
                          "path": str(chunk_dir / f"{name}_{c:05d}.h5")})
    run_chunks(chunk_dir, manifest, tasks, _run_chunk,
               lambda task: _chunk_ok(Path(task["path"]), task["n"], config.n_particles),
               workers=workers, resume=resume, progress=progress, desc="pythia+fastjet", unit="jet")

    def merged_attrs(part_attrs: list[dict]) -> dict:
        return {"generator": "pythia8mc + fastjet (hepgen.simulate.pythia)", "seed": int(seed),
                "jet_types": ",".join(names), "n_per_type": n_per_type,
                "config": json.dumps(config.to_dict()),
                "n_events": int(sum(a.get("n_events", 0) for a in part_attrs)),
                "cpu_seconds": float(sum(a.get("seconds", 0.0) for a in part_attrs)),
                "process_seconds": float(sum(a.get("process_seconds", 0.0) for a in part_attrs))}

    # one chunk in memory at a time (flat memory whatever n_per_type)
    summary = merge_jet_files(output, [t["path"] for t in tasks], merged_attrs)
    finish_chunks(chunk_dir)
    summary.pop("part_attrs")
    return summary
