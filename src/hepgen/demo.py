"""``hepgen demo``: the main job on built-in defaults.

simulate (reference simulator) → train (CaloFlow preset) → distil a one-pass student
(CaloFlow II-style, :mod:`hepgen.train.distill`) → sample with it (at the test set's
conditions) → evaluate (high-level features, separation power, classifier AUC) → report
(HTML), then print where the report is and the headline numbers.  The trained teacher is
also timed on the same conditions, so the summary shows what distillation bought.  The
showers are sampled, timed and evaluated through ``DemoConfig.sampling_path`` (default
``auto``: ``compile-bf16`` on CPUs with native bf16, else ``compile``, see
:func:`~hepgen.domains.showers.inference.auto_sampling_path`;
:func:`hepgen.domains.showers.inference.sample_through_path` with the fast samplers of
:func:`~hepgen.domains.showers.inference.build_sampler` under ``torch.compile``; the compilation is
timed apart as ``timing.sampling_setup_s``, and if it fails — inductor needs a C++ compiler — the
demo samples with ``fp32`` and records why in ``timing.sampling_path_fallback``); the path used is
printed and recorded as ``timing.sampling_path`` (docs/inference.md, "The spline coupling sampler").

Speed-ups: ``speedup_vs_simulator`` against the GFlash simulator that made the data (the
test set's showers, same process), and, when the optional ``hepgen[geant4]`` extra is
installed, ``speedup_vs_geant4`` against Geant4 in the demo calorimeter's Geant4 twin
(preset ``demo``: the same 2 mm Pb / 4 mm scintillator stack, 24 X0, 8 layers of 3 X0,
the same 384-voxel binning; :func:`hepgen.simulate.geant4.presets.gflash_twin`):
``DemoConfig.geant4_n`` showers (default 20, ≈ 5 s on one core for 1-100 GeV) at the
midpoints in ln E of equal-probability strata of the demo's log-uniform spectrum give
Geant4's mean s/shower over that spectrum
(:func:`hepgen.simulate.geant4.timing.time_geant4_showers`), and the speed-up is the
generator's showers/s on the test set (the same spectrum) times that.  ``metrics.json``
records it under ``timing`` with Geant4's s/shower, the showers timed and the energy range
(``geant4_timing``: the preset, each shower's energy and seconds, the method); without the
extra, ``speedup_vs_geant4`` is null and ``geant4_note`` says why.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hepgen._io import provenance
from hepgen.config import DemoConfig, dump_config
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import default_binning, save_geometry
from hepgen.domains.showers.evaluate import evaluate, write_outputs
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.inference import (
    SAMPLING_PATHS,
    ShowerSampler,
    auto_sampling_path,
    compiles,
    prepare_path,
    sample_through_path,
)
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.simulate.geant4.timing import describe as describe_geant4
from hepgen.simulate.geant4.timing import time_geant4_showers
from hepgen.train.distill import distill
from hepgen.train.trainer import train

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def _simulate(path: Path, n: int, config: DemoConfig, seed: int, progress: bool) -> tuple[ShowerData, float]:
    t0 = time.perf_counter()
    data = simulate_dataset(n, geometry=default_binning(), energy_range=config.energy_range, seed=seed, progress=progress)
    dt = time.perf_counter() - t0
    write_showers(path, data)
    return data, dt


def run_demo(out_dir, config: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run the whole chain into ``out_dir`` and return the headline summary (also in summary.json)."""
    config = config or DemoConfig()
    if config.sampling_path not in SAMPLING_PATHS + ("auto",):
        raise ValueError(f"demo config key 'sampling_path': expected 'auto' or one of {SAMPLING_PATHS}, "
                         f"found {config.sampling_path!r}")
    provenance(config.seed, what="hepgen demo")  # logs the seed of the simulation (the trainer logs its own)
    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "demo_config.yaml")
    geometry = default_binning()
    save_geometry(geometry, out / "data" / "binning.xml")
    t_start = time.perf_counter()

    steps = 6 if config.distill is not None else 5
    print(f"[1/{steps}] simulating {config.n_train} training and {config.n_test} test showers (reference simulator)")
    train_data, _ = _simulate(out / "data" / "train.h5", config.n_train, config, config.seed, progress)
    test_data, t_sim = _simulate(out / "data" / "test.h5", config.n_test, config, config.seed + 1000, progress)

    print(f"[2/{steps}] training a conditional {config.train.family} "
          f"(≤ {config.train.epochs} epochs, ≤ {config.train.max_minutes} min)")
    t0 = time.perf_counter()
    train(train_data, config.train, out / "run", progress=progress)
    t_train = time.perf_counter() - t0
    timing = {}
    model_path = out / "run" / "best.pt"
    if config.distill is not None:
        print(f"[3/{steps}] distilling a one-pass student of the {config.train.family} "
              f"({', '.join(f'{k}={v}' for k, v in config.distill.items())})")
        t0 = time.perf_counter()
        model_path = distill(model_path, train_data, out / "student", seed=config.seed,
                             threads=config.train.threads, progress=progress, **config.distill)
        timing["distill_minutes"] = (time.perf_counter() - t0) / 60
        teacher = ShowerGenerator.load(out / "run" / "best.pt")
        t0 = time.perf_counter()
        teacher.sample(test_data.incident_energies, test_data.conditions, seed=config.seed)
        timing["teacher_showers_per_s"] = len(test_data) / (time.perf_counter() - t0)

    path = auto_sampling_path() if config.sampling_path == "auto" else config.sampling_path
    asked = f"auto: {path}" if config.sampling_path == "auto" else path
    print(f"[{steps - 2}/{steps}] sampling {len(test_data)} showers at the test set's incident energies "
          f"(sampling path {asked})")
    generator = ShowerGenerator.load(model_path)
    module = None
    if compiles(path):
        # the one-off compilation (cached on disk by inductor: a second run takes seconds) is
        # timed apart from the sampling, and reported next to it
        t0 = time.perf_counter()
        try:
            module = prepare_path(ShowerSampler.from_generator(generator), path)
            warm_up = {k: v[:1000] for k, v in test_data.conditions.items()}
            sample_through_path(generator, test_data.incident_energies[:1000], warm_up, path=path, module=module)
        except Exception as err:  # noqa: BLE001 - inductor needs a C++ compiler; without one, fp32 samples
            module, path = None, "fp32"
            first_line = (str(err).splitlines() or [""])[0][:200]
            timing["sampling_path_fallback"] = f"compile failed ({type(err).__name__}: {first_line})"
            print(f"  {timing['sampling_path_fallback']}; sampling with fp32 instead")
        else:
            timing["sampling_setup_s"] = time.perf_counter() - t0
            print(f"  compiled the sampler in {timing['sampling_setup_s']:.1f} s (not in the sampling time)")
    t0 = time.perf_counter()
    showers = sample_through_path(generator, test_data.incident_energies, test_data.conditions,
                                  path=path, seed=config.seed, progress=progress, module=module)
    t_gen = time.perf_counter() - t0
    timing["sampling_path"] = path
    generated = ShowerData(showers, test_data.incident_energies, dict(test_data.conditions), geometry,
                           {"generator": f"hepgen {generator.model.family}",
                            "checkpoint": str(model_path.relative_to(out))})
    write_showers(out / "generated.h5", generated)
    g4 = time_geant4_showers(geometry, config.energy_range, n=config.geant4_n,
                             max_seconds=config.geant4_max_seconds, seed=config.seed)
    print("  " + describe_geant4(g4))
    if g4["available"]:
        timing.update({"speedup_vs_geant4": len(test_data) / t_gen * g4["s_per_shower"],
                       "geant4_s_per_shower": g4["s_per_shower"], "geant4_showers_timed": g4["n_showers"],
                       "geant4_energy_range_mev": g4["energy_range_mev"]})
    else:
        timing.update({"speedup_vs_geant4": None, "geant4_note": g4["reason"]})

    print(f"[{steps - 1}/{steps}] evaluating generated vs test showers")
    real = read_showers(out / "data" / "test.h5")
    metrics, details = evaluate(real, generated, geometry, seed=config.seed, return_details=True,
                                train=train_data)
    metrics["timing"] = {
        "simulator_showers_per_s": len(test_data) / t_sim,
        "generator_showers_per_s": len(test_data) / t_gen,
        "speedup_vs_simulator": t_sim / t_gen,
        "training_minutes": t_train / 60,
        **timing,
    }
    metrics["geant4_timing"] = g4  # preset, particle, each shower's energy and seconds, the method
    print(f"[{steps}/{steps}] writing metrics and report")
    write_outputs(metrics, real, generated, out / "report", details=details, train_log=out / "run" / "train_log.csv")

    clf = metrics.get("classifier", {})
    summary = {
        "report": str((out / "report" / "report.html").resolve()),
        "model": generator.model.family,
        "auc_low_level": clf.get("low_level", {}).get("auc"),
        "auc_high_level": clf.get("high_level", {}).get("auc"),
        "separation_power_mean": metrics["separation_power_mean"],
        **metrics["timing"],
        "total_minutes": (time.perf_counter() - t_start) / 60,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n=== hepgen demo: headline numbers ===")
    for key, value in summary.items():
        print(f"  {key:28s} {value:.4g}" if isinstance(value, float) else f"  {key:28s} {value}")
    return summary
