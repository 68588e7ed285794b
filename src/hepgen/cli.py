# PYTHON_ARGCOMPLETE_OK  (shell completion: eval "$(register-python-argcomplete hepgen)")
"""The ``hepgen`` command line: simulate, train, sample, evaluate and benchmark generative surrogates."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import argcomplete

from hepgen.refine.options import SHOWER_FLAGS, TRACE_FLAGS, add_option_flags, options_from_flags

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
    from hepgen.data.geometry import default_binning, save_geometry
    from hepgen.simulate.gflash_stream import simulate_to_file

    if args.engine == "geant4":
        return _simulate_geant4(args)
    geant4_only = [f"--{k.replace('_', '-')}" for k in ("preset", "particle", "phi_range", "workers", "cut_mm",
                                                          "physics_list") if getattr(args, k) is not None]
    if geant4_only:
        raise ValueError(f"{', '.join(geant4_only)}: options of --engine geant4 (the gflash engine takes none of them)")
    geometry = _load_geometry_arg(args.binning) or default_binning()
    t0 = time.perf_counter()
    # chunk by chunk: flat memory, resumable (a rerun continues OUTPUT.partial), a full disk keeps the chunks
    res = simulate_to_file(
        args.output, args.n, geometry=geometry, energy_range=tuple(args.energy_range), energies=args.energies,
        theta_range=tuple(args.theta_range) if args.theta_range else None,
        position_range=tuple(args.position_range) if args.position_range else None,
        seed=args.seed, chunk_size=args.chunk_size or 10_000, resume=args.resume is not False, progress=not args.quiet)
    dt = time.perf_counter() - t0
    if args.write_binning:
        save_geometry(geometry, args.write_binning)
    new = res["n"] - res["n_resumed_from"]
    resumed = f" (resumed at {res['n_resumed_from']})" if res["n_resumed_from"] else ""
    print(f"wrote {res['n']} showers ({geometry.n_voxels} voxels) to {args.output}{resumed} "
          f"in {dt:.1f} s ({new / max(dt, 1e-9):.0f} showers/s)")
    return 0


def _simulate_geant4(args) -> int:
    from hepgen.simulate.geant4 import simulate_geant4

    if args.binning:
        raise ValueError(f"--binning: the geant4 engine uses its preset's binning (--preset), found {args.binning!r}")
    t0 = time.perf_counter()
    data = simulate_geant4(
        args.output, args.n, preset=args.preset or "ds1-photon", particle=args.particle or "gamma",
        energy_range=tuple(args.energy_range), energies=args.energies,
        theta_range=tuple(args.theta_range) if args.theta_range else None,
        phi_range=tuple(args.phi_range) if args.phi_range else None,
        position_range=tuple(args.position_range) if args.position_range else None,
        seed=args.seed, workers=args.workers or 1, chunk_size=args.chunk_size or 100, resume=args.resume is not False,
        progress=not args.quiet, cut_mm=0.7 if args.cut_mm is None else args.cut_mm, xml=args.write_binning,
        physics_list=args.physics_list or "data-free")
    dt = time.perf_counter() - t0
    print(f"wrote {len(data)} Geant4 showers ({data.geometry.n_voxels} voxels) to {args.output} in {dt:.1f} s")
    return 0


def cmd_train(args) -> int:
    from hepgen.config import apply_overrides, starting_config
    from hepgen.data.chunked import expand_paths
    from hepgen.data.stream import file_sha256
    from hepgen.domains import call_with_options, domain_of_file
    from hepgen.train.trainer import train

    # the kind of data is the file's: the domain that accepts it (files from elsewhere that none
    # accepts are read as showers, whose reader says what is missing)
    paths = expand_paths(args.data)
    domain = domain_of_file(paths[0], default="showers")
    if len(paths) > 1 and domain.kind != "showers":
        raise ValueError(f"{paths[1]}: several training files make one data set for showers only; "
                         f"{domain.kind} trains on one file")
    if args.config and args.preset:
        raise ValueError("give either --config FILE.yaml or --preset NAME, not both")
    # no file and no preset: the named family's preset (or its code defaults), else the kind's default
    config = starting_config(args.config or args.preset, family=args.family, default=domain.default_config)
    config = apply_overrides(config, args.set or [])
    for name in ("family", "epochs", "max_minutes", "batch_size", "lr", "seed", "threads", "device"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.conditions is not None:
        config.conditions = args.conditions
    data = call_with_options(domain.kind, domain.read, paths if len(paths) > 1 else paths[0], binning=args.binning,
                             jet_type=args.jet_type, n_particles=args.n_particles, types=args.types,
                             memory_budget_gb=args.memory_budget_gb)
    source = {"train_file": str(paths[0]), "train_file_sha256": file_sha256(paths[0])} if len(paths) == 1 else \
        {"train_files": [str(p) for p in paths], "train_files_sha256": [file_sha256(p) for p in paths]}
    gen = train(data, config, args.output, resume=args.resume, init_from=args.init_from, progress=not args.quiet,
                data_source=source)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once (rank 0 wrote the files)
        print(f"trained {gen.model.family} on {len(data)} {domain.kind}; checkpoints in {args.output} "
              "(best.pt, last.pt)")
    return 0


def _torch_device(name: str):
    """``--device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when available) → a ``torch.device``."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (try --device auto or cpu)")
    return torch.device(name)


def cmd_sample(args) -> int:
    from hepgen.checkpoint import load_checkpoint
    from hepgen.domains import domain_of_checkpoint
    from hepgen.domains.showers.generator import ShowerGenerator, condition_source, sample_to_file
    from hepgen.domains.showers.inference import auto_sampling_path

    payload = load_checkpoint(args.checkpoint)
    domain = domain_of_checkpoint(payload, source=args.checkpoint)
    if domain.kind != "showers":
        return _sample_like(args, domain, payload)
    if args.like:
        raise ValueError("--like: for showers give --conditions-from FILE.h5 (sampled at its energies and conditions)")
    gen = ShowerGenerator.from_payload(payload, source=args.checkpoint)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    device = _torch_device(args.device)
    source, n = condition_source(gen, args.n, energies=args.energies, energy_range=args.energy_range,
                                 conditions_from=args.conditions_from, seed=args.seed)
    t0 = time.perf_counter()
    path = args.path or "fp32"
    if path == "auto":
        path = auto_sampling_path()
    res = sample_to_file(gen, args.output, n, source, seed=args.seed, chunk_size=args.chunk_size,
                         batch_size=args.batch_size, checkpoint=args.checkpoint, resume=args.resume,
                         progress=not args.quiet, compression=None if args.compression == "none" else args.compression,
                         device=device, sampling_path=path)
    dt = time.perf_counter() - t0
    new = res["n"] - res["n_resumed_from"]
    resumed = f" (resumed at {res['n_resumed_from']})" if res["n_resumed_from"] else ""
    print(f"wrote {res['n']} showers to {args.output}{resumed}; {new} sampled in {dt:.2f} s "
          f"({new / max(dt, 1e-9):.0f} showers/s incl. writing)")
    return 0


def _sample_like(args, domain, payload) -> int:
    """``hepgen sample`` for kinds other than showers: one generated entry per entry of ``--like``."""
    import numpy as np
    import torch

    from hepgen.domains import call_with_options

    if not args.like:
        raise ValueError(f"{args.checkpoint}: a {domain.kind} checkpoint samples at the conditions of a file of its "
                         "kind: give --like FILE.h5")
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = domain.from_payload(payload, source=args.checkpoint)
    gen.model.to(_torch_device(args.device))
    like = domain.read(args.like)
    if args.n is not None:
        like = like.subset(np.arange(min(args.n, len(like))))
    t0 = time.perf_counter()
    out = call_with_options(domain.kind, gen.sample_like, like, seed=args.seed, path=args.path)
    dt = time.perf_counter() - t0
    domain.write(args.output, out)
    print(f"wrote {len(out)} generated {domain.kind} to {args.output}; {len(out) / max(dt, 1e-9):.0f} per s")
    return 0


def cmd_sample_jets(args) -> int:
    from hepgen.data.jets import read_jets, write_jets
    from hepgen.domains.jets.generator import JetGenerator

    gen = JetGenerator.load(args.checkpoint)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    gen.model.to(_torch_device(args.device))
    if args.steps is not None:
        if not hasattr(gen.model, "sample_steps"):
            raise ValueError(f"--steps: the {gen.model.family} model has no solver steps")
        gen.model.sample_steps = int(args.steps)
    t0 = time.perf_counter()
    if args.like:
        like = read_jets(args.like, n_particles=args.n_particles)
        if like.n_particles != gen.n_particles:
            raise ValueError(f"{args.like}: holds {like.n_particles} particles per jet, the model generates "
                             f"{gen.n_particles}; pass --n-particles {gen.n_particles}")
        if args.n is not None:
            like = like.subset(slice(0, args.n))
        jets = gen.sample_like(like, seed=args.seed, batch_size=args.batch_size, progress=not args.quiet)
    else:
        jets = gen.sample_in_training_range(args.type, args.n, seed=args.seed, batch_size=args.batch_size,
                                            progress=not args.quiet)
    dt = time.perf_counter() - t0
    write_jets(args.output, jets)
    print(f"wrote {len(jets)} generated jets ({', '.join(jets.types_present)}) to {args.output}; "
          f"{len(jets) / max(dt, 1e-9):.0f} jets/s incl. preprocessing")
    return 0


