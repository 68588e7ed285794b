"""Options of a kind's adapter that a refiner run may set: critic gate, fixed noise, trigger rule, filling.

Some settings of the refinement belong to the *adapter* of a kind of data rather than to
:class:`hepgen.refine.refiner.RefinerConfig`, because they are stored in the adapter state
(``preprocessing`` of the refiner checkpoint) and read by the adapter's network choice
(``architecture(state)``).  For surface-detector traces these are

* ``critic_min_vem`` (the *critic gate*, VEM): stations with an integrated signal well below
  it are hidden from the critic (a smooth gate in ln I; 0 = none, the default);
* ``noise_vem`` (VEM per time bin): the station refiner adds this fixed Gaussian noise
  instead of learning its amplitude (``None`` = learn it, the default).  ``"measured"``
  measures it from the baselines of sim and data (:func:`baseline_noise_vem`);
* ``trigger_vem`` (VEM): the detector's trigger rule applied to refined stations (a station whose
  total is below it reads all zeros; unset = no rule, the default);
* ``fill_silent`` (bool): the station refiner may turn silent stations on (needs ``trigger_vem``
  > 0; default off);
* ``fill_random`` (bool): the amplitude proposed for a silent station also depends on a random
  number per station (needs ``fill_silent``; default off);
* ``trigger_curriculum`` (factor in (0, 1]): in training the trigger rule starts at this fraction
  of ``trigger_vem`` and rises to it over the first half of training (default: none);
* ``critic_dropout`` (in [0, 1)): dropout in the grid critic (default 0);
* ``critic_core_distance`` (bool): the grid critic's station network also sees the station's
  distance to the core estimate (default off);
* ``shot_noise`` (bool): the station refiner's time-shape correction is deterministic and its
  stochastic part is shot noise of a learned quantum per station, variance ∝ the signal per bin
  (default off; :meth:`hepgen.refine.stations.StationRefiner.shot_fluctuation`);
* ``shot_pulses`` (bool): that shot noise is a Poisson number of learned quanta per bin with a
  decay kernel instead of a log-normal per bin (needs ``shot_noise``; default off;
  :meth:`hepgen.refine.stations.StationRefiner.shot_pulse_fluctuation`);
* ``critic_total`` (bool): the grid critic's head also sees the event's log(1 + total signal)
  (default off);
* ``critic_response`` (bool): the grid critic's head also sees the event's log(1 + total signal)
  as a standardised residual from a linear fit on the labels (pooled sim and data; default off;
  :meth:`hepgen.refine.stations.StationCritic.fit_residuals`);
* ``critic_count`` (bool): the grid critic's head also sees the event's number of stations (soft,
  ``Σ min(I/T, 1)``, ``T`` = ``trigger_vem``, which it needs) as a standardised residual from a
  linear fit on the labels (default off);
* ``match_moments`` (weight ≥ 0): the station refiner's loss also asks for data's total signal and
  station count as functions of the labels (needs ``trigger_vem``; default 0 = off;
  :meth:`hepgen.refine.stations.StationRefiner.moment_loss`);
* ``match_roughness`` (bool): the moments of ``match_moments`` (which it needs) also include the
  event's excess roughness of the pulses (:func:`hepgen.refine.stations.excess_roughness`; default off);
* ``critic_roughness`` (bool): the grid critic's station network also sees the station's total
  variation Σ|ΔS| / max(I, 1) (default off);
* ``critic_dense`` (bool): the grid critic's score also adds an MLP on the whole event, every
  station and time bin standardised, and the labels (default off; on the Auger-like toy it
  memorises fixed samples, and with new events every epoch lowers the hold-out AUC by ≈ 0.03:
  docs/refine.md, twelfth round on the toy);
* ``shape_envelope`` (bool): the station refiner's time-shape correction is bounded by the
  pulse's envelope (:meth:`hepgen.refine.stations.StationRefiner.envelope`; default off).

:func:`set_adapter_options` applies such options to a fitted state and refuses options the
kind does not have (one-line ``ValueError``), so that e.g. ``--critic-min-vem`` on showers
is an error rather than silently ignored.  Used by ``hepgen refine train``
(:func:`hepgen.refine.refiner.train_files`); the Auger benchmark sets the same keys.

Example:
    >>> st = {"kind": "traces", "critic_min_vem": 0.0, "noise_vem": None, "layout": {}, "labels": []}
    >>> set_adapter_options(st, {"critic_min_vem": 10.0})["critic_min_vem"]
    10.0
    >>> set_adapter_options({"kind": "showers", "scale_mev": 1.0}, {"noise_vem": 0.1})
    Traceback (most recent call last):
    ...
    ValueError: refiner option 'noise_vem': the adapter of kind 'showers' has no such option (it has [])
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ADAPTER_OPTIONS", "FLAG_OPTIONS", "NETWORK_OPTIONS", "TRACE_FLAGS", "OptionFlag", "add_option_flags",
           "baseline_noise_vem", "options_from_flags", "set_adapter_options"]

#: adapter-state keys a run may set, per kind of data (the keys of that adapter's ``fit`` state)
ADAPTER_OPTIONS: dict[str, tuple[str, ...]] = {
    "traces": ("critic_min_vem", "noise_vem", "trigger_vem", "fill_silent", "fill_random", "trigger_curriculum",
               "critic_dropout", "critic_core_distance", "shot_noise", "critic_total",
               "shape_envelope", "critic_response", "critic_count", "match_moments",
               "critic_roughness", "match_roughness", "shot_pulses", "critic_dense"), "showers": ()}
#: the options that are true or false
FLAG_OPTIONS = ("fill_silent", "fill_random", "critic_core_distance", "shot_noise", "critic_total", "shape_envelope",
                "critic_response", "critic_count", "critic_roughness", "match_roughness", "shot_pulses", "critic_dense")
#: the traces options that shape the refiner or critic networks, copied into the adapter's
#: architecture only when set (so that checkpoints of before keep their hparams)
NETWORK_OPTIONS = ("fill_random", "trigger_curriculum", "critic_dropout", "critic_core_distance", "shot_noise",
                   "critic_total", "shape_envelope", "critic_response", "critic_count", "match_moments",
                   "critic_roughness", "match_roughness", "shot_pulses", "critic_dense")


@dataclass(frozen=True)
class OptionFlag:
    """One adapter option as a command-line flag: ``--key-with-dashes``.

    ``metavar`` ``None`` and no ``choices``: a switch (true when given, else unset); with
    ``choices``: one of these words; otherwise the flag takes a number.  Words and numbers take
    ``default`` when not given (a caller's own default overrides it; ``None`` = unset).
    """

    key: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    default: str | float | None = None

    @property
    def switch(self) -> bool:
        """True for an on/off flag (no value)."""
        return self.metavar is None and self.choices is None


#: the traces options a refiner run sets from the command line, in the order of ``--help``: the
#: one table from which ``hepgen refine train`` and ``benchmarks/bench_refine_auger.py`` add their
#: flags (:func:`add_option_flags`) and build ``adapter_options`` (:func:`options_from_flags`).
#: ``noise_vem`` is not here: it has two spellings (``--noise-vem V`` | ``--measured-noise``),
#: which each caller adds itself.
TRACE_FLAGS: tuple[OptionFlag, ...] = (
    OptionFlag("critic_min_vem", "critic gate: hide stations well below this signal (VEM) from the critic "
               "(0 = none)", "VEM"),
    OptionFlag("trigger_vem", "trigger threshold (VEM) applied to refined stations: a station below it reads "
               "zeros (unset = no rule)", "VEM"),
    OptionFlag("fill_silent", "the station refiner may turn silent stations on (needs --trigger-vem)"),
    OptionFlag("fill_random", "the amplitude proposed for a silent station also depends on a random number "
               "(needs --fill-silent)"),
    OptionFlag("trigger_curriculum", "in training the trigger rule starts at this fraction of --trigger-vem and "
               "rises to it by mid-training (unset = none)", "F"),
    OptionFlag("critic_dropout", "dropout in the grid critic (unset = 0)", "P"),
    OptionFlag("critic_core_distance", "the grid critic's station network also sees each station's distance to the "
               "core estimate"),
    OptionFlag("critic_total", "the grid critic's head also sees the event's log(1 + total signal)"),
    OptionFlag("critic_response", "the grid critic's head also sees log(1 + total signal) as a standardised "
               "residual from a linear fit on the labels"),
    OptionFlag("critic_count", "the grid critic's head also sees the number of stations as a standardised "
               "residual from a linear fit on the labels (needs --trigger-vem)"),
    OptionFlag("critic_roughness", "the grid critic's station network also sees the station's total variation "
               "Σ|ΔS| / max(I, 1)"),
    OptionFlag("critic_dense", "the grid critic's score also adds an MLP on the whole event (every station and "
               "time bin, standardised) and the labels"),
    OptionFlag("match_moments", "the refiner's loss also asks for data's total signal and number of stations as "
               "functions of the labels, with this weight (needs --trigger-vem; unset = 0 = off)", "WEIGHT"),
    OptionFlag("match_roughness", "the matched moments also include the event's excess roughness, its pulses' "
               "ups and downs beyond one rise and one fall (needs --match-moments)"),
    OptionFlag("shape_envelope", "the station refiner's time-shape correction is bounded by the pulse's envelope"),
    OptionFlag("shot_noise", "deterministic time-shape correction; the refiner's stochastic part is shot noise "
               "of a learned quantum per station (variance proportional to the signal per bin)"),
    OptionFlag("shot_pulses", "the shot noise is a Poisson number of learned quanta (≈ 1 VEM, a muon) per bin "
               "with a decay kernel, not a log-normal per bin (needs --shot-noise)"),
)

#: the shower options of ``hepgen refine train`` and ``benchmarks/bench_refine_showers.py``, from one
#: table as the traces' are.  Unlike :data:`TRACE_FLAGS` these are keys of
#: :class:`hepgen.refine.refiner.RefinerConfig`, not adapter options: callers pass
#: ``RefinerConfig(**options_from_flags(args, SHOWER_FLAGS))``.
SHOWER_FLAGS: tuple[OptionFlag, ...] = (
    OptionFlag("critic_sums", "the critic also sees the log energy per layer and in total "
               "(hepgen.refine.critic_sums; docs/refine.md)"),
    OptionFlag("critic_sums_head", "the critic's score also adds a small network on the log energy sums and the "
               "labels alone (needs --critic-sums; hepgen.refine.critic_sums; docs/refine.md)"),
    OptionFlag("critic_counts", "the sums critic also sees, per layer, a soft count of the voxels above this energy "
               "(MeV; needs --critic-sums; hepgen.refine.critic_sums; docs/refine.md; default 0 = off)", "MEV",
               default=0.0),
    OptionFlag("critic_layers", "the critic's score also sums one small network per layer, each on that layer's "
               "voxels and the labels (hepgen.refine.critic_layers; docs/refine.md)"),
    OptionFlag("response", "a shape refiner that keeps the energy, then a per-event response factor on the "
               "total or per layer (hepgen.refine.response; docs/refine.md; default off)",
               choices=("off", "total", "layers"), default="off"),
    OptionFlag("response_depth", "the response factor also depends on the event's depth (energy-weighted mean "
               "layer), so late showers may lose energy out of the back (needs --response; docs/refine.md)"),
    OptionFlag("response_fractions", "the response factor also depends, through a small network, on the layer "
               "fractions after the shape correction and the noise per layer (needs --response; docs/refine.md)"),
    OptionFlag("layer_noise", "the refiner also multiplies each layer's energy by a learned random factor per "
               "event, moving energy between layers coherently (use with --closeness-mean; docs/refine.md)"),
    OptionFlag("match_response", "weight of a term asking for data's mean response E_tot/E_inc and its spread as "
               "functions of the incident energy (hepgen.refine.moments; docs/refine.md; default 0 = off)", "W",
               default=0.0),
    OptionFlag("match_profile", "weight of a term asking for data's mean log response of each layer and of the "
               "total, their spreads and every pair's correlation, as functions of the incident energy "
               "(hepgen.refine.moments; docs/refine.md; default 0 = off)", "W", default=0.0),
    OptionFlag("match_occupancy", "after training, cut small refined deposits voxel by voxel so that each voxel "
               "is occupied as often as in data (ResidualRefiner.fit_occupancy; docs/refine.md)"),
    OptionFlag("azimuthal_slices", "one refiner network shared by the azimuthal slices of a cylindrical binning, "
               "each seeing its voxels, the slices' mean and the labels (rotation-equivariant; docs/refine.md)"),
)


def add_option_flags(parser, flags=TRACE_FLAGS, *, prefix: str = "", defaults: dict | None = None) -> None:
    """Add one flag per row of ``flags`` to the ``argparse`` ``parser``.

    Arguments:
        parser: an :class:`argparse.ArgumentParser` (or argument group).
        flags: rows of :class:`OptionFlag` (default :data:`TRACE_FLAGS`).
        prefix: put before every help text (``"traces: "`` where a command serves several kinds).
        defaults: ``{key: value}`` for number or word options that are set unless given (a
            benchmark's own settings), overriding the table's ``default``; every other option
            takes the table's ``default`` (``None``: unset) unless given.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_option_flags(p, defaults={"critic_min_vem": 10.0})
        >>> options_from_flags(p.parse_args(["--fill-silent", "--trigger-vem", "3", "--match-moments", "5"]))
        {'critic_min_vem': 10.0, 'trigger_vem': 3.0, 'fill_silent': True, 'match_moments': 5.0}
    """
    defaults = dict(defaults or {})
    unknown = set(defaults) - {f.key for f in flags if not f.switch}
    if unknown:
        raise ValueError(f"defaults: expected number or word options of the table, found {sorted(unknown)}")
    for f in flags:
        name = "--" + f.key.replace("_", "-")
        if f.switch:
            parser.add_argument(name, dest=f.key, action="store_true", help=prefix + f.help)
        elif f.choices is not None:
            parser.add_argument(name, dest=f.key, choices=f.choices, default=defaults.get(f.key, f.default),
                                help=prefix + f.help)
        else:
            parser.add_argument(name, dest=f.key, type=float, default=defaults.get(f.key, f.default), metavar=f.metavar,
                                help=prefix + f.help)


def options_from_flags(args: argparse.Namespace, flags=TRACE_FLAGS) -> dict:
    """``adapter_options`` (or config keys) from parsed flags: switches that were given (``True``) and
    numbers and words that are set, keyed as in the adapter state (:func:`set_adapter_options` checks
    the values)."""
    out = {}
    for f in flags:
        value = getattr(args, f.key)
        if (f.switch and value) or (not f.switch and value is not None):
            out[f.key] = value
    return out


def baseline_noise_vem(sim, data, tail_bins: int = 10) -> dict:
    """Noise the refiner must add so that sim's baseline noise matches data's.

    The baseline σ of a sample is the standard deviation of the last ``tail_bins`` time bins
    of its triggered stations (late enough that the signal has arrived; as in
    ``benchmarks/bench_refine_auger.py --measured-noise``); independent Gaussian noise adds in
    quadrature, so the refiner adds ``√max(σ_data² − σ_sim², 0)``.

    Arguments:
        sim, data: :class:`hepgen.data.traces.TraceData` (``traces`` ``(N, n_x, n_y, n_t)`` VEM).
        tail_bins: late time bins used (1 … n_t).

    Returns:
        ``{"noise_vem": added σ, "sigma_sim": σ_sim, "sigma_data": σ_data}`` (VEM per bin).

    Example:
        >>> from types import SimpleNamespace
        >>> rng = np.random.default_rng(0)
        >>> make = lambda s: SimpleNamespace(traces=rng.normal(0, s, (400, 2, 2, 20)))
        >>> r = baseline_noise_vem(make(0.03), make(0.05))
        >>> abs(r["noise_vem"] - 0.04) < 0.002
        True
    """
    out = {}
    for name, d in (("sim", sim), ("data", data)):
        t = np.asarray(d.traces, np.float64)
        if not 1 <= int(tail_bins) <= t.shape[-1]:
            raise ValueError(f"tail_bins: expected 1 … {t.shape[-1]} (the time bins of {name}), found {tail_bins!r}")
        tail = t[np.any(t != 0, axis=-1)][:, -int(tail_bins):]
        if tail.size < 2:
            raise ValueError(f"{name}: expected triggered stations to measure the baseline noise, found none")
        out[f"sigma_{name}"] = float(tail.std())
    out["noise_vem"] = float(math.sqrt(max(out["sigma_data"] ** 2 - out["sigma_sim"] ** 2, 0.0)))
    return out


def set_adapter_options(state: dict, options: dict | None, sim=None, data=None) -> dict:
    """A copy of the adapter ``state`` with ``options`` set (keys of :data:`ADAPTER_OPTIONS` for its kind).

    ``noise_vem="measured"`` is replaced by :func:`baseline_noise_vem` of ``sim`` and ``data``
    (which must then be given).  Values are checked: ``critic_min_vem >= 0``; ``noise_vem``
    ``None`` or ``>= 0``; ``trigger_vem >= 0``; ``fill_silent`` a bool, true only with a
    ``trigger_vem > 0`` (set here or already in the state).  An option the kind does not have →
    ``ValueError`` naming it.
    """
    state = dict(state)
    kind = state.get("kind")
    allowed = ADAPTER_OPTIONS.get(kind, ())
    for key, value in (options or {}).items():
        if key not in allowed:
            raise ValueError(f"refiner option {key!r}: the adapter of kind {kind!r} has no such option "
                             f"(it has {list(allowed)})")
        if key in FLAG_OPTIONS:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"refiner option {key!r}: expected true or false, found {value!r}")
            state[key] = bool(value)
            continue
        if key in ("trigger_curriculum", "critic_dropout"):
            lo_ok = (lambda v: 0 < v <= 1) if key == "trigger_curriculum" else (lambda v: 0 <= v < 1)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and lo_ok(value)):
                raise ValueError(f"refiner option {key!r}: expected a number in "
                                 f"{'(0, 1]' if key == 'trigger_curriculum' else '[0, 1)'}, found {value!r}")
            state[key] = float(value)
            continue
        if key == "noise_vem" and value == "measured":
            if sim is None or data is None:
                raise ValueError("refiner option 'noise_vem': 'measured' needs the sim and data samples")
            value = baseline_noise_vem(sim, data)["noise_vem"]
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            raise ValueError(f"refiner option {key!r}: expected a number >= 0, found {value!r}")
        if value is None and key != "noise_vem":
            raise ValueError(f"refiner option {key!r}: expected a number >= 0, found None")
        state[key] = None if value is None else float(value)
    if state.get("fill_random") and not state.get("fill_silent"):
        raise ValueError("refiner option 'fill_random': needs fill_silent")
    if state.get("trigger_curriculum") and not (state.get("trigger_vem") or 0) > 0:
        raise ValueError(f"refiner option 'trigger_curriculum': needs the trigger threshold trigger_vem > 0 VEM, "
                         f"found {state.get('trigger_vem')!r}")
    for key in ("critic_count", "match_moments"):
        if state.get(key) and not (state.get("trigger_vem") or 0) > 0:
            raise ValueError(f"refiner option {key!r}: needs the trigger threshold trigger_vem > 0 VEM, "
                             f"found {state.get('trigger_vem')!r}")
    if state.get("match_roughness") and not (state.get("match_moments") or 0) > 0:
        raise ValueError(f"refiner option 'match_roughness': needs match_moments > 0, found {state.get('match_moments')!r}")
    if state.get("shot_pulses") and not state.get("shot_noise"):
        raise ValueError("refiner option 'shot_pulses': needs shot_noise")
    if state.get("fill_silent") and not (state.get("trigger_vem") or 0) > 0:
        raise ValueError(f"refiner option 'fill_silent': needs the trigger threshold trigger_vem > 0 VEM, "
                         f"found {state.get('trigger_vem')!r}")
    return state
