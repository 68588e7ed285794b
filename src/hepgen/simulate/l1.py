"""Trigger-level events from Pythia 8 with a simple Level-1 object model, in the ADC2021 layout.

Pythia 8 (pp at √s = 13 TeV, Monash 2013 tune, multi-parton interactions and hadronisation
on, no pile-up) generates each process; a parametrised Level-1 model turns the stable
particles into MET, e/γ, muons and jets; the one-lepton pre-selection of the ADC2021 data set
(:func:`hepgen.data.l1.one_lepton_preselection`) keeps the event; the objects go into the
19 × (pT, η, φ) layout of :mod:`hepgen.data.l1`.

Processes (:data:`PROCESSES`; masses of the signals as in the ADC2021 challenge,
Govorkova et al., arXiv:2107.02157):

==============  =========================================================================
name            Pythia settings (beyond beams, tune, seed)
==============  =========================================================================
``W_lnu``       ``WeakSingleBoson:ffbar2W``; W → eν, μν, τν
``QCD``         QCD with an isolated photon: ``PromptPhoton:all``, p̂T > 20 GeV (γ + jet; a
                Level-1 e/γ candidate does not tell a photon from an electron).  A
                deviation from ADC2021, whose QCD multi-jet events pass the lepton
                requirement through fakes and heavy-flavour decays: with ``HardQCD:all``
                fewer than 1 in 10³ events passed here (under 20 of ~20 000 in 8 CPU-minutes), which would
                cost hours of CPU per thousand events.
``Z_ll``        ``WeakSingleBoson:ffbar2gmZ`` with pure Z (``WeakZ0:gmZmode = 2``); Z → ee, μμ, ττ
``ttbar``       ``Top:gg2ttbar``, ``Top:qqbar2ttbar``; inclusive decays
``A_4l``        neutral scalar H⁰ (id 35, ``HiggsBSM:gg2H2``), m = 50 GeV, decaying to four
                leptons (eeee, μμμμ, eeμμ with BR ¼, ¼, ½) by isotropic 4-body phase space —
                a stand-in for the challenge's A → Z*Z* → 4ℓ without the Z* propagators
``LQ_btau``     leptoquark pairs (``LeptoQuark:gg2LQLQbar``, ``qqbar2LQLQbar``), m = 80 GeV,
                LQ → b τ (charge set to +2/3 to match the b τ⁺ channel)
``h0_tautau``   a light SM-like scalar (id 25, ``HiggsSM:gg2H``), m = 60 GeV, → τ⁺τ⁻
``hplus_taunu`` charged scalar pairs (``HiggsBSM:ffbar2H+H-``), m = 60 GeV, H± → τν
==============  =========================================================================

The Standard-Model mix of the ADC2021 background (:data:`SM_FRACTIONS`, fractions of the
pre-selected events, from the challenge's description of its background sample): W → ℓν
59.2 %, QCD multi-jet 33.8 %, Z → ℓℓ 6.7 %, tt̄ 0.3 %.  hepgen generates each process to its
count of *accepted* events, so the mix is exact by construction.

Level-1 object model (:class:`L1ObjectModel`; GeV, radians) — a deliberately simple,
documented parametrisation, not a detector simulation:

* **e/γ**: stable e± and γ with pT > 3 GeV, |η| < 3.0 (the ADC2021 thresholds);
  relative isolation (Σ pT of other visible particles within ΔR < 0.3, over pT) < 0.15;
  energy resolution σ/pT = 10 %/√(pT/GeV) ⊕ 2 % (a coarse-calorimeter figure); position
  smeared by 0.025 in η and φ (≈ a trigger-tower width 0.087 / √12).
* **muons**: stable μ± with pT > 3 GeV, |η| < 2.1 (ADC2021); relative isolation < 0.25;
  σ/pT = 15 % (the order of the Level-1 muon pT resolution of CMS); η, φ smeared by 0.01.
* **jets**: anti-kT R = 0.4 (FastJet) on all visible stable particles with |η| < 5; pT > 15
  GeV, |η| < 4.0 (ADC2021); σ/pT = 100 %/√(pT/GeV) ⊕ 10 %; η, φ smeared by 0.05; a jet within
  ΔR < 0.4 of a selected e/γ or muon is dropped (overlap removal).
* **MET**: minus the vector sum of the visible stable particles with |η| < 5, each component
  smeared by σ = 0.6 GeV^½ · √ΣET.

The isolation cuts take their sizes from the Delphes CMS card (relative isolation 0.12 for
electrons, 0.25 for muons, cone 0.5; here a narrower 0.3 cone, nearer a trigger's).

Cost (measured on one core, see docs/anomaly.md): Pythia + FastJet + the object model take
about 11 ms of CPU per generated SM-mix event, 32 ms per accepted one; the pre-selection passes
~31 % of W → ℓν events (docs/anomaly.md has the measured efficiencies of every process).

:func:`simulate_l1` splits the work into chunks run by :func:`hepgen.simulate.chunks.run_chunks`
(parallel, seeded per chunk by ``SeedSequence(seed, spawn_key=(process, chunk))``, resumable,
atomic writes) and merges them into one :func:`hepgen.data.l1.write_l1` file.

References:
    E. Govorkova et al., "LHC physics dataset for unsupervised New Physics detection at 40 MHz",
    Sci. Data 9 (2022) 118, arXiv:2107.02157.
    Pythia 8.3: C. Bierlich et al., arXiv:2203.11601.  FastJet: arXiv:1111.6097.
    Delphes 3: J. de Favereau et al., arXiv:1307.6346 (cards/delphes_card_CMS.tcl).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hepgen._extras import needs_extra, require_extra
from hepgen._fastjet import quiet_fastjet
from hepgen.data.l1 import L1Events, layout_event, one_lepton_preselection, read_l1, write_l1
from hepgen.simulate.chunks import chunk_dir_for, chunk_seed, finish_chunks, run_chunks

_WHAT = "L1 event simulation (Pythia 8 + FastJet)"

__all__ = [
    "BACKGROUNDS",
    "PROCESSES",
    "SIGNALS",
    "SM_FRACTIONS",
    "L1ObjectModel",
    "event_objects",
    "generate_l1",
    "l1_pythia_settings",
    "simulate_l1",
    "split_counts",
]

log = logging.getLogger(__name__)

_LEPTONS = "11 13 15"
PROCESSES: dict[str, tuple[str, ...]] = {
    "W_lnu": ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", f"24:onIfAny = {_LEPTONS}"),
    "QCD": ("PromptPhoton:all = on", "PhaseSpace:pTHatMin = 20"),
    "Z_ll": ("WeakSingleBoson:ffbar2gmZ = on", "WeakZ0:gmZmode = 2", "23:onMode = off", f"23:onIfAny = {_LEPTONS}"),
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    "A_4l": ("Higgs:useBSM = on", "HiggsBSM:gg2H2 = on", "35:m0 = 50", "35:mWidth = 0.01", "35:onMode = off",
             "35:addChannel = 1 0.25 0 11 -11 11 -11", "35:addChannel = 1 0.25 0 13 -13 13 -13",
             "35:addChannel = 1 0.5 0 11 -11 13 -13"),
    "LQ_btau": ("LeptoQuark:gg2LQLQbar = on", "LeptoQuark:qqbar2LQLQbar = on", "42:m0 = 80", "42:chargeType = 2",
                "42:oneChannel = 1 1.0 0 5 -15"),
    "h0_tautau": ("HiggsSM:gg2H = on", "25:m0 = 60", "25:onMode = off", "25:onIfMatch = 15 -15"),
    "hplus_taunu": ("Higgs:useBSM = on", "HiggsBSM:ffbar2H+H- = on", "37:m0 = 60", "37:onMode = off",
                    "37:onIfMatch = 15 16"),
}
BACKGROUNDS = ("W_lnu", "QCD", "Z_ll", "ttbar")
SIGNALS = ("A_4l", "LQ_btau", "h0_tautau", "hplus_taunu")
SM_FRACTIONS = {"W_lnu": 0.592, "QCD": 0.338, "Z_ll": 0.067, "ttbar": 0.003}
_INVISIBLE = (12, 14, 16)
_MAX_PYTHIA_SEED = 900_000_000


@dataclass(frozen=True)
class L1ObjectModel:
    """Numbers of the Level-1 object model (see the module docstring for their sources)."""

    ecm: float = 13_000.0
    egamma_pt_min: float = 3.0
    egamma_eta_max: float = 3.0
    egamma_iso: float = 0.15
    egamma_stochastic: float = 0.10
    egamma_constant: float = 0.02
    egamma_pos_sigma: float = 0.025
    muon_pt_min: float = 3.0
    muon_eta_max: float = 2.1
    muon_iso: float = 0.25
    muon_resolution: float = 0.15
    muon_pos_sigma: float = 0.01
    iso_cone: float = 0.3
    jet_radius: float = 0.4
    jet_pt_min: float = 15.0
    jet_eta_max: float = 4.0
    jet_stochastic: float = 1.0
    jet_constant: float = 0.10
    jet_pos_sigma: float = 0.05
    overlap_dr: float = 0.4
    met_eta_max: float = 5.0
    met_sigma_coef: float = 0.6
    lepton_pt_min: float = 23.0  # the pre-selection
    events_per_batch: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def l1_pythia_settings(process: str, seed: int, model: L1ObjectModel = L1ObjectModel()) -> list[str]:
    """The Pythia ``readString`` lines of one process (see :data:`PROCESSES`)."""
    if process not in PROCESSES:
        raise ValueError(f"process: expected one of {list(PROCESSES)}, found {process!r}")
    return [f"Beams:eCM = {model.ecm:g}", "Tune:pp = 14", *PROCESSES[process], "Random:setSeed = on",
            f"Random:seed = {int(seed)}", "Print:quiet = on", "Next:numberCount = 0"]


def _wrap(phi):
    return (np.asarray(phi) + np.pi) % (2 * np.pi) - np.pi


def _isolated(idx: np.ndarray, pt, eta, phi, cone: float, max_rel: float) -> np.ndarray:
    """Relative isolation of candidates ``idx`` among all particles (``pt, eta, phi`` arrays)."""
    if idx.size == 0:
        return np.zeros(0, dtype=bool)
    dr2 = (eta[idx, None] - eta[None, :]) ** 2 + _wrap(phi[idx, None] - phi[None, :]) ** 2
    inside = dr2 < cone**2
    inside[np.arange(idx.size), idx] = False
    return (inside * pt[None, :]).sum(axis=1) < max_rel * pt[idx]


def event_objects(pid: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, jets: np.ndarray,
                  rng: np.random.Generator | None, model: L1ObjectModel = L1ObjectModel()) -> np.ndarray:
    """Apply the Level-1 object model to one event's stable visible particles and jets.

    Arguments:
        pid, pt, eta, phi: ``(n,)`` PDG id, pT [GeV], η, φ of the stable visible particles.
        jets: ``(m, 3)`` ``(pT, η, φ)`` of the clustered (truth) jets.
        rng: source of the smearing; None: no smearing (for tests and hand checks).
        model: the numbers.

    Returns:
        ``(19, 3)`` float32 event in the ADC2021 layout.

    Example (no smearing; one isolated muon, a soft photon near it, one jet):
        >>> ev = event_objects(np.array([13, 22, 211]), np.array([30.0, 2.0, 40.0]), np.array([0.5, 0.6, -1.0]),
        ...                    np.array([0.0, 0.0, 2.0]), np.array([[40.0, -1.0, 2.0]]), None)
        >>> ev[5].tolist(), ev[9].tolist(), ev[1].tolist()   # muon, jet; the 2 GeV photon is below 3 GeV
        ([30.0, 0.5, 0.0], [40.0, -1.0, 2.0], [0.0, 0.0, 0.0])
    """
    m = model
    pid, pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pid, pt, eta, phi))
    apid = np.abs(pid)
    cal = np.abs(eta) < m.met_eta_max
    mex, mey = -(pt * np.cos(phi))[cal].sum(), -(pt * np.sin(phi))[cal].sum()
    if rng is not None:
        sig = m.met_sigma_coef * np.sqrt(pt[cal].sum())
        mex, mey = mex + rng.normal(0, sig), mey + rng.normal(0, sig)
    met = (float(np.hypot(mex, mey)), float(np.arctan2(mey, mex)))

    def pick(sel, iso):
        idx = np.flatnonzero(sel)
        return idx[_isolated(idx, pt, eta, phi, m.iso_cone, iso)]

    e_idx = pick(((apid == 11) | (apid == 22)) & (pt > m.egamma_pt_min) & (np.abs(eta) < m.egamma_eta_max),
                 m.egamma_iso)
    mu_idx = pick((apid == 13) & (pt > m.muon_pt_min) & (np.abs(eta) < m.muon_eta_max), m.muon_iso)
    e = np.stack([pt[e_idx], eta[e_idx], phi[e_idx]], axis=1)
    mu = np.stack([pt[mu_idx], eta[mu_idx], phi[mu_idx]], axis=1)
    j = np.asarray(jets, dtype=np.float64).reshape(-1, 3)
    if rng is not None:
        rel = np.hypot(m.egamma_stochastic / np.sqrt(e[:, 0]), m.egamma_constant)
        e = e * np.c_[np.maximum(1 + rel * rng.standard_normal(len(e)), 0.0), np.ones((len(e), 2))]
        e[:, 1:] += rng.normal(0, m.egamma_pos_sigma, (len(e), 2))
        mu = mu * np.c_[np.maximum(1 + m.muon_resolution * rng.standard_normal(len(mu)), 0.0), np.ones((len(mu), 2))]
        mu[:, 1:] += rng.normal(0, m.muon_pos_sigma, (len(mu), 2))
        rel = np.hypot(m.jet_stochastic / np.sqrt(np.maximum(j[:, 0], 1e-9)), m.jet_constant)
        j = j * np.c_[np.maximum(1 + rel * rng.standard_normal(len(j)), 0.0), np.ones((len(j), 2))]
        j[:, 1:] += rng.normal(0, m.jet_pos_sigma, (len(j), 2))
    # the smearing may move objects across the thresholds: apply them after it, as a trigger does
    e = e[(e[:, 0] > m.egamma_pt_min) & (np.abs(e[:, 1]) < m.egamma_eta_max)]
    mu = mu[(mu[:, 0] > m.muon_pt_min) & (np.abs(mu[:, 1]) < m.muon_eta_max)]
    j = j[(j[:, 0] > m.jet_pt_min) & (np.abs(j[:, 1]) < m.jet_eta_max)]
    leps = np.r_[e, mu]
    if len(leps) and len(j):
        dr2 = (j[:, None, 1] - leps[None, :, 1]) ** 2 + _wrap(j[:, None, 2] - leps[None, :, 2]) ** 2
        j = j[~np.any(dr2 < m.overlap_dr**2, axis=1)]
    for arr in (e, mu, j):
        arr[:, 2] = _wrap(arr[:, 2])
    return layout_event(met, e, mu, j)


def _pt_eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def _events_from_batch(batch, rng: np.random.Generator, model: L1ObjectModel) -> list[np.ndarray]:
    with needs_extra("jets", _WHAT):  # lazy import of an optional extra
        import awkward as ak
        import fastjet

    prt = batch.prt
    apid = abs(prt.id)
    vis = prt[(prt.status > 0) & (apid != _INVISIBLE[0]) & (apid != _INVISIBLE[1]) & (apid != _INVISIBLE[2])]
    n = ak.to_numpy(ak.num(vis))
    off = np.concatenate([[0], np.cumsum(n)])
    px, py, pz = (ak.to_numpy(ak.flatten(getattr(vis.p, c))) for c in ("px", "py", "pz"))
    pid = ak.to_numpy(ak.flatten(vis.id))
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    # jets from the particles inside |eta| < met_eta_max (the calorimeter acceptance)
    inside = ak.unflatten(np.abs(eta) < model.met_eta_max, n)
    vec = ak.zip({"px": vis.p.px[inside], "py": vis.p.py[inside], "pz": vis.p.pz[inside], "E": vis.p.e[inside]},
                 with_name="Momentum4D")
    seq = fastjet.ClusterSequence(vec, fastjet.JetDefinition(fastjet.antikt_algorithm, model.jet_radius))
    jets = seq.inclusive_jets(min_pt=0.5 * model.jet_pt_min)
    jn = ak.to_numpy(ak.num(jets))
    joff = np.concatenate([[0], np.cumsum(jn)])
    jpt, jeta, jphi = _pt_eta_phi(*(ak.to_numpy(ak.flatten(getattr(jets, c))).astype(np.float64)
                                    for c in ("px", "py", "pz")))
    out = []
    for i in range(len(n)):
        s, js = slice(off[i], off[i + 1]), slice(joff[i], joff[i + 1])
        out.append(event_objects(pid[s], pt[s], eta[s], phi[s], np.c_[jpt[js], jeta[js], jphi[js]], rng, model))
    return out


def generate_l1(process: str, n_events: int, seed: int, model: L1ObjectModel = L1ObjectModel(),
                max_events: int | None = None) -> L1Events:
    """``n_events`` pre-selected events of one process, generated in this process.

    Arguments:
        process: a key of :data:`PROCESSES`.
        n_events: accepted events to return.
        seed: Pythia seed 1 … 900 000 000 (also seeds the smearing).
        model: the object model.
        max_events: give up (``RuntimeError``) after generating this many events
            (default ``2000 · n_events + 10 000``).

    Returns:
        :class:`L1Events` with attrs ``n_generated`` (events generated) and ``seconds``.
    """
    if process not in PROCESSES:
        raise ValueError(f"process: expected one of {list(PROCESSES)}, found {process!r}")
    if int(n_events) < 0:
        raise ValueError(f"n_events: expected >= 0, found {n_events}")
    if not 1 <= int(seed) <= _MAX_PYTHIA_SEED:
        raise ValueError(f"seed: expected 1 … {_MAX_PYTHIA_SEED} (Pythia's range), found {seed}")
    with needs_extra("jets", _WHAT):  # lazy import of an optional extra
        import pythia8mc

    n_events = int(n_events)
    max_events = 2000 * n_events + 10_000 if max_events is None else int(max_events)
    quiet_fastjet()
    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(int(seed))
    kept: list[np.ndarray] = []
    n_gen = 0
    if n_events:
        pythia = pythia8mc.Pythia("", False)
        for line in l1_pythia_settings(process, seed, model):
            if not pythia.readString(line):
                raise ValueError(f"Pythia rejected the setting {line!r}")
        if not pythia.init():
            raise RuntimeError(f"Pythia initialisation failed for process {process!r}")
        while len(kept) < n_events:
            if n_gen >= max_events:
                raise RuntimeError(f"{process}: {len(kept)} of {n_events} events passed the pre-selection after "
                                   f"{n_gen} generated events")
            batch = pythia.nextBatch(int(model.events_per_batch))
            n_gen += len(batch)
            evs = _events_from_batch(batch, rng, model)
            if evs:
                arr = np.stack(evs)
                kept += list(arr[one_lepton_preselection(arr, pt_min=model.lepton_pt_min)])
    objs = np.stack(kept[:n_events]) if n_events else np.zeros((0, 19, 3), np.float32)
    return L1Events(objs, np.zeros(n_events, np.int16), (process,),
                    {"n_generated": n_gen, "seconds": time.perf_counter() - t0,
                     "process_seconds": time.process_time() - c0, "seed": int(seed)})


def split_counts(n_events: int, fractions: dict[str, float]) -> dict[str, int]:
    """Integer counts summing to ``n_events`` in the given fractions (largest remainders).

    >>> split_counts(1000, SM_FRACTIONS)
    {'W_lnu': 592, 'QCD': 338, 'Z_ll': 67, 'ttbar': 3}
    """
    total = sum(fractions.values())
    raw = {k: n_events * v / total for k, v in fractions.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: n_events - sum(out.values())]:
        out[k] += 1
    return out


def _run_chunk(task: dict) -> dict:
    data = generate_l1(task["process"], task["n"], task["seed"], L1ObjectModel(**task["model"]))
    write_l1(task["path"], data, compression=None)
    return {"path": task["path"], "n": len(data)}


def _chunk_ok(path: Path, n: int) -> bool:
    try:
        return len(read_l1(path)) == n
    except (ValueError, OSError):
        return False


def simulate_l1(output: str | os.PathLike, n_events: int, processes: Sequence[str] = ("sm",), seed: int = 0,
                model: L1ObjectModel = L1ObjectModel(), workers: int = 1, chunk_size: int = 500,
                resume: bool = True, progress: bool = True) -> L1Events:
    """Generate pre-selected L1 events of several processes and write them to ``output``.

    Arguments:
        output: the HDF5 file (:func:`hepgen.data.l1.write_l1`).
        n_events: accepted events per process; for ``"sm"`` the total of the background mix.
        processes: names of :data:`PROCESSES`, or ``"sm"`` (the four backgrounds in
            :data:`SM_FRACTIONS`), or ``"signals"`` (the four signals).
        seed: master seed (chunk seeds from :func:`hepgen.simulate.chunks.chunk_seed`).
        model: object model; workers, chunk_size, resume, progress: see
            :func:`hepgen.simulate.chunks.run_chunks`.

    Returns:
        the merged :class:`L1Events`; attrs hold the settings and, per process, the
        pre-selection efficiency ``accepted / generated`` (JSON in ``preselection_efficiency``).
    """
    if int(n_events) < 1 or int(chunk_size) < 1:
        raise ValueError(f"n_events and chunk_size must be >= 1, found {n_events}, {chunk_size}")
    require_extra("jets", _WHAT, ("pythia8mc", "fastjet", "awkward"))  # before any worker starts
    counts: dict[str, int] = {}
    for p in processes:
        if p == "sm":
            counts.update(split_counts(int(n_events), SM_FRACTIONS))
        elif p == "signals":
            counts.update({s: int(n_events) for s in SIGNALS})
        elif p in PROCESSES:
            counts[p] = int(n_events)
        else:
            raise ValueError(f"processes: expected names from {list(PROCESSES)} or 'sm'/'signals', found {p!r}")
    counts = {k: v for k, v in counts.items() if v > 0}
    output = Path(output)
    chunk_dir = chunk_dir_for(output)
    manifest = {"counts": counts, "seed": int(seed), "chunk_size": int(chunk_size), "model": model.to_dict()}
    names = list(PROCESSES)
    tasks = []
    for p, n in counts.items():
        for c, start in enumerate(range(0, n, int(chunk_size))):
            tasks.append({"process": p, "n": min(int(chunk_size), n - start), "model": model.to_dict(),
                          "seed": chunk_seed(seed, names.index(p), c, maximum=_MAX_PYTHIA_SEED),
                          "path": str(chunk_dir / f"{p}_{c:05d}.h5")})
    run_chunks(chunk_dir, manifest, tasks, _run_chunk, lambda t: _chunk_ok(Path(t["path"]), t["n"]),
               workers=workers, resume=resume, progress=progress, desc="pythia+L1", unit="event")
    parts = [read_l1(t["path"]) for t in tasks]
    eff: dict[str, list[int]] = {}
    for t, part in zip(tasks, parts):
        acc = eff.setdefault(t["process"], [0, 0])
        acc[0] += len(part)
        acc[1] += int(part.attrs.get("n_generated", 0))
    attrs = {"generator": "pythia8mc + fastjet + L1 object model (hepgen.simulate.l1)", "seed": int(seed),
             "counts": json.dumps(counts), "model": json.dumps(model.to_dict()),
             "preselection_efficiency": json.dumps({p: a / g if g else None for p, (a, g) in eff.items()}),
             "n_generated": json.dumps({p: g for p, (a, g) in eff.items()}),
             "cpu_seconds": float(sum(float(p.attrs.get("seconds", 0.0)) for p in parts)),
             "process_seconds": float(sum(float(p.attrs.get("process_seconds", 0.0)) for p in parts))}
    data = L1Events.concatenate(parts, attrs)
    write_l1(output, data)
    finish_chunks(chunk_dir)
    return data