def cmd_evaluate(args, kind: str | None = None) -> int:
    from hepgen.domains.evaluation import domain_for, evaluate

    domain = domain_for(args.real, kind)
    groups = getattr(args, "metrics", None)
    if getattr(args, "fast", False):
        if groups is not None:
            raise ValueError("give either --fast or --metrics, not both")
        groups = "fast"
    options = {k: getattr(args, k, None) for k in (
        "binning", "seed", "train", "sep_threshold", "p_threshold", "max_points", "real_reference", "n_particles",
        "num_eval_samples", "num_batches", "efp_jobs", "classifier", "classifier_seeds", "calochallenge_min_steps",
        "memory_budget_gb")}
    options.update(metrics=groups, no_classifier=getattr(args, "no_classifier", False) or None,
                   no_efp=args.no_efp or None)
    metrics = evaluate(args.real, args.generated, args.output, kind=domain.kind, progress=not args.quiet, **options)
    out = Path(args.output)
    print(json.dumps(domain.headline(metrics), indent=2))
    print(f"metrics: {out / 'metrics.json'}\nreport:  {out / 'report.html'}")
    return 0


def cmd_tune(args) -> int:
    from hepgen.config import starting_config
    from hepgen.domains import call_with_options, domain_of_file
    from hepgen.train.tune import load_space, optuna, run_study  # without hepgen[tune]: the one-line message

    if args.quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    # the kind of data is the file's (as for hepgen train); the base config is the kind's default
    domain = domain_of_file(args.data, default="showers")
    config = starting_config(args.config, default=domain.default_config)
    data = call_with_options(domain.kind, domain.read, args.data, binning=args.binning)
    holdout = call_with_options(domain.kind, domain.read, args.holdout, binning=args.binning) if args.holdout else None
    study, best = run_study(
        data, space, config, args.output, n_trials=args.n_trials, timeout=args.timeout,
        total_trials=args.total_trials, storage=args.storage, study_name=args.study_name,
        sampler=args.sampler, sampler_seed=args.sampler_seed, pruner=args.pruner,
        objective=args.objective, prune_on=args.prune_on, holdout=holdout,
        holdout_fraction=args.holdout_fraction, seed=args.seed, heartbeat=args.heartbeat,
    )
    if best is None:
        print(f"study {study.study_name!r}: no trial completed yet ({len(study.trials)} trials); no best.json written")
        return 1
    print(json.dumps(best, indent=2))
    print(f"best trial {best['best_trial']}: {best['objective']} = {best['value']:.5g}; "
          f"checkpoint {best['checkpoint']}\nsummary: {Path(args.output) / 'best.json'}")
    return 0


def cmd_simulate_jets(args) -> int:
    from hepgen.simulate.pythia import JetGenConfig, simulate_jets_to_file

    config = JetGenConfig(n_particles=args.n_particles)
    t0 = time.perf_counter()
    res = simulate_jets_to_file(args.output, args.type.split(","), args.n, seed=args.seed, config=config,
                                workers=args.workers, chunk_size=args.chunk_size, resume=args.resume,
                                progress=not args.quiet)  # merges the chunk files one at a time: flat memory
    dt = time.perf_counter() - t0
    print(f"wrote {res['n']} jets ({', '.join(res['types_present'])}; {res['n_particles']} particles each) to "
          f"{args.output} in {dt:.1f} s ({res['n'] / max(dt, 1e-9):.1f} jets/s with {args.workers} worker(s))")
    return 0


def cmd_simulate_events(args) -> int:
    from hepgen.simulate.events import EventGenConfig, parse_masses, simulate_events

    config = EventGenConfig(qcd_pt_hat_min=args.qcd_pt_hat_min, detector={"channels": args.channels})
    t0 = time.perf_counter()
    data = simulate_events(args.output, args.process, args.n, masses=parse_masses(args.masses), mu=args.mu,
                           pileup=args.pileup, seed=args.seed, config=config, workers=args.workers,
                           chunk_size=args.chunk_size, resume=args.resume, progress=not args.quiet)
    dt = time.perf_counter() - t0
    print(f"wrote {len(data)} event images {data.shape} ({args.process}, mu={args.mu:g}) to {args.output} "
          f"in {dt:.1f} s with {args.workers} worker(s)")
    return 0


def cmd_simulate_tth(args) -> int:
    from hepgen.simulate.tth import TTHGenConfig, simulate_tth

    config = TTHGenConfig(min_btags=args.min_btags, min_b_quarks=args.min_b_quarks, low_level=args.low_level)
    t0 = time.perf_counter()
    data = simulate_tth(args.output, args.process, args.n, seed=args.seed, config=config, workers=args.workers,
                        chunk_size=args.chunk_size, resume=args.resume, progress=not args.quiet)
    print(f"wrote {len(data)} {args.process} events ({data.n_columns} variables; {data.attrs['n_generated']} "
          f"generated) to {args.output} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_simulate_l1(args) -> int:
    from hepgen.simulate.l1 import simulate_l1

    t0 = time.perf_counter()
    data = simulate_l1(args.output, args.n, args.processes.split(","), seed=args.seed, workers=args.workers,
                       chunk_size=args.chunk_size, resume=args.resume, progress=not args.quiet)
    print(f"wrote {len(data)} L1 events ({', '.join(data.processes)}) to {args.output} in "
          f"{time.perf_counter() - t0:.1f} s; pre-selection efficiency {data.attrs['preselection_efficiency']}")
    return 0


def cmd_evaluate_anomaly(args) -> int:
    from hepgen.domains.anomaly import evaluate_anomaly

    m = evaluate_anomaly(args.checkpoint, args.background, args.signals, args.output,
                         fprs=tuple(_floats(args.fpr)), n_bootstrap=args.bootstrap, seed=args.seed,
                         rates_hz=tuple(_floats(args.rate)), preselection_fraction=args.preselection_fraction)
    print(json.dumps({s: {sig: round(r["auc"], 4) for sig, r in e["signals"].items()}
                      for s, e in m["scores"].items()}, indent=1))
    print(f"metrics: {Path(args.output) / 'metrics.json'}\nreport:  {Path(args.output) / 'report.html'}")
    return 0


def cmd_quantum_table(args) -> int:
    from hepgen.quantum.table import main as table_main

    return table_main(args.extra_options)


def cmd_refine_train(args) -> int:
    from hepgen.refine import RefinerConfig, train_files

    cfg = RefinerConfig(epochs=args.epochs, batch_size=args.batch_size, closeness=args.closeness,
                        closeness_mean=args.closeness_mean, hidden=args.hidden,
                        critic_hidden=args.critic_hidden, n_critic=args.n_critic, lr=args.lr, critic_lr=args.critic_lr,
                        noise_lr_factor=args.noise_lr_factor, gp_weight=args.gp_weight, critic_warmup=args.critic_warmup,
                        ema=args.ema, architecture=args.architecture,
                        stochastic=not args.deterministic, seed=args.seed,
                        **options_from_flags(args, SHOWER_FLAGS))
    options = options_from_flags(args, TRACE_FLAGS)
    if args.measured_noise or args.noise_vem is not None:
        options["noise_vem"] = "measured" if args.measured_noise else args.noise_vem
    path = train_files(args.sim, args.data, args.output, cfg, resume=args.resume, progress=not args.quiet,
                       adapter_options=options)
    print(f"wrote {path}")
    return 0


def cmd_refine_apply(args) -> int:
    from hepgen.refine import apply_file

    out = apply_file(args.checkpoint, args.sim, args.output, seed=args.seed, stochastic=not args.deterministic)
    print(f"wrote {len(out)} refined events to {args.output}")
    return 0


def cmd_distill(args) -> int:
    from hepgen.config import key_values
    from hepgen.train.distill import distill

    path = distill(args.checkpoint, args.data, args.output, minutes=args.minutes, rounds=args.rounds,
                   n_pairs=args.n_pairs, epochs_per_round=args.epochs_per_round, hidden=args.hidden,
                   n_hidden=args.n_hidden, lr=args.lr, seed=args.seed, threads=args.threads, progress=not args.quiet,
                   adversarial=args.adversarial, init=args.init, observables=args.observables,
                   data_observables=args.data_observables, data_slices=args.data_slices,
                   data_groups=args.data_groups,
                   student_hparams=key_values(args.student_hparam, "--student-hparam"))
    print(f"wrote {path}")
    return 0


def cmd_info(args) -> int:
    from hepgen._version import __version__
    from hepgen.checkpoint import load_checkpoint
    from hepgen.data.stream import file_sha256
    from hepgen.domains import domain_of_checkpoint

    payload = load_checkpoint(args.checkpoint)
    domain = domain_of_checkpoint(payload, source=args.checkpoint)
    meta = payload.get("meta") or {}
    model = domain.from_payload(payload, source=args.checkpoint).model
    n_params = sum(p.numel() for p in model.parameters())
    card = {
        "checkpoint": str(args.checkpoint),
        "sha256": file_sha256(args.checkpoint),
        "kind": domain.kind,
        "family": payload["family"],
        "parameters": n_params,
        "hparams": payload["hparams"],
        "written_by_hepgen": payload.get("hepgen_version"),
        "this_hepgen": __version__,
        "epoch": meta.get("epoch"),
        "best_epoch": meta.get("best_epoch"),
        "selected_by": meta.get("selected_by"),
        "n_train": meta.get("n_train"),
        "training_data": {k: v for k, v in meta.items()
                          if k not in ("train_config", "epoch", "best_epoch", "step", "selected_by", "n_train")},
        "train_config": meta.get("train_config"),
        "interrupted_run_state": payload.get("trainer") is not None,
    }
    print(json.dumps(card, indent=2, default=str))
    return 0


def cmd_convert(args) -> int:
    from hepgen.data.root import TREE, require_uproot, write_root
    from hepgen.domains import domain_of_file

    if Path(args.output).suffix != ".root":
        raise ValueError(f"-o/--output: expected a .root file name, found {args.output!r}")
    require_uproot()  # before reading a large file
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"{args.input}: file not found")
    domain = domain_of_file(args.input)
    if domain.kind not in ("showers", "jets"):
        raise ValueError(f"{args.input}: hepgen convert writes showers and jets files, found a {domain.kind} file")
    data = domain.read(args.input)
    write_root(args.output, data)
    print(f"wrote {len(data)} {domain.kind} to {args.output} (TTree {TREE!r}: {', '.join(_columns(data))})")
    return 0


