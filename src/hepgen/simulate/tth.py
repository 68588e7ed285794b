"""Semi-leptonic ttH (H → bb̄) and ttbb events from Pythia 8 with particle-level reconstruction,
reduced to the tabular analysis variables of :mod:`hepgen.simulate.tth_variables`.

Processes (pp at √s = 13 TeV, Pythia 8 Monash 2013 tune, MPI and hadronisation on):

====== =========================================================================================
tth    ``HiggsSM:gg2Httbar``, ``HiggsSM:qqbar2Httbar``; H → bb̄ only (``25:onIfMatch = 5 -5``)
ttbb   ``Top:gg2ttbar``, ``Top:qqbar2ttbar``.  **Pythia has no tt̄bb̄ matrix element**: the extra
       b quarks come from g → bb̄ splittings in the parton shower (and MPI).  The sample is made
       "ttbb" at generator level by the b-quark filter (below: ≥ 4 b quarks, i.e. ≥ 2 besides
       the top-decay pair — the tt+bb category of CMS arXiv:1705.10141 without its acceptance
       cut) and then by the selection's b-tags.  This under-populates hard, wide-angle extra
       b pairs compared with a tt̄bb̄ matrix element (4FS/5FS NLO) — say so when quoting it.
====== =========================================================================================

Both: semi-leptonic tt̄ decays forced as W⁺ → e⁺ν / μ⁺ν and W⁻ → quarks (``24:onPosIfAny =
11 13``, ``24:onNegIfAny = 1 2 3 4 5``), so every lepton is positive (the variables do not use
the charge); τ decays are off.

Generator-level b-quark filter (``TTHGenConfig.min_b_quarks``, default 4, for both processes):
the parton-level event (after ISR, FSR, MPI and beam remnants, before hadronisation) must hold at
least ``min_b_quarks`` final-state b or b̄ quarks; other events are vetoed by a Pythia
``UserHooks.doVetoPartonLevel`` before hadronisation and reconstruction, which are skipped.
Pythia's string breaks make no b quarks and hadron decays conserve b number, so each such b
quark ends in one weakly decaying b hadron: the filter is "≥ 2 b hadrons besides those of the
top decays" (rare bb̄ onia aside).  ttH (H → bb̄) always has four b quarks except when a top
decays to W s or W d (|V_ts|², |V_td|² ≈ 0.2 %), so the filter is a no-op there up to those.
``min_b_quarks=0`` turns it off: the inclusive tt̄ sample of earlier hepgen versions, whose
"ttbb" events at ≥ 3 b-tags were mostly tt̄ + c/light mistags.

Reconstruction from the stable final-state particles (no detector simulation):

1. **lepton**: e or μ with p_T > 25 GeV, |η| < 2.5, isolated: the p_T sum of the other visible
   particles within ΔR < 0.3 below 0.15 · p_T.  Exactly one is required.
2. **jets**: every visible final-state particle but the lepton, anti-k_T R = 0.4 (FastJet,
   E-scheme); jets with p_T > 25 GeV and |η| < 2.5, sorted by p_T.
3. **b-tagging**: a jet is a b (c) jet if a b (c) hadron with p_T > 5 GeV lies within ΔR < 0.4
   (b wins); it is tagged with probability 0.70 (b), 0.10 (c), 0.01 (light) — the 70 %
   working point of ATLAS/CMS taggers — drawn from the chunk's seeded numpy generator.
4. **missing p_T**: the vector sum of the neutrinos' p_T (truth MET).
5. **selection**: ≥ 6 jets with ≥ 4 b-tags (:class:`TTHGenConfig` ``min_jets``/``min_btags``).

Each selected event becomes one row of a :class:`hepgen.data.tabular.TabularData` with the 26
high-level variables (and, with ``low_level=True``, the 32 low-level ones); process labels are
0 = ``tth``, 1 = ``ttbb``.  :func:`simulate_tth` runs chunks in parallel through
:func:`hepgen.simulate.chunks.run_chunks` (seeded per chunk, resumable, atomic merge).

References:
    Pythia 8.3: Bierlich et al., arXiv:2203.11601; FastJet: arXiv:1111.6097; anti-k_T:
    arXiv:0802.1189; ttH(bb) analyses: CMS arXiv:1804.03682, ATLAS arXiv:1712.08895.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hepgen._extras import require_extra
from hepgen._fastjet import quiet_fastjet
from hepgen.data.tabular import TabularData, read_tabular, write_tabular
from hepgen.simulate.chunks import chunk_dir_for, chunk_seed, finish_chunks, run_chunks
from hepgen.simulate.tth_variables import (
    HIGH_LEVEL,
    HIGH_LEVEL_UNITS,
    LOW_LEVEL,
    LOW_LEVEL_UNITS,
    chi2_assignment,
    high_level_variables,
    low_level_variables,
    pt_eta_phi,
)

try:  # the optional extra hepgen[jets]: the module imports without it, generating raises MissingExtraError
    import awkward as ak
    import fastjet
    import pythia8mc
except ImportError:
    ak = fastjet = pythia8mc = None

_WHAT = "ttH/ttbb simulation (Pythia 8 + FastJet)"

__all__ = ["PROCESS_NAMES", "TTH_PROCESSES", "TTHGenConfig", "count_final_b_quarks", "generate_tth", "pythia_settings",
           "merge_finished_chunks", "reconstruct_event", "simulate_tth"]

log = logging.getLogger(__name__)

PROCESS_NAMES = ["tth", "ttbb"]
"""Process labels of the tabular files: index 0 = ttH, 1 = ttbb."""

_SEMILEPTONIC = ("24:onMode = off", "24:onPosIfAny = 11 13", "24:onNegIfAny = 1 2 3 4 5")
TTH_PROCESSES: dict[str, tuple[str, ...]] = {
    "tth": ("HiggsSM:gg2Httbar = on", "HiggsSM:qqbar2Httbar = on", "25:onMode = off", "25:onIfMatch = 5 -5",
            *_SEMILEPTONIC),
    "ttbb": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_SEMILEPTONIC),
}
_NEUTRINOS = (12, 14, 16)
_MAX_PYTHIA_SEED = 900_000_000


@dataclass(frozen=True)
class TTHGenConfig:
    """Reconstruction and selection settings (GeV).

    Arguments:
        ecm: centre-of-mass energy.
        radius: anti-k_T R.
        jet_pt_min, jet_eta_max: jet acceptance.
        lepton_pt_min, lepton_eta_max, iso_dr, iso_max: lepton acceptance and isolation.
        btag_eff, ctag_eff, light_mistag: tagging probabilities of b, c and light jets.
        hadron_pt_min, match_dr: b/c hadron matching.
        min_jets, min_btags: the selection.
        min_b_quarks: the generator-level filter: at least this many final-state b/b̄ quarks at
            the end of the parton level (module docstring); 0 = off.
        low_level: also compute the 32 low-level variables.
        events_per_batch: events per ``Pythia.nextBatch``.
        extra_settings: more Pythia ``readString`` lines (applied last).
    """

    ecm: float = 13_000.0
    radius: float = 0.4
    jet_pt_min: float = 25.0
    jet_eta_max: float = 2.5
    lepton_pt_min: float = 25.0
    lepton_eta_max: float = 2.5
    iso_dr: float = 0.3
    iso_max: float = 0.15
    btag_eff: float = 0.70
    ctag_eff: float = 0.10
    light_mistag: float = 0.01
    hadron_pt_min: float = 5.0
    match_dr: float = 0.4
    min_jets: int = 6
    min_btags: int = 4
    min_b_quarks: int = 4
    low_level: bool = False
    events_per_batch: int = 100
    extra_settings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("btag_eff", "ctag_eff", "light_mistag"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], found {v}")
        if int(self.min_jets) < 6:
            raise ValueError(f"min_jets: expected >= 6 (the χ² assignment needs six jets), found {self.min_jets}")
        if not 0 <= int(self.min_btags) <= int(self.min_jets):
            raise ValueError(f"min_btags: expected 0 … min_jets, found {self.min_btags}")
        if int(self.min_b_quarks) < 0:
            raise ValueError(f"min_b_quarks: expected an integer >= 0, found {self.min_b_quarks}")
        object.__setattr__(self, "extra_settings", tuple(self.extra_settings))

    def to_dict(self) -> dict:
        """JSON-able settings."""
        d = asdict(self)
        d["extra_settings"] = list(self.extra_settings)
        return d

    @property
    def columns(self) -> list[str]:
        """The column names of the output table."""
        return HIGH_LEVEL + (LOW_LEVEL if self.low_level else [])

    @property
    def units(self) -> list[str]:
        return HIGH_LEVEL_UNITS + (LOW_LEVEL_UNITS if self.low_level else [])


def _process(name: str) -> str:
    if name not in TTH_PROCESSES:
        raise ValueError(f"process: expected one of {list(TTH_PROCESSES)}, found {name!r}")
    return name


def pythia_settings(process: str, seed: int, config: TTHGenConfig = TTHGenConfig()) -> list[str]:
    """The Pythia ``readString`` lines of one process (module docstring)."""
    return [f"Beams:eCM = {config.ecm:g}", "Tune:pp = 14", *TTH_PROCESSES[_process(process)], "Random:setSeed = on",
            f"Random:seed = {int(seed)}", "Print:quiet = on", "Next:numberCount = 0", *config.extra_settings]


def count_final_b_quarks(event) -> int:
    """Final-state (status > 0) b and b̄ quarks of a Pythia ``Event`` record.

    At the end of the parton level this is the number of b hadrons the event will hold
    (module docstring).  A Python loop over the record: ``pythia8mc`` gives one event no array
    view, and the loop (~0.5 ms for the ~500 entries of a tt̄ parton-level record) is small
    against the ~7 ms Pythia spends on that parton level.

    Arguments:
        event: a ``pythia8mc.Event``, or any iterable of entries with ``idAbs()`` and
            ``isFinal()`` (tests/test_tabular_bfilter.py uses real ``Event`` records).

    >>> class Entry:  # a stand-in for pythia8mc.Particle, so that the example runs without Pythia
    ...     def __init__(self, pid, status): self.pid, self.status = pid, status
    ...     def idAbs(self): return abs(self.pid)
    ...     def isFinal(self): return self.status > 0
    >>> count_final_b_quarks([Entry(6, -22), Entry(5, 23), Entry(-5, -51), Entry(-5, 51), Entry(21, 51)])
    2
    """
    return sum(1 for p in event if p.idAbs() == 5 and p.isFinal())


if pythia8mc is not None:
    class _BQuarkFilter(pythia8mc.UserHooks):
        """Veto parton-level events with fewer than ``min_b`` final b quarks (before hadronisation).

        ``tried`` counts the parton-level events seen, ``vetoed`` the vetoed ones."""

        def __init__(self, min_b: int):
            super().__init__()
            self.min_b, self.tried, self.vetoed = int(min_b), 0, 0

        def canVetoPartonLevel(self) -> bool:
            return True

        def doVetoPartonLevel(self, event) -> bool:
            self.tried += 1
            veto = count_final_b_quarks(event) < self.min_b
            self.vetoed += veto
            return veto


def _has_quark(pid: np.ndarray, q: int) -> np.ndarray:
    """Hadrons containing quark ``q`` (PDG numbering: mesons ``q`` in the hundreds digit, baryons
    in the thousands digit)."""
    a = np.abs(pid)
    return (a > 100) & (((a // 100) % 10 == q) | ((a // 1000) % 10 == q))


def _dr(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def reconstruct_event(pid: np.ndarray, status: np.ndarray, p4: np.ndarray, config: TTHGenConfig):
    """The isolated lepton, the visible particles to cluster, b/c hadrons and MET of one event.

    Arguments:
        pid, status: ``(P,)`` PDG ids and Pythia statuses of the event record.
        p4: ``(P, 4)`` ``[E, px, py, pz]`` GeV.
        config: the cuts.

    Returns:
        ``None`` unless there is exactly one isolated lepton, else a dict with ``lepton (4,)``,
        ``cluster (K, 4)`` the visible final-state particles but the lepton, ``b_hadrons`` and
        ``c_hadrons`` ``(·, 2)`` (η, φ) above ``hadron_pt_min``, ``met (2,)``.
    """
    final = status > 0
    apid = np.abs(pid)
    nu = final & np.isin(apid, _NEUTRINOS)
    vis = final & ~nu
    pt, eta, phi = pt_eta_phi(p4)
    cand = np.flatnonzero(vis & ((apid == 11) | (apid == 13)) & (pt > config.lepton_pt_min)
                          & (np.abs(eta) < config.lepton_eta_max))
    iso = []
    for i in cand:
        near = vis & (_dr(eta, phi, eta[i], phi[i]) < config.iso_dr)
        near[i] = False
        if pt[near].sum() < config.iso_max * pt[i]:
            iso.append(i)
    if len(iso) != 1:
        return None
    keep = vis.copy()
    keep[iso[0]] = False
    hpt = pt > config.hadron_pt_min
    b = _has_quark(pid, 5) & hpt
    c = _has_quark(pid, 4) & hpt & ~b
    return {"lepton": p4[iso[0]], "cluster": p4[keep], "b_hadrons": np.stack([eta[b], phi[b]], 1),
            "c_hadrons": np.stack([eta[c], phi[c]], 1), "met": p4[nu, 1:3].sum(0)}


def _matched(jeta: np.ndarray, jphi: np.ndarray, hadrons: np.ndarray, max_dr: float) -> np.ndarray:
    """Jets within ΔR < ``max_dr`` of any hadron ``(H, 2)`` (η, φ)."""
    if len(hadrons) == 0:
        return np.zeros(len(jeta), bool)
    return (_dr(jeta[:, None], jphi[:, None], hadrons[None, :, 0], hadrons[None, :, 1]) < max_dr).any(1)


def _batch_arrays(batch):
    prt = batch.prt
    n = ak.to_numpy(ak.num(prt.id))
    off = np.concatenate([[0], np.cumsum(n)])
    pid = ak.to_numpy(ak.flatten(prt.id))
    status = ak.to_numpy(ak.flatten(prt.status))
    p4 = np.stack([ak.to_numpy(ak.flatten(getattr(prt.p, c))) for c in ("e", "px", "py", "pz")], 1).astype(np.float64)
    return off, pid, status, p4


def _select_batch(batch, config: TTHGenConfig, rng: np.random.Generator):
    """Reconstruct one ``nextBatch``; return the selected events' (jets, mask, btag, lepton, met)."""
    off, pid, status, p4 = _batch_arrays(batch)
    recos = [reconstruct_event(pid[a:b], status[a:b], p4[a:b], config) for a, b in itertools.pairwise(off)]
    good = [r for r in recos if r is not None]
    if not good:
        return []
    counts = np.array([len(r["cluster"]) for r in good])
    flat = np.concatenate([r["cluster"] for r in good])
    parts = ak.unflatten(ak.zip({"px": flat[:, 1], "py": flat[:, 2], "pz": flat[:, 3], "E": flat[:, 0]},
                                with_name="Momentum4D"), counts)
    seq = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius))
    jets = seq.inclusive_jets(min_pt=config.jet_pt_min)
    out = []
    for k, r in enumerate(good):
        ev = jets[k]
        j4 = np.stack([ak.to_numpy(getattr(ev, c)) for c in ("E", "px", "py", "pz")], 1).astype(np.float64)
        jpt, jeta, jphi = pt_eta_phi(j4)
        sel = np.abs(jeta) < config.jet_eta_max
        j4, jpt, jeta, jphi = j4[sel], jpt[sel], jeta[sel], jphi[sel]
        order = np.argsort(-jpt, kind="stable")
        j4, jeta, jphi = j4[order], jeta[order], jphi[order]
        if len(j4) < config.min_jets:
            continue

        isb = _matched(jeta, jphi, r["b_hadrons"], config.match_dr)
        isc = _matched(jeta, jphi, r["c_hadrons"], config.match_dr) & ~isb
        prob = np.where(isb, config.btag_eff, np.where(isc, config.ctag_eff, config.light_mistag))
        tag = rng.random(len(j4)) < prob
        if tag.sum() < config.min_btags:
            continue
        out.append((j4, tag, r["lepton"], r["met"]))
    return out


