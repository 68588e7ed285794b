"""The ``hepgen`` command: thin sub-commands over the library (nothing imports this module)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, found {text!r}") from None


def _load_geometry_arg(path):
    from hepgen.data.geometry import load_geometry

    return None if path is None else load_geometry(path)


# --- sub-commands ---------------------------------------------------------------------------
def cmd_simulate_showers(args) -> int:
    from hepgen.data.formats import write_showers
    from hepgen.data.geometry import default_binning, save_geometry
    from hepgen.simulate.calorimeter import simulate_dataset

    geometry = _load_geometry_arg(args.binning) or default_binning()
    t0 = time.perf_counter()
    data = simulate_dataset(
        args.n,
        geometry=geometry,
        energy_range=tuple(args.energy_range),
        energies=args.energies,
        theta_range=tuple(args.theta_range) if args.theta_range else None,
        position_range=tuple(args.position_range) if args.position_range else None,
        seed=args.seed,
        progress=not args.quiet,
    )
    dt = time.perf_counter() - t0
    write_showers(args.output, data)
    if args.write_binning:
        save_geometry(geometry, args.write_binning)
    print(f"wrote {len(data)} showers ({geometry.n_voxels} voxels) to {args.output} "
          f"in {dt:.1f} s ({len(data) / max(dt, 1e-9):.0f} showers/s)")
    return 0


def cmd_train(args) -> int:
    from hepgen.config import TrainConfig, load_config
    from hepgen.data.formats import read_showers
    from hepgen.train.trainer import train

    config = load_config(args.config) if args.config else TrainConfig()
    for name in ("family", "epochs", "max_minutes", "batch_size", "lr", "seed", "threads"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.conditions is not None:
        config.conditions = args.conditions
    data = read_showers(args.data, geometry=args.binning)
    gen = train(data, config, args.output, resume=args.resume, init_from=args.init_from, progress=not args.quiet)
    print(f"trained {gen.model.family} on {len(data)} showers; checkpoints in {args.output} (best.pt, last.pt)")
    return 0


def _sample_conditions(args, gen):
    """Incident energies and extra conditions for ``hepgen sample``."""
    from hepgen.data.formats import read_showers

    rng = np.random.default_rng(args.seed)
    if args.conditions_from:
        ref = read_showers(args.conditions_from)
        n = len(ref) if args.n is None else min(args.n, len(ref))
        return ref.incident_energies[:n, 0], {k: v[:n] for k, v in ref.conditions.items() if k in gen.condition_names}
    if args.n is None:
        raise ValueError("give --n (number of showers) or --conditions-from FILE.h5")
    if args.energies:
        e = rng.choice(np.asarray(args.energies, dtype=float), size=args.n)
    else:
        lo, hi = args.energy_range or gen.meta.get("energy_range", [1e3, 1e5])
        if not 0 < lo <= hi:
            raise ValueError(f"--energy-range: expected 0 < LO <= HI (MeV), found {lo} {hi}")
        e = np.exp(rng.uniform(np.log(lo), np.log(hi), size=args.n))
    conds = {}
    for name in gen.condition_names:
        lo, hi = (np.asarray(x) for x in gen.meta["condition_ranges"][name])
        conds[name] = rng.uniform(lo, hi, size=(args.n, lo.size))
    return e, conds


def cmd_sample(args) -> int:
    from hepgen.data.formats import ShowerData, write_showers
    from hepgen.pipeline import ShowerGenerator

    gen = ShowerGenerator.load(args.checkpoint)
    energies, conds = _sample_conditions(args, gen)
    t0 = time.perf_counter()
    showers = gen.sample(energies, conds, seed=args.seed, batch_size=args.batch_size, progress=not args.quiet)
    dt = time.perf_counter() - t0
    attrs = {"generator": f"hepgen {gen.model.family}", "checkpoint": str(args.checkpoint), "seed": args.seed}
    write_showers(args.output, ShowerData(showers, energies.reshape(-1, 1), conds, gen.geometry, attrs))
    print(f"wrote {len(showers)} showers to {args.output} in {dt:.2f} s ({len(showers) / max(dt, 1e-9):.0f} showers/s)")
    return 0


def cmd_evaluate(args) -> int:
    from hepgen.evaluate import evaluate_files

    metrics = evaluate_files(args.real, args.generated, geometry=args.binning, out_dir=args.output,
                             seed=args.seed, classifier=not args.no_classifier)
    out = Path(args.output)
    print(json.dumps(_headline(metrics), indent=2))
    print(f"metrics: {out / 'metrics.json'}\nreport:  {out / 'report.html'}")
    return 0


def _headline(metrics: dict) -> dict:
    head = {"separation_power_mean": metrics.get("separation_power_mean")}
    for level, res in (metrics.get("classifier") or {}).items():
        head[f"auc_{level}"] = res.get("auc")
    return head


def cmd_demo(args) -> int:
    from hepgen.config import DemoConfig, load_config
    from hepgen.demo import run_demo

    config = load_config(args.config, DemoConfig) if args.config else DemoConfig()
    if args.quick:
        config.n_train, config.n_test = 3000, 1000
        config.train.epochs, config.train.max_minutes = 3, 1.0
    run_demo(args.output, config, progress=not args.quiet)
    return 0


# --- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from hepgen import __version__

    p = argparse.ArgumentParser(prog="hepgen", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--version", action="version", version=f"hepgen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="generate reference data").add_subparsers(dest="what", required=True)
    s = sim.add_parser("showers", help="EM showers from the GFlash-based reference simulator")
    s.add_argument("-o", "--output", required=True, help="output CaloChallenge HDF5 file")
    s.add_argument("--n", type=int, default=10_000, help="number of showers")
    s.add_argument("--binning", help="CaloChallenge binning XML or geometry JSON (default: built-in 384-voxel binning)")
    s.add_argument("--energy-range", type=float, nargs=2, default=[1e3, 1e5], metavar=("LO", "HI"),
                   help="log-uniform incident energy range in MeV")
    s.add_argument("--energies", type=_floats, help="discrete incident energies in MeV, e.g. 1000,10000")
    s.add_argument("--theta-range", type=float, nargs=2, metavar=("LO", "HI"), help="incident angle range (rad)")
    s.add_argument("--position-range", type=float, nargs=2, metavar=("LO", "HI"), help="impact x,y range (mm)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--write-binning", help="also write the binning used (.xml or .json)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_simulate_showers)

    t = sub.add_parser("train", help="train a conditional generative model on showers")
    t.add_argument("data", help="training showers (CaloChallenge HDF5)")
    t.add_argument("-o", "--output", required=True, help="run folder for checkpoints and logs")
    t.add_argument("--binning", help="binning XML / geometry JSON (default: the file's own)")
    t.add_argument("--config", help="TrainConfig YAML")
    t.add_argument("--family")
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-minutes", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int)
    t.add_argument("--conditions", nargs="*", help="extra condition datasets, e.g. incident_theta")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    t.add_argument("--init-from", help="initialise weights from this checkpoint (fine-tuning)")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    sm = sub.add_parser("sample", help="sample showers from a trained checkpoint")
    sm.add_argument("checkpoint")
    sm.add_argument("-o", "--output", required=True, help="output CaloChallenge HDF5 file")
    sm.add_argument("--n", type=int)
    sm.add_argument("--energies", type=_floats, help="incident energies in MeV to draw from")
    sm.add_argument("--energy-range", type=float, nargs=2, metavar=("LO", "HI"), help="log-uniform, MeV")
    sm.add_argument("--conditions-from", help="take incident energies and conditions from this HDF5 file")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--batch-size", type=int, default=1_000)
    sm.add_argument("-q", "--quiet", action="store_true")
    sm.set_defaults(func=cmd_sample)

    ev = sub.add_parser("evaluate", help="compare generated showers with real ones")
    ev.add_argument("real")
    ev.add_argument("generated")
    ev.add_argument("--binning", help="binning XML / geometry JSON (default: the files' own)")
    ev.add_argument("-o", "--output", required=True, help="folder for metrics.json and report.html")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-classifier", action="store_true", help="skip the classifier two-sample test")
    ev.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="simulate → train → sample → evaluate → report on built-in defaults")
    d.add_argument("-o", "--output", default="hepgen-demo", help="output folder (default: hepgen-demo)")
    d.add_argument("--config", help="DemoConfig YAML")
    d.add_argument("--quick", action="store_true", help="a one-minute smoke run with tiny sizes")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        if args.verbose:
            raise
        print(f"hepgen: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