def _columns(data) -> list[str]:
    from hepgen.data.root import columns_of

    return list(columns_of(data.subset(slice(0, 0))))


def cmd_evaluate_jets(args) -> int:
    return cmd_evaluate(args, kind="jets")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, found {text!r}") from None


def _names(text: str) -> list[str]:
    return [x for x in text.replace(",", " ").split() if x]


def cmd_ensemble(args) -> int:
    """``hepgen ensemble A.pt B.pt ... -o OUT.pt``: one checkpoint sampling each event from one member."""
    from hepgen.checkpoint import load_checkpoint
    from hepgen.domains import domain_of_checkpoint

    gens, kinds = [], {}
    for path in args.checkpoints:
        payload = load_checkpoint(path)
        domain = domain_of_checkpoint(payload, source=path)
        kinds.setdefault(domain.kind, path)
        if len(kinds) > 1:
            first, where = next(iter(kinds.items()))
            raise ValueError(f"{path}: key 'kind': expected {first!r} (as {where}), found {domain.kind!r}")
        if not hasattr(domain, "ensemble"):
            raise ValueError(f"{path}: key 'kind': hepgen ensemble combines events checkpoints, found {domain.kind!r}")
        gens.append(domain.from_payload(payload, source=path))
    ens = domain.ensemble(gens, sources=args.checkpoints)
    ens.save(args.output)
    print(f"wrote {args.output}: an equal-weight mixture of {len(gens)} {domain.kind} generators")
    return 0


def cmd_calibrate(args) -> int:
    """``hepgen calibrate CKPT --reference FILE -o OUT.pt``: a pixel quantile map fitted on the
    reference (training) images, stored in a copy of the checkpoint and applied when it samples."""
    from hepgen.checkpoint import load_checkpoint
    from hepgen.domains import domain_of_checkpoint, domain_of_file

    payload = load_checkpoint(args.checkpoint)
    domain = domain_of_checkpoint(payload, source=args.checkpoint)
    if not hasattr(domain, "calibrate"):
        raise ValueError(f"{args.checkpoint}: key 'kind': hepgen calibrate maps pixel energies of events checkpoints, "
                         f"found {domain.kind!r}")
    ref_domain = domain_of_file(args.reference)
    if ref_domain.kind != domain.kind:
        raise ValueError(f"{args.reference}: expected a {domain.kind} file for {args.checkpoint}, found a "
                         f"{ref_domain.kind} file")
    ref = ref_domain.read(args.reference)
    if args.n_events is not None:
        if not 1 <= args.n_events <= len(ref):
            raise ValueError(f"--n-events: expected 1 … {len(ref)} (the events of {args.reference}), "
                             f"found {args.n_events}")
        ref = ref.subset(slice(0, args.n_events))
    gen = domain.from_payload(payload, source=args.checkpoint)
    cal = domain.calibrate(gen, ref, seed=args.seed, n_quantiles=args.quantiles)
    gen.save(args.output)
    lit, energy = cal.summary["lit_pixels_per_image"], cal.summary["energy_per_image_gev"]
    print(f"wrote {args.output}: pixel quantile map from {len(ref)} events of {args.reference}; per image: lit pixels "
          f"{lit['generated']:.1f} -> {lit['calibrated']:.1f} (reference {lit['reference']:.1f}), energy "
          f"{energy['generated']:.1f} -> {energy['calibrated']:.1f} GeV (reference {energy['reference']:.1f})")
    return 0


def _checkpoint_domain(args, command: str):
    """The loaded checkpoint and its domain; export knows showers and jets checkpoints, bench also
    events checkpoints."""
    from hepgen.checkpoint import load_checkpoint
    from hepgen.domains import domain_of_checkpoint

    payload = load_checkpoint(args.checkpoint)
    domain = domain_of_checkpoint(payload, source=args.checkpoint)
    known = ("showers", "jets", "events") if command == "bench" else ("showers", "jets")
    if domain.kind not in known:
        names = f"{', '.join(known[:-1])} and {known[-1]}"
        raise ValueError(f"{args.checkpoint}: key 'kind': hepgen {command} knows {names} checkpoints, "
                         f"found {domain.kind!r}")
    return domain.from_payload(payload, str(args.checkpoint)), domain.kind


def cmd_bench(args) -> int:
    gen, kind = _checkpoint_domain(args, "bench")
    if kind == "events":
        return _bench_events(args, gen)
    args.paths = args.paths or ["fp32", "int8"]
    if kind == "jets":
        return _bench_jets(args, gen)
    from hepgen.bench import format_table, run_bench, write_bench
    from hepgen.data.formats import read_showers

    real = read_showers(args.real) if args.real else None
    result = run_bench(gen, batch_sizes=args.batch_sizes or [1, 10, 100, 1000, 10000], threads=args.threads,
                       devices=args.device, paths=args.paths, fidelity_n=args.fidelity, steps=args.steps,
                       simulator_n=args.simulator_n, min_time=args.min_time, real=real, seed=args.seed,
                       checkpoint=str(args.checkpoint), progress=not args.quiet, geant4_n=args.geant4_n,
                       geant4_max_seconds=args.geant4_max_seconds)
    js, png = write_bench(result, args.output)
    print(format_table(result))
    for path, row in (result.get("fidelity") or {}).get("paths", {}).items():
        print(f"fidelity {path:8s}: AUC low {row['auc_low_level']:.3f} ({row['delta_auc_low_level']:+.3f}), "
              f"high {row['auc_high_level']:.3f} ({row['delta_auc_high_level']:+.3f}), "
              f"separation {row['separation_power_mean']:.4f}")
    print(f"results: {js}\nplot:    {png}")
    return 0


def _bench_events(args, gen) -> int:
    from hepgen.bench import write_bench
    from hepgen.bench_events import DEFAULT_EVENT_BATCH_SIZES, format_event_table, plot_event_bench, run_event_bench

    if args.device and any(d != "cpu" for d in args.device):
        raise ValueError(f"--device {','.join(args.device)}: hepgen bench of an events checkpoint runs on the CPU only")
    result = run_event_bench(gen, batch_sizes=args.batch_sizes or DEFAULT_EVENT_BATCH_SIZES, threads=args.threads,
                             paths=args.paths or ["fp32", "bf16"], simulator_n=args.pythia_n, min_time=args.min_time,
                             seed=args.seed, checkpoint=str(args.checkpoint), progress=not args.quiet)
    js, png = write_bench(result, args.output, plot=plot_event_bench)
    print(format_event_table(result))
    print(f"results: {js}\nplot:    {png}")
    return 0