def _table(events: list, config: TTHGenConfig) -> np.ndarray:
    if not events:
        return np.zeros((0, len(config.columns)))
    jmax = max(len(e[0]) for e in events)
    n = len(events)
    jets = np.zeros((n, jmax, 4))
    mask = np.zeros((n, jmax), bool)
    btag = np.zeros((n, jmax), bool)
    for i, (j4, tag, _, _) in enumerate(events):
        jets[i, :len(j4)], mask[i, :len(j4)], btag[i, :len(j4)] = j4, True, tag
    lepton = np.stack([e[2] for e in events])
    met = np.stack([e[3] for e in events])
    assignment = chi2_assignment(jets, mask, btag, lepton, met)
    cols = high_level_variables(jets, mask, btag, lepton, met, assignment=assignment)
    if config.low_level:
        cols.update(low_level_variables(jets, mask, btag, lepton, met, assignment=assignment))
    return np.stack([cols[c] for c in config.columns], axis=1)


def generate_tth(process: str, n_events: int, seed: int, config: TTHGenConfig = TTHGenConfig(),
                 max_events: int | None = None) -> TabularData:
    """Generate ``n_events`` selected events of one process in this process (one Pythia instance).

    Arguments:
        process: ``"tth"`` or ``"ttbb"``.
        n_events: selected events to return.
        seed: Pythia seed (1 … 900 000 000); the b-tagging draws use ``numpy`` seeded by it.
        config: reconstruction and selection settings.
        max_events: give up with a ``RuntimeError`` after this many generated events (default
            ``20000 · n_events + 10000``: the ttbb selection at ≥ 3 b-tags keeps about one
            generated event in 500, at ≥ 4 b-tags about one in a few thousand).

    Returns:
        :class:`TabularData`; ``attrs`` hold ``n_generated`` (Pythia events, counted at the
        parton level, vetoed ones included), ``n_vetoed`` (by the b-quark filter), ``seconds``
        (wall clock) and ``process_seconds`` (CPU time of this process: the cost on a loaded
        machine, where the wall clock also counts other jobs).
    """
    _process(process)
    if int(n_events) < 0:
        raise ValueError(f"n_events: expected >= 0, found {n_events}")
    if not 1 <= int(seed) <= _MAX_PYTHIA_SEED:
        raise ValueError(f"seed: expected 1 … {_MAX_PYTHIA_SEED} (Pythia's range), found {seed}")
    if ak is None or fastjet is None or pythia8mc is None:
        require_extra("jets", _WHAT)
    n_events = int(n_events)
    max_events = 20_000 * n_events + 10_000 if max_events is None else int(max_events)
    quiet_fastjet()
    rng = np.random.default_rng(int(seed))
    t0, c0 = time.perf_counter(), time.process_time()
    events: list = []
    n_gen = n_vetoed = 0
    if n_events:
        pythia = pythia8mc.Pythia("", False)
        for line in pythia_settings(process, seed, config):
            if not pythia.readString(line):
                raise ValueError(f"Pythia rejected the setting {line!r}")
        hook = _BQuarkFilter(config.min_b_quarks) if config.min_b_quarks > 0 else None
        if hook is not None:  # kept referenced until the loop ends: Pythia holds only a pointer
            pythia.setUserHooksPtr(hook)
        if not pythia.init():
            raise RuntimeError(f"Pythia initialisation failed for process {process!r}")
        while len(events) < n_events:
            if n_gen >= max_events:
                raise RuntimeError(f"{process}: {len(events)} of {n_events} events selected after {n_gen} "
                                   "generated; the selection keeps (almost) nothing — check TTHGenConfig")
            batch = pythia.nextBatch(int(config.events_per_batch))
            events += _select_batch(batch, config, rng)
            # vetoed events are regenerated inside nextBatch: count them from the hook
            n_gen = hook.tried if hook is not None else n_gen + len(batch)
        n_vetoed = hook.vetoed if hook is not None else 0
    values = _table(events[:n_events], config)
    attrs = {"generator": "pythia8mc + fastjet (hepgen.simulate.tth)", "n_generated": n_gen, "n_vetoed": n_vetoed,
             "seconds": time.perf_counter() - t0, "process_seconds": time.process_time() - c0, "seed": int(seed)}
    return TabularData(values, config.columns, config.units, np.full(len(values), PROCESS_NAMES.index(process)),
                       PROCESS_NAMES, attrs)