def _bench_jets(args, gen) -> int:
    from hepgen.bench_jets import DEFAULT_JET_BATCH_SIZES, format_jet_table, run_jet_bench, write_jet_bench
    from hepgen.data.jets import read_jets

    if args.device and any(d != "cpu" for d in args.device):
        raise ValueError(f"--device {','.join(args.device)}: hepgen bench of a jets checkpoint runs on the CPU only")
    real = read_jets(args.real) if args.real else None
    result = run_jet_bench(gen, batch_sizes=args.batch_sizes or DEFAULT_JET_BATCH_SIZES, threads=args.threads,
                           paths=args.paths, steps=args.steps, fidelity_n=args.fidelity, real=real,
                           pythia_n=args.pythia_n, min_time=args.min_time, seed=args.seed,
                           checkpoint=str(args.checkpoint), progress=not args.quiet)
    js, png = write_jet_bench(result, args.output)
    print(format_jet_table(result))
    print(f"results: {js}\nplot:    {png}")
    return 0


def cmd_export(args) -> int:
    from hepgen.data.stream import file_sha256

    gen, kind = _checkpoint_domain(args, "export")
    if kind == "jets":
        from hepgen.export_jets import check_jets_onnx, export_jets_onnx

        info = export_jets_onnx(gen, args.output, checkpoint_sha256=file_sha256(args.checkpoint), steps=args.steps)
        steps = f", {info['steps']} {info['solver']} steps unrolled" if info["steps"] is not None else \
            ("; --steps ignored: the family samples in one pass" if args.steps is not None else "")
        print(f"wrote {info['path']}: inputs {info['inputs']} (noise_dim {info['noise_dim']}) -> particle_features "
              f"(B, {info['n_particles']}, 4), mask (B, {info['n_particles']}){steps}; "
              f"export took {info['export_s']:.1f} s")
        if args.check:
            res = check_jets_onnx(args.output, gen, n=args.check_n, steps=args.steps)
            return _check_result(res, f"rtol={res['rtol']}, atol={res['atol']} (or the masks differ)")
        return 0
    from hepgen.export import check_onnx, export_onnx

    if args.steps is not None:
        raise ValueError("--steps: a jets-checkpoint option (flow-matching solver steps); found a showers checkpoint")
    info = export_onnx(gen, args.output, checkpoint_sha256=file_sha256(args.checkpoint), fast=not args.no_fast)
    print(f"wrote {info['path']}: inputs {info['inputs']} (noise_dim {info['noise_dim']}) -> showers "
          f"(B, {info['n_voxels']}) MeV; export took {info['export_s']:.1f} s")
    if args.check:
        res = check_onnx(args.output, gen, n=args.check_n, fast=not args.no_fast)
        return _check_result(res, f"rtol={res['rtol']}, atol={res['atol_mev']} MeV")
    return 0