def _run_chunk(task: dict) -> dict:
    """Worker entry point: generate one chunk and write it atomically."""
    config = TTHGenConfig(**task["config"])
    data = generate_tth(task["process"], task["n"], task["seed"], config)
    write_tabular(task["path"], data, compression=None)
    return {"path": task["path"], "n": len(data)}


def _chunk_ok(path: Path, n: int) -> bool:
    try:
        return len(read_tabular(path)) == n
    except (ValueError, OSError):
        return False


def simulate_tth(output: str | os.PathLike, process: str, n_events: int, seed: int = 0,
                 config: TTHGenConfig = TTHGenConfig(), workers: int = 1, chunk_size: int = 250,
                 resume: bool = True, progress: bool = True) -> TabularData:
    """Generate ``n_events`` selected events of ``process`` in parallel chunks and write ``output``.

    Chunks go to ``.<output name>.chunks`` beside ``output`` (resumable; a ``manifest.json``
    refuses a resume with other settings); the merge into ``output`` is atomic.

    Arguments:
        output: the tabular HDF5 file to write.
        process: ``"tth"`` or ``"ttbb"``.
        n_events: selected events.
        seed: master seed; chunk seeds from ``SeedSequence(seed, spawn_key=(process, chunk))``.
        config, workers, chunk_size, resume, progress: as in :func:`hepgen.simulate.pythia.simulate_jets`.

    Returns:
        the merged :class:`TabularData`; ``attrs`` hold the settings, ``n_generated`` and the
        summed worker time ``cpu_seconds`` (wall clock of the workers, → seconds per selected
        event for speed-ups) and ``process_seconds`` (their CPU time).
    """
    _process(process)
    require_extra("jets", _WHAT, ("pythia8mc", "fastjet", "awkward"))  # before any worker starts
    if int(n_events) < 1 or int(chunk_size) < 1 or int(workers) < 1:
        raise ValueError(f"n_events, chunk_size and workers must be >= 1, found {n_events}, {chunk_size}, {workers}")
    output = Path(output)
    chunk_dir = chunk_dir_for(output)
    manifest = {"process": process, "n_events": int(n_events), "seed": int(seed), "chunk_size": int(chunk_size),
                "config": config.to_dict()}
    p = PROCESS_NAMES.index(process)
    tasks = [{"process": process, "n": min(int(chunk_size), int(n_events) - s), "config": config.to_dict(),
              "seed": chunk_seed(seed, p, c, maximum=_MAX_PYTHIA_SEED), "path": str(_chunk_path(chunk_dir, process, c))}
             for c, s in enumerate(range(0, int(n_events), int(chunk_size)))]
    run_chunks(chunk_dir, manifest, tasks, _run_chunk, lambda t: _chunk_ok(Path(t["path"]), t["n"]),
               workers=workers, resume=resume, progress=progress, desc=f"pythia {process}", unit="event")
    parts = [read_tabular(t["path"]) for t in tasks]
    data = TabularData.concatenate(parts, _merged_attrs(parts, process, seed, config.to_dict()))
    write_tabular(output, data)
    finish_chunks(chunk_dir)
    return data