def _check_result(res: dict, tolerance: str) -> int:
    """Print an ONNX check's result; exit status 1 (and one line on stderr) when it failed."""
    print(json.dumps(res, indent=2))
    if not res["ok"]:
        print(f"hepgen: error: onnxruntime output differs from PyTorch beyond {tolerance}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args) -> int:
    from hepgen.config import DemoConfig, load_config
    from hepgen.demo import run_demo

    config = load_config(args.config, DemoConfig) if args.config else DemoConfig()
    if args.quick:
        config.n_train, config.n_test = 3000, 1000
        config.train.epochs, config.train.max_minutes = 3, 1.0
        if config.distill is not None:
            config.distill = {"rounds": 2, "n_pairs": 5000, "hidden": 256}
    run_demo(args.output, config, progress=not args.quiet)
    return 0


# --- parser ---------------------------------------------------------------------------------
_DESCRIPTION = ("Train, sample and validate generative surrogates of particle-physics simulation:\n"
                "calorimeter showers, jets, event images, tabular events.  `hepgen COMMAND --help`\n"
                "describes each command.")
_EPILOG = """\
a first run (calorimeter showers; the core install is enough):
  hepgen simulate showers -o train.h5 --n 30000
  hepgen simulate showers -o test.h5 --n 10000 --seed 7
  hepgen train train.h5 -o run/
  hepgen sample run/best.pt -o gen.h5 --conditions-from test.h5
  hepgen evaluate test.h5 gen.h5 -o eval/          # metrics.json + report.html

jets, ONNX, tuning, ROOT output, Geant4, ... need an extra: pip install 'hepgen[EXTRA]' (README).
exit codes: 0 success, 2 usage or input error, 1 unexpected error, 130 interrupted (docs/cli.md).
shell completion: eval "$(register-python-argcomplete hepgen)"
"""
def _add_chunked_job_options(parser, unit: str, chunk_size: int) -> None:
    """The options every chunked, resumable simulator takes (:mod:`hepgen.simulate.chunks`)."""
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--chunk-size", type=int, default=chunk_size,
                        help=f"{unit} per chunk, the unit of resumption (default {chunk_size})")
    parser.add_argument("--seed", type=int, default=0, help="the job's seed; chunk seeds derive from it (default 0)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="keep the finished chunks of an interrupted run with the same settings (--no-resume: "
                        "discard them)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_jet_evaluate_options(group) -> None:
    group.add_argument("--real-reference", help="jets: independent second reference file for the real-vs-real "
                       "floor (default: split REAL in two halves)")
    group.add_argument("--n-particles", type=int, help="jets: keep the leading N constituents of every file")
    group.add_argument("--n-eval-samples", dest="num_eval_samples", type=int,
                       help="jets: jets per W1 batch (default and jetnet: 50000)")
    group.add_argument("--n-batches", dest="num_batches", type=int, help="jets: W1 batches (default and jetnet: 5)")
    # the spellings before the counts were --n-*: hidden aliases (docs/cli.md)
    group.add_argument("--num-eval-samples", dest="num_eval_samples", type=int, help=argparse.SUPPRESS)
    group.add_argument("--num-batches", dest="num_batches", type=int, help=argparse.SUPPRESS)
    group.add_argument("--no-efp", action="store_true",
                       help="jets: skip the EFP metrics (W1efp, FPD, KPD), the slow part")
    group.add_argument("--efp-jobs", type=int, help="jets: processes for the EFP computation (default 1)")
    group.add_argument("--classifier-seeds", type=int, metavar="K",
                       help="jets: train each classifier K times (seeds SEED … SEED+K-1) and report the mean AUCs "
                       "(one training's AUC moves by about 0.02 with its seed at 3000 jets; default 1)")


def build_parser() -> argparse.ArgumentParser:
    from hepgen._version import __version__

    p = argparse.ArgumentParser(prog="hepgen", description=_DESCRIPTION, epilog=_EPILOG)
    p.add_argument("--version", action="version", version=f"hepgen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages; tracebacks on errors")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (the log, with the seed, stays)")
    p.add_argument("--log-file", metavar="PATH", help="also write the log to this file (appended)")
    sub = p.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="generate reference data").add_subparsers(dest="what", required=True)
    s = sim.add_parser("showers", help="EM showers: the GFlash-based reference simulator, or Geant4 (--engine geant4)")
    s.add_argument("-o", "--output", required=True, help="output CaloChallenge HDF5 file")
    s.add_argument("--n", type=int, default=10_000, help="number of showers")
    s.add_argument("--binning", help="CaloChallenge binning XML or geometry JSON (default: built-in 384-voxel binning)")
    s.add_argument("--energy-range", type=float, nargs=2, default=[1e3, 1e5], metavar=("LO", "HI"),
                   help="log-uniform incident energy range in MeV")
    s.add_argument("--energies", type=_floats, help="discrete incident energies in MeV, e.g. 1000,10000")
    s.add_argument("--theta-range", type=float, nargs=2, metavar=("LO", "HI"), help="incident angle range (rad)")
    s.add_argument("--position-range", type=float, nargs=2, metavar=("LO", "HI"), help="impact x,y range (mm)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    s.add_argument("--write-binning", help="also write the binning used (.xml or .json)")
    s.add_argument("--engine", choices=["gflash", "geant4"], default="gflash",
                   help="gflash: fast built-in parametrisation (default); geant4: full simulation, needs the "
                        "extra hepgen[geant4] (docs/geant4.md)")
    s.add_argument("--preset", choices=["ds1-photon", "ds2", "3dgan", "calogan", "hgcal", "demo"],
                   help="geant4: calorimeter preset with its own binning (default ds1-photon)")
    s.add_argument("--particle", choices=["gamma", "e-", "e+"], help="geant4: primary particle (default gamma)")
    s.add_argument("--phi-range", type=float, nargs=2, metavar=("LO", "HI"), help="geant4: incident azimuth range (rad)")
    s.add_argument("--workers", type=int, help="geant4: worker processes, one Geant4 run manager each (default 1)")
    s.add_argument("--chunk-size", type=int, help="showers per chunk, the unit of memory and of resumption "
                   "(default: gflash 10000, geant4 100)")
    s.add_argument("--resume", action=argparse.BooleanOptionalAction,
                   help="continue what an interrupted run left (default; gflash: OUTPUT.partial; geant4: its "
                        "finished chunks); --no-resume discards it and starts over")
    s.add_argument("--cut-mm", type=float, help="geant4: production cut in mm (default 0.7)")
    s.add_argument("--physics-list", choices=["data-free", "standard", "option4"],
                   help="geant4: EM physics list: data-free (default; no Geant4 data sets needed), standard "
                        "(G4EmStandardPhysics) or option4 (G4EmStandardPhysics_option4); the last two need Geant4's "
                        "data sets G4EMLOW, PhotonEvaporation, G4ENSDFSTATE (GEANT4_DATA_DIR, or G4LEDATA …)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_simulate_showers)

    sj = sim.add_parser("jets", help="JetNet-style jets from Pythia 8 + FastJet (needs hepgen[jets]; docs/jets.md)")
    sj.add_argument("-o", "--output", required=True, help="output HDF5 file (JetNet layout)")
    sj.add_argument("--type", default="g,q,t,w,z", help="comma-separated jet types: g,q,t,w,z (default: all)")
    sj.add_argument("--n", type=int, default=10_000, help="jets per type")
    sj.add_argument("--n-particles", type=int, default=30, help="constituents kept per jet (JetNet: 30 or 150)")
    _add_chunked_job_options(sj, "jets", 1000)
    sj.set_defaults(func=cmd_simulate_jets)

    se = sim.add_parser("events", help="whole events as 64x64 calorimeter images from Pythia 8 (needs hepgen[jets]; "
                        "docs/events.md)")
    se.add_argument("-o", "--output", required=True, help="output HDF5 file (kind=events)")
    se.add_argument("--process", required=True, choices=["signal", "qcd", "minbias"],
                    help="RPV gluino pairs, QCD multi-jet (pT-hat > --qcd-pt-hat-min) or soft-QCD min-bias")
    se.add_argument("--masses", help="signal: M_GLUINO:M_NEUTRALINO in GeV, comma-separated, e.g. 1000:400,1400:400")
    se.add_argument("--mu", type=float, default=0.0,
                    help="min-bias events overlaid per image (minbias: pile-up images; default 0)")
    se.add_argument("--pileup", choices=["fixed", "poisson"], default="fixed",
                    help="N = mu, or N ~ Poisson(mu) (default fixed)")
    se.add_argument("--n", type=int, default=1000, help="images per mass point (per run for qcd/minbias; default 1000)")
    se.add_argument("--channels", choices=["total", "ecal_hcal"], default="total", help="image channels (default total)")
    se.add_argument("--qcd-pt-hat-min", type=float, default=400.0, help="qcd: lower pT-hat cut in GeV (default 400)")
    _add_chunked_job_options(se, "images", 200)
    se.set_defaults(func=cmd_simulate_events)

    st = sim.add_parser("tth", help="semi-leptonic ttH(bb) or ttbb events from Pythia 8 + FastJet as a table of the "
                        "26 high-level variables (needs hepgen[jets]; docs/tabular.md)")
    st.add_argument("-o", "--output", required=True, help="output HDF5 file (kind=tabular)")
    st.add_argument("--process", required=True, choices=["tth", "ttbb"],
                    help="tth: ttH, H -> bb; ttbb: tt with g -> bb from the shower (>= 2 extra b quarks by the "
                    "generator-level filter), selected by b-tags")
    st.add_argument("--n", type=int, default=10_000, help="selected events (default 10000)")
    st.add_argument("--min-btags", type=int, default=4, help="b-tagged jets required, >= 6 jets always (default 4)")
    st.add_argument("--min-b-quarks", type=int, default=4, help="generator-level filter: final b quarks required at the "
                    "end of the parton level, before hadronisation (default 4: tt+bb; 0 = off, inclusive tt)")
    st.add_argument("--low-level", action="store_true", help="also write the 32 low-level variables of the chi2 "
                    "assignment")
    _add_chunked_job_options(st, "events", 250)
    st.set_defaults(func=cmd_simulate_tth)

    sl = sim.add_parser("l1", help="trigger-level events (ADC2021 layout) from Pythia 8 + a Level-1 object model "
                        "(needs hepgen[jets]; docs/anomaly.md)")
    sl.add_argument("-o", "--output", required=True, help="output HDF5 file (kind l1)")
    sl.add_argument("--processes", default="sm", help="comma-separated: sm (the SM mix), signals (all four), or any "
                    "of W_lnu,QCD,Z_ll,ttbar,A_4l,LQ_btau,h0_tautau,hplus_taunu (default sm)")
    sl.add_argument("--n", type=int, default=10_000,
                    help="accepted events per process; for sm in total, split by the SM fractions (default 10000)")
    _add_chunked_job_options(sl, "events", 500)
    sl.set_defaults(func=cmd_simulate_l1)

    t = sub.add_parser("train", help="train a conditional generative model on any kind of data (showers, jets, event "
                       "images, tabular events): the kind is the file's")
    t.add_argument("data", nargs="+", help="training showers (CaloChallenge HDF5; several files or a quoted glob "
                   "such as 'data/*.h5' make one data set of one geometry) or jets (JetNet-layout HDF5; "
                   "default family: the epic_fm preset)")
    t.add_argument("-o", "--output", required=True, help="run folder for checkpoints and logs")
    t.add_argument("--binning", help="binning XML / geometry JSON (default: the file's own)")
    t.add_argument("--config", help="TrainConfig YAML")
    # the list is written out (importing hepgen.config here would slow every command's start-up);
    # tests/test_cli_conventions.py checks that it names every packaged preset
    t.add_argument("--preset", help="a packaged preset by name (src/hepgen/configs/NAME.yaml: caloflow, flow_matching, "
                   "gan, vae, epic_fm, epic_gan, jet_transformer_fm, events_fm); default: the kind's default")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config key, e.g. --set model.hidden_features=128 --set epochs=5 (VALUE is YAML; "
                        "repeatable)")
    t.add_argument("--family", help="model family, e.g. caloflow, flow, flow_matching, gan, vae, epic_fm "
                   "(default: the preset's or the kind's)")
    t.add_argument("--epochs", type=int, help="training epochs (default: the configuration's)")
    t.add_argument("--max-minutes", type=float, help="wall-clock budget; stops after the epoch that exceeds it "
                   "(default: the configuration's)")
    t.add_argument("--batch-size", type=int, help="training batch size (default: the configuration's)")
    t.add_argument("--lr", type=float, help="learning rate (default: the configuration's)")
    t.add_argument("--seed", type=int, help="seed of initialisation, shuffling and sampling (default: the "
                   "configuration's, 0)")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where to train; auto: CUDA when available "
                   "(default: the configuration's, cpu)")
    t.add_argument("--conditions", nargs="*", help="extra condition datasets, e.g. incident_theta")
    t.add_argument("--type", dest="types", help="jets: train on these jet types only, comma-separated, e.g. g,t "
                   "(default: all in the file)")
    t.add_argument("--types", dest="types", help=argparse.SUPPRESS)  # the old spelling
    t.add_argument("--jet-type", help="jets: the type (g, q, t, w, z) to label every jet of a public JetNet file "
                   "that has no jet_type dataset")
    t.add_argument("--n-particles", type=int, help="jets: keep the leading N constituents")
    t.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                   help="continue from OUTPUT/last.pt (--no-resume: start again)")
    t.add_argument("--init-from", help="initialise weights from this checkpoint (fine-tuning)")
    t.add_argument("--memory-budget-gb", type=float,
                   help="showers: read the data into memory when N x voxels x 16 bytes fit this budget, else "
                        "stream it from the files in chunks (default 4; 0 always streams)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    sm = sub.add_parser("sample", help="sample from a trained checkpoint: showers at given energies or conditions, "
                        "other kinds at the conditions of a file (--like)")
    sm.add_argument("checkpoint", help="best.pt or last.pt of hepgen train")
    sm.add_argument("-o", "--output", required=True, help="output HDF5 file of the checkpoint's kind")
    sm.add_argument("--like", help="event images, tabular events, ...: sample at the conditions of this file's entries "
                    "(with --n: its first N)")
    sm.add_argument("--n", type=int, help="number of showers (with --conditions-from or --like: at most the "
                    "file's, its first N)")
    sm.add_argument("--energies", type=_floats, help="incident energies in MeV to draw from")
    sm.add_argument("--energy-range", type=float, nargs=2, metavar=("LO", "HI"), help="log-uniform, MeV")
    sm.add_argument("--conditions-from", help="take incident energies and conditions from this HDF5 file")
    sm.add_argument("--seed", type=int, default=0, help="seed of the noise and of the drawn energies; give each job "
                    "of an array its own")
    sm.add_argument("--batch-size", type=int, default=256,
                    help="showers per network call: the flows' per-call temporaries set the peak memory "
                         "(~0.5 MB per shower for the demo's caloflow), and 256 was also faster than 1000")
    sm.add_argument("--chunk-size", type=int, default=10_000,
                    help="showers per chunk written to the file (the unit of memory and of resumption)")
    sm.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                    help="continue an interrupted job from OUTPUT.partial (--no-resume: start again)")
    sm.add_argument("--compression", choices=("gzip", "lzf", "none"), default="gzip", help="HDF5 compression")
    sm.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    sm.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                    help="where the network runs; auto: CUDA when available")
    sm.add_argument("--path", help="sampling path (default fp32; docs/inference.md, docs/events.md): showers "
                    "fp32, bf16, fp16, int8, compile, compile-bf16 or auto (the fastest measured on this CPU); "
                    "event images fp32, channels_last, bf16, compile, bf16-compile; tabular auto, model")
    sm.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sm.set_defaults(func=cmd_sample)

    sj2 = sub.add_parser("sample-jets", help="sample jets from a trained jets checkpoint (JetNet layout)")
    sj2.add_argument("checkpoint", help="best.pt or last.pt of hepgen train on jets")
    sj2.add_argument("-o", "--output", required=True, help="output JetNet-layout HDF5 file")
    sj2.add_argument("--like", help="sample at the types, kinematics and multiplicities of this file's jets")
    sj2.add_argument("--n", type=int, help="number of jets (with --like: the first N of the file)")
    sj2.add_argument("--type", help="jet type (g, q, t, w, z) when not using --like; pT and eta uniform in "
                     "the training ranges, multiplicity from the training distribution")
    sj2.add_argument("--n-particles", type=int, help="with --like: keep the leading N constituents of the file")
    sj2.add_argument("--steps", type=int, help="ODE solver steps (flow-matching models)")
    sj2.add_argument("--seed", type=int, default=0, help="seed of the noise and of the drawn kinematics")
    sj2.add_argument("--batch-size", type=int, default=1_000, help="jets per network call")
    sj2.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    sj2.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                     help="where the network runs; auto: CUDA when available")
    sj2.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sj2.set_defaults(func=cmd_sample_jets)

    ev = sub.add_parser("evaluate", help="compare generated data with real data (showers, jets, ...: the kind "
                        "is the real file's) → metrics.json + report.html")
    ev.add_argument("real", help="reference file (its kind picks the metrics: showers, jets, ...)")
    ev.add_argument("generated", help="generated file of the same kind and layout")
    ev.add_argument("-o", "--output", required=True, help="folder for metrics.json and report.html")
    ev.add_argument("--seed", type=int, default=0, help="seeds the classifiers and subsamples")
    sh = ev.add_argument_group("showers")
    sh.add_argument("--binning", help="binning XML / geometry JSON (default: the files' own)")
    sh.add_argument("--no-classifier", action="store_true", help="skip the classifier two-sample test")
    sh.add_argument("--classifier", choices=("hepgen", "calochallenge", "both"),
                    help="classifier test: hepgen's (default), the CaloChallenge DNN protocol (slow on a CPU; "
                         "docs/metrics.md), or both side by side")
    sh.add_argument("--calochallenge-min-steps", type=int, metavar="N",
                    help="DEVIATION from the CaloChallenge protocol: train its DNN for at least N optimiser "
                         "steps (6000 = the challenge's data sets 2/3; needed below ~50k showers per side)")
    sh.add_argument("--metrics", metavar="GROUPS",
                    help="comma-separated metric groups: features, physics, correlation, multivariate, "
                         "diversity, regression, classifier (or all, fast; default all)")
    sh.add_argument("--fast", action="store_true",
                    help="only the cheap groups (features, physics): no classifier, no O(N^2) metrics")
    sh.add_argument("--train", help="the model's training showers (HDF5), for the memorisation test")
    sh.add_argument("--sep-threshold", type=float,
                    help="report: flag features with separation power above this (default 0.1)")
    sh.add_argument("--p-threshold", type=float,
                    help="report: flag features with KS p-value below this (default 0.01)")
    sh.add_argument("--max-points", type=int,
                    help="subsample size (seeded) of the O(N^2) metrics: PRDC, MMD, memorisation (default 5000)")
    sh.add_argument("--memory-budget-gb", type=float,
                    help="a file with N x voxels x 16 bytes above this (default 4) is evaluated on a seeded sample "
                         "read in chunks, its features streamed over all rows (separation_power_all_rows)")
    _add_jet_evaluate_options(ev.add_argument_group("jets"))
    ev.set_defaults(func=cmd_evaluate)

    ej = sub.add_parser("evaluate-jets", help="compare generated jets with real ones (JetNet metrics + floor); "
                        "the same as `evaluate` on jet files")
    ej.add_argument("real", help="reference jets (JetNet-layout HDF5)")
    ej.add_argument("generated", help="generated jets (JetNet-layout HDF5)")
    ej.add_argument("-o", "--output", required=True, help="folder for metrics.json and report.html")
    ej.add_argument("--seed", type=int, default=0, help="seeds the W1 batches and FPD/KPD")
    _add_jet_evaluate_options(ej)
    ej.add_argument("--no-classifier", action="store_true",
                    help="skip the deep-sets classifier AUC (reference vs generated, and its floor)")
    ej.set_defaults(func=cmd_evaluate_jets)

    ea = sub.add_parser("evaluate-anomaly", help="ROC, AUC and efficiency at fixed background rate of an l1 "
                        "anomaly detector (docs/anomaly.md)")
    ea.add_argument("checkpoint", help="l1 checkpoint (best.pt of hepgen train on background)")
    ea.add_argument("background", help="background L1 file (a test sample, not the training one)")
    ea.add_argument("signals", nargs="+", help="L1 file(s); each process in them is one signal")
    ea.add_argument("-o", "--output", required=True, help="folder for metrics.json and report.html")
    ea.add_argument("--fpr", default="1e-5,1e-4,1e-3", help="background efficiencies at which signal efficiency is "
                    "quoted (default 1e-5,1e-4,1e-3)")
    ea.add_argument("--rate", default="1000,4000", help="trigger rates in Hz for the threshold table (default 1000,4000)")
    ea.add_argument("--preselection-fraction", type=float, default=1.0,
                    help="fraction of the 40 MHz collisions the background sample stands for (default 1)")
    ea.add_argument("--bootstrap", type=int, default=50, help="bootstrap resamples for the errors (default 50)")
    ea.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    ea.set_defaults(func=cmd_evaluate_anomaly)

    cv = sub.add_parser("convert", help="write a showers or jets HDF5 file as a ROOT TTree (needs hepgen[root])")
    cv.add_argument("input", help="showers (CaloChallenge) or jets (JetNet layout) HDF5 file")
    cv.add_argument("-o", "--output", required=True, help="the .root file: TTree 'events', one branch per dataset")
    cv.set_defaults(func=cmd_convert)

    en = sub.add_parser("ensemble", help="combine separately trained checkpoints (events) into one that draws each "
                        "event from one of them, equal weights (docs/events.md, run G)")
    en.add_argument("checkpoints", nargs="+", help="two or more checkpoints of one kind (best.pt of each training)")
    en.add_argument("-o", "--output", required=True, help="the combined checkpoint (.pt), written atomically")
    en.set_defaults(func=cmd_ensemble)

    ca = sub.add_parser("calibrate", help="fit a monotone map of pixel energies (quantile mapping) that sends an "
                        "events generator's images onto its training images; stored in the new checkpoint and "
                        "applied when it samples (docs/events.md, run J)")
    ca.add_argument("checkpoint", help="an events checkpoint (one generator or an ensemble)")
    ca.add_argument("--reference", required=True, help="events HDF5 file the model should match: its training images")
    ca.add_argument("--n-events", type=int, default=None,
                    help="use the first N events of --reference (default: all), e.g. the training part of a file "
                         "whose tail was the validation set")
    ca.add_argument("--seed", type=int, default=0, help="seed of the generated sample the map is fitted on (default 0)")
    ca.add_argument("--quantiles", type=int, default=2000,
                    help="equally spaced quantile levels of the map (default 2000; 30 tail levels are added)")
    ca.add_argument("-o", "--output", required=True, help="the calibrated checkpoint (.pt), written atomically")
    ca.set_defaults(func=cmd_calibrate)

    inf = sub.add_parser("info", help="the model card of a checkpoint: kind, family, parameters, training data, "
                         "selection, versions")
    inf.add_argument("checkpoint", help="a checkpoint of any kind (best.pt, last.pt)")
    inf.set_defaults(func=cmd_info)

    qu = sub.add_parser("quantum", help="the quantum GAN (needs hepgen[quantum]; docs/quantum.md)")
    qt = qu.add_subparsers(dest="what", required=True).add_parser(
        "table", add_help=False, help="rerun the CERN openlab quantum-GAN table (hepgen quantum table --help)")
    qt.set_defaults(func=cmd_quantum_table, passes_options_on=True)  # its own parser reads the rest

    rf = sub.add_parser("refine", help="refine a simulation towards data (docs/refine.md)").add_subparsers(
        dest="what", required=True)
    rt = rf.add_parser("train", help="train a refiner on unpaired sim and data files of one kind")
    rt.add_argument("sim", help="simulated events (HDF5: showers or traces)")
    rt.add_argument("data", help="data events of the same kind and detector layout")
    rt.add_argument("-o", "--output", required=True, help="run folder; refiner.pt is written there after every epoch")
    rt.add_argument("--epochs", type=int, default=20, help="default 20")
    rt.add_argument("--batch-size", type=int, default=128, help="default 128")
    rt.add_argument("--closeness", type=float, default=0.1,
                    help="weight of the term keeping refined events near their input (default 0.1)")
    rt.add_argument("--closeness-mean", action="store_true",
                    help="the closeness term sees the refiner's output without noise (the added noise is not penalised)")
    rt.add_argument("--hidden", type=int, default=256, help="refiner width (default 256)")
    rt.add_argument("--critic-hidden", type=int, default=256, help="critic width (default 256)")
    rt.add_argument("--n-critic", type=int, default=5, help="critic steps per refiner step (default 5)")
    rt.add_argument("--lr", type=float, default=2e-4, help="refiner learning rate (default 2e-4)")
    rt.add_argument("--critic-lr", type=float, default=5e-4, help="critic learning rate (default 5e-4)")
    rt.add_argument("--noise-lr-factor", type=float, default=50.0,
                    help="learning-rate multiplier of the refiner's noise amplitude (default 50)")
    rt.add_argument("--gp-weight", type=float, default=10.0, help="weight of the critic's gradient penalty (default 10)")
    rt.add_argument("--critic-warmup", type=int, default=200,
                    help="critic steps against the identity refiner before the first refiner step (default 200)")
    rt.add_argument("--ema", type=float, default=0.995,
                    help="decay of the moving average of the refiner's weights that is saved (default 0.995; 0 = last)")
    rt.add_argument("--architecture", choices=("auto", "mlp"), default="auto",
                    help="auto: the network the kind's adapter asks for (traces: per-station refiner); "
                         "mlp: the residual MLP always (default auto)")
    add_option_flags(rt, SHOWER_FLAGS, prefix="showers: ")
    add_option_flags(rt, TRACE_FLAGS, prefix="traces: ")  # one table with the Auger benchmark's flags
    noise = rt.add_mutually_exclusive_group()
    noise.add_argument("--noise-vem", type=float, default=None,
                       help="traces: add this fixed noise (VEM per bin) instead of learning it (default: learn)")
    noise.add_argument("--measured-noise", action="store_true",
                       help="traces: add the fixed noise sqrt(sigma_data^2 - sigma_sim^2) measured from the "
                            "baselines (last 10 bins of triggered stations) of the two files")
    rt.add_argument("--deterministic", action="store_true", help="no learned noise amplitude")
    rt.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and noise")
    rt.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                    help="continue from OUTPUT/refiner.pt if it exists (--no-resume: start again)")
    rt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    rt.set_defaults(func=cmd_refine_train)
    ra = rf.add_parser("apply", help="refine every event of a file with a trained refiner")
    ra.add_argument("checkpoint", help="refiner.pt from 'hepgen refine train'")
    ra.add_argument("sim", help="file to refine (same kind and layout as the training files)")
    ra.add_argument("-o", "--output", required=True,
                    help="refined HDF5 (labels and conditions copied, provenance attributes added)")
    ra.add_argument("--seed", type=int, default=0, help="seed of the refiner's noise")
    ra.add_argument("--deterministic", action="store_true", help="apply the mean correction only")
    ra.set_defaults(func=cmd_refine_apply)

    ds = sub.add_parser("distill", help="distil a trained flow into a one-pass student (fast; its fidelity "
                        "lags the teacher: docs/models.md, docs/jets.md)")
    ds.add_argument("checkpoint", help="the teacher: a flow checkpoint (caloflow, flow) or a jets flow-matching "
                    "one (epic_fm, jet_transformer_fm)")
    ds.add_argument("--data", required=True, help="file whose conditions the student learns at (the training file)")
    ds.add_argument("-o", "--output", required=True, help="folder for best.pt and distill_log.csv")
    ds.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget (default 3)")
    ds.add_argument("--rounds", type=int, help="fixed number of rounds of fresh teacher pairs instead of --minutes")
    ds.add_argument("--n-pairs", type=int, default=50_000, help="teacher pairs per round (default 50000)")
    ds.add_argument("--epochs-per-round", type=int, default=2,
                    help="passes over each round's pairs (default 2; raise it for a slow teacher)")
    ds.add_argument("--hidden", type=int, help="student width (default: 1024 for showers, 128 per particle for jets)")
    ds.add_argument("--n-hidden", type=int, help="student hidden layers (default: 3 for showers, 4 EPiC layers "
                    "for jets)")
    ds.add_argument("--lr", type=float, default=1e-3, help="student learning rate")
    ds.add_argument("--adversarial", type=float, default=0.0, metavar="WEIGHT",
                    help="add WEIGHT x a critic's loss against the data file's samples (jet students; selection "
                    "then by the physics score; default 0: regression only)")
    ds.add_argument("--observables", type=float, default=0.0, metavar="WEIGHT",
                    help="add WEIGHT x the L1 distance between each pair's physics observables, student vs "
                    "teacher, each in units of its spread (jets: mass, tau21, tau32, D2, sum pT_rel, mean and spread "
                    "of log pT_rel, mean dR, axis ratio; default 0: regression only)")
    ds.add_argument("--data-observables", type=float, default=0.0, metavar="WEIGHT",
                    help="add WEIGHT x the 1-D Wasserstein distance between each batch's observables, student vs "
                    "the data rows at the same conditions (trains on the validated observables; default 0)")
    ds.add_argument("--data-slices", type=int, default=0, metavar="K",
                    help="with --data-observables: also match the observables' joint distribution along K random "
                    "directions per step (sliced Wasserstein; default 0: the marginals alone)")
    ds.add_argument("--data-groups", type=int, default=0, metavar="G",
                    help="with --data-observables: also match the other observables given the first (jets: the "
                    "mass) within G groups of each batch ordered by it (default 0: no grouped term)")
    ds.add_argument("--init", metavar="STUDENT.pt", help="continue from this student of the same teacher")
    ds.add_argument("--student-hparam", action="append", default=[], metavar="KEY=VALUE",
                    help="a further hyper-parameter of the student family (YAML value), e.g. network=transformer "
                    "for jet students; repeatable")
    ds.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, all cores)")
    ds.add_argument("--seed", type=int, default=0, help="seed of the teacher's noise and the student's initialisation")
    ds.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ds.set_defaults(func=cmd_distill)

    bn = sub.add_parser("bench", help="sampling speed (and fidelity) of a checkpoint vs the reference simulator "
                        "(showers: GFlash, Geant4; jets: Pythia 8 + FastJet; events: Pythia 8 + detector)")
    bn.add_argument("checkpoint", help="a showers, jets or events checkpoint (best.pt); its kind picks the benchmark")
    bn.add_argument("-o", "--output", required=True, help="folder for bench.json and bench.png")
    bn.add_argument("--batch-sizes", type=_ints, help="default 1,10,100,1000,10000 (jets: 1,100,1000; events: "
                    "1,128,1024)")
    bn.add_argument("--threads", type=_ints, help="CPU thread counts (default: 1 and all cores)")
    bn.add_argument("--device", type=_names, help="cpu,cuda (default: cpu, plus cuda when available)")
    bn.add_argument("--paths", type=_names, default=None,
                    help="sampling paths: fp32,bf16,fp16,int8,compile,compile-bf16,ort,ort-int8 (jets: fp32,int8,compile,"
                         "ort,ort-int8; default fp32,int8; events: fp32,channels_last,bf16,compile,bf16-compile, "
                         "default fp32,bf16)")
    bn.add_argument("--fidelity", type=int, default=0, metavar="N",
                    help="also compare each path's samples with reference samples (N per path; 0: skip)")
    bn.add_argument("--real", help="reference showers for --fidelity (default: the reference simulator); "
                                   "jets: reference jets (required with --fidelity)")
    bn.add_argument("--steps", type=_ints, help="step counts to scan for models with sample_steps (showers: in the "
                                                "fidelity part; jets: every speed point and the fidelity part)")
    bn.add_argument("--n-pythia", dest="pythia_n", type=int, default=200, metavar="N",
                    help="jets: Pythia 8 + FastJet jets per jet type timed for the speed-up (needs hepgen[jets]; "
                         "0: skip; default 200); events: Pythia 8 + detector images (pile-up images at the "
                         "checkpoint's mu, else signal events) in the differenced runs")
    bn.add_argument("--n-simulator", dest="simulator_n", type=int, default=1000,
                    help="showers simulated to time the simulator")
    bn.add_argument("--simulator-n", dest="simulator_n", type=int, help=argparse.SUPPRESS)  # the old spelling
    bn.add_argument("--min-time", type=float, default=0.5, help="seconds of repeated calls per point")
    bn.add_argument("--n-geant4", dest="geant4_n", type=int, default=20, metavar="N",
                    help="Geant4 showers timed on the checkpoint's geometry for the speed-up against Geant4 "
                         "(needs hepgen[geant4] and a preset with that binning; 0: skip)")
    bn.add_argument("--geant4-n", dest="geant4_n", type=int, help=argparse.SUPPRESS)  # first spelling
    bn.add_argument("--geant4-max-seconds", type=float, default=120.0,
                    help="stop the Geant4 timing after this many seconds")
    bn.add_argument("--seed", type=int, default=0, help="seed of the noise, energies and reference showers")
    bn.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bn.set_defaults(func=cmd_bench)

    ex = sub.add_parser("export", help="export a checkpoint to ONNX (conditions + noise in, showers in MeV or jets' "
                        "particles out; needs hepgen[onnx])")
    ex.add_argument("checkpoint", help="a showers or jets checkpoint (best.pt); its kind picks the graph")
    ex.add_argument("--format", choices=("onnx",), default="onnx", help="output format (needs hepgen[onnx])")
    ex.add_argument("-o", "--output", required=True, help="the .onnx file")
    ex.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch on random inputs")
    ex.add_argument("--n-check", dest="check_n", type=int, default=1000, help="samples compared by --check")
    ex.add_argument("--check-n", dest="check_n", type=int, help=argparse.SUPPRESS)  # the old spelling
    ex.add_argument("--no-fast", action="store_true", help="export the generic sampler, not the pruned flow (showers)")
    ex.add_argument("--steps", type=int, help="jets, flow-matching families: ODE solver steps unrolled into the graph "
                                              "(default: the model's)")
    ex.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="simulate → train → sample → evaluate → report on built-in defaults")
    d.add_argument("-o", "--output", default="hepgen-demo", help="output folder (default: hepgen-demo)")
    d.add_argument("--config", help="DemoConfig YAML")
    d.add_argument("--quick", action="store_true", help="a one-minute smoke run with tiny sizes")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    tu = sub.add_parser("tune", help="hyper-parameter search with Optuna (workers may share one study; needs "
                        "hepgen[tune])")
    tu.add_argument("data", help="training data: showers (CaloChallenge HDF5), event images, ... (any kind hepgen "
                    "train takes)")
    tu.add_argument("--space", required=True, help="search-space YAML ({key: {type: float|int|categorical, ...}})")
    tu.add_argument("--config", help="base TrainConfig YAML or preset name the sampled values are applied onto "
                    "(default: what hepgen train starts from for the file's kind)")
    tu.add_argument("-o", "--output", required=True, help="folder for trial_<n>/, best.json (and study.db)")
    tu.add_argument("--n-trials", type=int, default=10, help="trials run by this worker (default 10)")
    tu.add_argument("--total-trials", type=int, help="stop once the study holds this many finished trials")
    tu.add_argument("--timeout", type=float, help="seconds after which this worker starts no new trial")
    tu.add_argument("--storage", help="SQLAlchemy URL (postgresql://USER@HOST/DB) or journal:PATH "
                    "(default sqlite:///OUTPUT/study.db)")
    tu.add_argument("--study-name", default="hepgen", help="workers with the same name and storage share a study")
    tu.add_argument("--sampler", choices=["tpe", "random"], default="tpe", help="Optuna sampler")
    tu.add_argument("--sampler-seed", type=int, default=0, help="give each worker its own (e.g. the array index)")
    tu.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median",
                    help="Optuna pruner of unpromising trials")
    tu.add_argument("--prune-on", choices=["auto", "val_loss", "val_physics"], default="auto",
                    help="per-epoch value reported to the pruner (auto: val_physics when select_by=physics)")
    tu.add_argument("--objective", choices=["auto", "sep_power", "ks_nll", "selection"], default="auto",
                    help="physics score on the held-out sample, minimised: sep_power / ks_nll on shower "
                         "features, selection = the kind's checkpoint-selection score (event images: the "
                         "paper's KS score on jets); auto: sep_power for showers, else selection")
    tu.add_argument("--holdout", help="held-out data of the same kind for the objective (default: split off "
                    "--holdout-fraction)")
    tu.add_argument("--holdout-fraction", type=float, default=0.2,
                    help="fraction of DATA held out for the objective when --holdout is not given")
    tu.add_argument("--seed", type=int, default=0, help="seeds the held-out split and the scoring samples")
    tu.add_argument("--heartbeat", type=int, help="seconds; mark trials of dead workers FAIL (RDB storage)")
    tu.add_argument("--binning", help="binning XML / geometry JSON (default: the file's own)")
    tu.add_argument("-q", "--quiet", action="store_true", help="no Optuna per-trial log lines")
    tu.set_defaults(func=cmd_tune)
    _common_options_everywhere(p)
    for parser in _parsers(p):
        parser.formatter_class = _HelpFormatter
    return p


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help, each option's default appended as ``(default: X)`` unless its help already
    states one or there is none to show (None; a store_true flag, whose default is always off);
    descriptions and epilogs keep their line breaks (the top-level quick start)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if (not action.option_strings or flag or "default" in text or action.default is None
                or action.default is argparse.SUPPRESS or action.help is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every sub-parser below it, each once (through ``argparse._SubParsersAction``)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _common_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept -v, -q and --log-file after every sub-command too (``hepgen train ... -v``).

    In a sub-command they default to ``SUPPRESS`` (argparse would otherwise let the
    sub-command's default overwrite ``hepgen -v train``'s value).  Reading the sub-parsers
    goes through ``argparse._SubParsersAction``, argparse's documented-by-use way to walk them.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in dict.fromkeys(action.choices.values()):
            if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                _common_options_everywhere(sub)
                continue
            have = {a.dest: a for a in sub._actions}
            for flags, dest, kw in ((("-v", "--verbose"), "verbose", dict(action="store_true", help="as hepgen -v")),
                                    (("-q", "--quiet"), "quiet", dict(action="store_true", help="as hepgen -q")),
                                    (("--log-file",), "log_file", dict(metavar="PATH", help="as hepgen --log-file"))):
                if dest in have:
                    have[dest].default = argparse.SUPPRESS
                elif not any(f in sub._option_string_actions for f in flags):
                    sub.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, **kw)


def _setup_logging(args) -> logging.Handler | None:
    """Log level from -v; with --log-file also a file handler (returned, for removal)."""
    level = logging.DEBUG if args.verbose else logging.INFO
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    logging.getLogger().setLevel(level)  # also when logging was configured before (notebooks, tests)
    if not args.log_file:
        return None
    try:
        handler = logging.FileHandler(args.log_file)
    except OSError as err:
        raise SystemExit(f"hepgen: error: --log-file: cannot write {args.log_file!r}: {err.strerror}") from None
    handler.setFormatter(logging.Formatter(fmt))
    logging.getLogger().addHandler(handler)
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers the shell's completion request (_ARGCOMPLETE set) and exits
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_options_on", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_options = extra
    handler = _setup_logging(args)
    from hepgen._io import provenance, set_command_line

    set_command_line(["hepgen", *(sys.argv[1:] if argv is None else argv)])
    if args.command not in ("train", "demo"):  # these log their own, with the configuration's seed
        provenance(getattr(args, "seed", None), what=f"hepgen {args.command}")
    try:
        return _run(args, handler)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _output_lock(args):
    """``OUTPUT.lock`` while a command writes ``-o OUTPUT`` (file or folder): a second writer stops with a
    one-line error (:func:`hepgen._io.output_lock`).  Under torchrun only rank 0 takes it; ``tune`` takes
    none (its workers share one output folder and study by design)."""
    from hepgen._io import output_lock

    if not getattr(args, "output", None) or os.environ.get("RANK", "0") != "0" or args.command == "tune":
        return contextlib.nullcontext()
    return output_lock(args.output)


def _run(args, handler: logging.Handler | None) -> int:
    def fail(message: str, code: int) -> int:
        print(message, file=sys.stderr)
        if handler is not None:  # the log file ends with the reason too
            handler.handle(logging.makeLogRecord({"name": "hepgen", "levelno": logging.ERROR,
                                                  "levelname": "ERROR", "msg": message}))
        return code

    try:
        with _output_lock(args):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # writers are atomic or chunked: nothing half-written is left under a final name
        return fail("hepgen: interrupted", 130)
    except (ValueError, FileNotFoundError, FloatingPointError, ImportError) as err:  # ImportError: a missing extra
        if args.verbose:
            raise
        return fail(f"hepgen: error: {err}", 2)
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence: one line, not a traceback
        if args.verbose:
            raise
        first = str(err).splitlines()[0] if str(err) else ""
        return fail(f"hepgen: unexpected error: {type(err).__name__}: {first} (rerun with -v for the traceback)", 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