def _chunk_path(chunk_dir: Path, process: str, index: int) -> Path:
    """Chunk ``index``'s file of a ``simulate_tth`` run (written by it, read by the merges)."""
    return chunk_dir / f"{process}_{index:05d}.h5"


def _merged_attrs(parts: list[TabularData], process: str, seed: int, config: dict) -> dict:
    """Provenance of chunk files merged into one table: settings, summed counts and times."""
    return {"generator": "pythia8mc + fastjet (hepgen.simulate.tth)", "seed": int(seed), "process": process,
            "config": json.dumps(config),
            "n_generated": int(sum(q.attrs.get("n_generated", 0) for q in parts)),
            "n_vetoed": int(sum(q.attrs.get("n_vetoed", 0) for q in parts)),
            "cpu_seconds": float(sum(q.attrs.get("seconds", 0.0) for q in parts)),
            "process_seconds": float(sum(q.attrs.get("process_seconds", 0.0) for q in parts))}


def merge_finished_chunks(chunk_dir: str | os.PathLike, output: str | os.PathLike) -> TabularData:
    """Merge the *finished* chunk files of a ``simulate_tth`` run (complete or not) into ``output``.

    For a run that is still going or was stopped: every chunk file of the folder's manifest
    that holds its full number of events (chunk files are written atomically, so a chunk
    being simulated has no file yet) is read, in chunk order, and written to ``output``
    (atomically) with the attributes :func:`simulate_tth` gives a complete file (settings,
    summed ``n_generated``, ``n_vetoed``, ``cpu_seconds``, ``process_seconds``) plus the
    provenance of the partial merge: ``chunks_merged`` (how many), ``chunks_planned``,
    ``n_events_planned``, ``complete`` (all chunks merged) and ``merged_chunk_indices``
    (JSON list).  The folder is left as it is (the run can still be resumed by calling
    :func:`simulate_tth` with the manifest's arguments).

    Arguments:
        chunk_dir: the ``.<output name>.chunks`` folder of a ``simulate_tth`` run.
        output: the tabular HDF5 file to write (must not be inside ``chunk_dir``).

    Returns:
        the merged :class:`~hepgen.data.tabular.TabularData`.

    Raises:
        ValueError: no ``manifest.json``, or no finished chunk, naming the folder.
    """
    chunk_dir, output = Path(chunk_dir), Path(output)
    mpath = chunk_dir / "manifest.json"
    if not mpath.is_file():
        raise ValueError(f"{chunk_dir}: key 'manifest.json': expected the manifest of a simulate_tth run, found none")
    man = json.loads(mpath.read_text())
    for key in ("process", "n_events", "seed", "chunk_size", "config"):
        if key not in man:
            raise ValueError(f"{mpath}: key {key!r}: expected it in a simulate_tth manifest, found {sorted(man)}")
    process, n_events, size = man["process"], int(man["n_events"]), int(man["chunk_size"])
    sizes = [min(size, n_events - s) for s in range(0, n_events, size)]
    done = [c for c, n in enumerate(sizes) if _chunk_ok(_chunk_path(chunk_dir, process, c), n)]
    if not done:
        raise ValueError(f"{chunk_dir}: expected at least one finished {process} chunk file, found none")
    parts = [read_tabular(_chunk_path(chunk_dir, process, c)) for c in done]
    attrs = _merged_attrs(parts, process, man["seed"], man["config"])
    attrs.update(chunks_merged=len(done), chunks_planned=len(sizes), n_events_planned=n_events,
                 complete=len(done) == len(sizes), merged_chunk_indices=json.dumps(done),
                 merged_from=str(chunk_dir))
    data = TabularData.concatenate(parts, attrs)
    write_tabular(output, data)
    return data
