"""Jet generators against Pythia 8: every metric beside its real-vs-real floor, and speed (issue 21).

One run, one machine, three Pythia files made with ``hepgen simulate jets`` (different
seeds): a training sample, a reference sample ``--real`` and an independent second
reference ``--reference`` (the floor: two Pythia samples of the same size compared with the
same batches).  For each of ``--families`` (default: the jets default preset ``epic_fm``
and the fastest model, ``epic_gan``) the script

1. trains the family's packaged preset (``hepgen.config.preset``) on the training file for
   at most ``--minutes`` of wall-clock time with ``--threads`` threads and records the CPU
   time the process used (``--checkpoint FAMILY=PATH`` skips training for that family);
2. generates one jet per reference jet, at its type, pT, η and multiplicity;
3. evaluates per jet type (``hepgen.domains.jets.evaluate``) W1m, W1p, W1efp, FPD, KPD,
   the W1 of τ21, τ32 and D2, and the deep-sets classifier AUC, for the model and for the
   floor, and their ratio (targets of issue 21: W1m/W1p/W1efp ≤ 1.5×, FPD ≤ 3×,
   substructure W1 ≤ 2×; for the AUC the ratio is AUC / floor AUC, ideally ≈ 1 with both ≈ 0.5);
4. times generation (jets per CPU-second at batch ``--batch-size``) and Pythia 8 + FastJet
   (:func:`hepgen.bench_jets.pythia_rate`, the function of ``hepgen bench``: in this process,
   one core, Pythia's initialisation taken out; the rate with it is printed beside) on the same
   machine, and prints the speed-up per CPU-second (target ≥ 100).

Writes ``OUT/bench.json``, ``OUT/bench.md`` and per family ``OUT/FAMILY/generated.h5`` and
``OUT/FAMILY/eval/`` (metrics.json, report.html with the histograms); prints one table with
every family side by side.  Usage (the full run of issue 21: 60 CPU-minutes per model):

    hepgen simulate jets -o train.h5 --type g,t --n 30000 --workers 2 --seed 1
    hepgen simulate jets -o refA.h5  --type g,t --n 10000 --workers 2 --seed 2
    hepgen simulate jets -o refB.h5  --type g,t --n 10000 --workers 2 --seed 3
    python benchmarks/bench_jet_models.py --train train.h5 --real refA.h5 --reference refB.h5 \\
        --families epic_fm,epic_gan --minutes 30 --threads 2 -o bench-jets

``--types t`` trains and scores one model on the top jets of the three files only (one model per
type, each with the whole budget; docs/jets.md, "One transformer per jet type").
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hepgen.bench_jets import pythia_rate
from hepgen.config import preset
from hepgen.data.jets import JET_TYPES, JetData, jet_type_index, read_jets, write_jets
from hepgen.domains.jets.evaluate import evaluate_jet_files
from hepgen.domains.jets.generator import JetGenerator
from hepgen.train.trainer import train

# issue 21: ratios model / floor; the substructure W1s; speed-up per CPU-second
TARGETS = {"w1m": 1.5, "w1p": 1.5, "w1efp": 1.5, "fpd": 3.0, "w1_tau21": 2.0, "w1_tau32": 2.0, "w1_d2": 2.0}
SPEED_TARGET = 100.0
METRICS = ("w1m", "w1p", "w1efp", "fpd", "kpd", "w1_tau21", "w1_tau32", "w1_d2", "classifier_auc")
MEANS = ("tau21", "tau32", "d2")  # substructure means printed beside Pythia's (issue 21: top τ32 within 0.02)


def eval_sample_size(real, cap: int = 50_000) -> int:
    """Jets drawn per W1 batch: the smallest per-type count of the reference, at most ``cap``.

    The metrics are per type, so the batch size follows the rarest type present (drawing more
    jets than a type holds would only resample the same jets).

    >>> from hepgen.data.jets import JetData
    >>> pf = np.zeros((5, 2, 4), np.float32); pf[:, 0] = (0.0, 0.0, 1.0, 1.0)
    >>> eval_sample_size(JetData(pf, jet_type=np.array([0, 0, 0, 2, 2], np.int8)))
    2
    """
    types = np.asarray(real.jet_type)
    counts = np.unique(types, return_counts=True)[1] if len(types) else np.array([0])
    return int(min(cap, counts.min()))


def select_types(jets: JetData, types: list[str], path) -> JetData:
    """The jets of ``types`` (JetNet names) in ``jets``, read from ``path``; one model per call
    trained and scored on these types only (``--types``).  A type absent from the file is a
    one-line ``ValueError`` naming the file, the key, what was expected and what was found."""
    idx = [jet_type_index(t) for t in types]
    missing = [t for t, i in zip(types, idx) if not np.any(jets.jet_type == i)]
    if missing:
        raise ValueError(f"{path}: key jet_type: expected jets of type(s) {','.join(missing)} (--types), "
                         f"found {','.join(jets.types_present) or 'none'}")
    return jets.subset(np.isin(jets.jet_type, idx))


def selection_curve(log_path) -> dict:
    """The physics selection metric over training, from the trainer's ``train_log.csv``.

    Returns ``{"epochs": [...], "val_physics": [...], "last_epoch", "best_epoch", "best", "last"}``
    (epochs where ``val_physics`` was evaluated; lower is better); empty dict without a log.
    """
    path = Path(log_path)
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    pts = [(int(r["epoch"]), float(r["val_physics"])) for r in rows if r.get("val_physics") not in (None, "")]
    if not pts:
        return {"last_epoch": int(rows[-1]["epoch"]) if rows else None}
    ep, v = zip(*pts)
    b = int(np.argmin(v))
    return {"epochs": list(ep), "val_physics": list(v), "last_epoch": int(rows[-1]["epoch"]),
            "best_epoch": ep[b], "best": v[b], "last": v[-1]}


def model_rate(gen: JetGenerator, like, batch_size: int, seed: int) -> dict:
    """Jets per CPU-second and per wall-second of ``gen.sample_like`` (preprocessing included)."""
    gen.sample_like(like.subset(slice(0, min(len(like), batch_size))), seed=seed, batch_size=batch_size)  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    gen.sample_like(like, seed=seed + 1, batch_size=batch_size)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"jets": len(like), "cpu_s": cpu, "wall_s": wall, "jets_per_cpu_s": len(like) / cpu,
            "jets_per_wall_s": len(like) / wall, "threads": torch.get_num_threads(), "batch_size": batch_size}


def metric_rows(metrics: dict) -> dict:
    """Per jet type: every benchmark metric as ``{value, error, floor, floor_error, ratio, target_met}``."""
    out = {}
    for jt, m in metrics["types"].items():
        row = {}
        for key in METRICS:
            e = m["observables"][key[3:]]["w1"] if key.startswith("w1_") else m.get(key)
            if e is None or key.startswith("w1_") and key[3:] not in m["observables"] or e.get("value") is None:
                continue
            ratio = e["value"] / e["floor"] if e["floor"] else float("inf")
            row[key] = {**{k: e[k] for k in ("value", "error", "floor", "floor_error", "seeds") if k in e},
                        "ratio": ratio, "target_met": (ratio <= TARGETS[key]) if key in TARGETS else None}
        out[jt] = row
    return out


def run_family(family: str, checkpoint: str | None, data, real, args, out: Path) -> dict:
    """Train (or load), generate at the reference's conditions, evaluate and time one family."""
    res: dict = {}
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    if checkpoint:
        gen = JetGenerator.load(checkpoint)
        res["checkpoint"] = checkpoint
    else:
        config = dataclasses.replace(preset(family), max_minutes=args.minutes, threads=args.threads,
                                     device=args.device, seed=args.seed)
        if args.epochs:
            config = dataclasses.replace(config, epochs=args.epochs)
        if args.fit_epochs:
            config = dataclasses.replace(config, fit_epochs_to_time=True)
        c0, t0 = time.process_time(), time.perf_counter()
        gen = train(data, config, out / "run")
        res["train_wall_min"] = (time.perf_counter() - t0) / 60
        res["train_cpu_min"] = (time.process_time() - c0) / 60
        res["config"] = dataclasses.asdict(config)
        res["selection"] = selection_curve(out / "run" / "train_log.csv")
        print(f"trained {family}: {res['train_wall_min']:.1f} wall-min, {res['train_cpu_min']:.1f} CPU-min")
    gen.model.to("cpu")
    if args.steps and hasattr(gen.model, "sample_steps"):
        gen.model.sample_steps = args.steps
    if args.method and hasattr(gen.model, "sample_method"):
        gen.model.sample_method = args.method
    res["family"] = gen.model.family
    res["hparams"] = gen.model.hparams
    res["n_parameters"] = sum(p.numel() for p in gen.model.parameters())
    res["best_epoch"] = gen.meta.get("epoch")

    t0 = time.perf_counter()
    fake = gen.sample_like(real, seed=args.seed + 11, batch_size=args.batch_size, progress=True)
    res["generate_all_wall_s"] = time.perf_counter() - t0
    write_jets(out / "generated.h5", fake)
    # metrics.json + report.html with the histograms (mass, pT, multiplicity, τ21, τ32, D2, …)
    metrics = evaluate_jet_files(args.real, out / "generated.h5", out / "eval", real_reference_path=args.reference,
                                 seed=args.seed, n_jobs=args.efp_jobs, classifier=not args.no_classifier,
                                 classifier_kwargs={"seeds": args.classifier_seeds},
                                 num_eval_samples=eval_sample_size(real))
    res["metrics"] = metric_rows(metrics)
    res["means"] = {jt: {k: m["observables"][k]["mean"] for k in MEANS if k in m["observables"]}
                    for jt, m in metrics["types"].items()}
    speed_like = real.subset(np.random.default_rng(args.seed).permutation(len(real))[: args.n_speed])
    res["model_speed"] = model_rate(gen, speed_like, args.batch_size, args.seed)
    torch.set_num_threads(1)
    res["model_speed_1thread"] = model_rate(gen, speed_like.subset(slice(0, min(2000, len(speed_like)))),
                                            args.batch_size, args.seed)
    torch.set_num_threads(args.threads)
    return res


def _cell(e: dict | None, key: str) -> str:
    if e is None:
        return "– | –"
    ratio = "—" if key == "kpd" else f"{e['ratio']:.2f}"  # KPD's floor is ~0 (unbiased estimate)
    mark = "" if e["target_met"] is None else (" ✓" if e["target_met"] else " ✗")
    return f"{e['value']:.4g} | {ratio}{mark}"


def format_table(res: dict) -> str:
    fams = list(res["families"])
    lines = [f"# jet generators vs Pythia 8 ({res['n_real']} reference jets, floor: {res['n_reference']} "
             "independent jets)", "",
             "| type | metric | floor | " + " | ".join(f"{f} | ratio" for f in fams) + " |",
             "|---|---|---|" + "---|---|" * len(fams)]
    types = list(next(iter(res["families"].values()))["metrics"])
    for jt in types:
        for key in METRICS:
            entries = [res["families"][f]["metrics"].get(jt, {}).get(key) for f in fams]
            ref = next((e for e in entries if e is not None), None)
            if ref is None:
                continue
            tgt = f" (≤ {TARGETS[key]:g}×)" if key in TARGETS else ""
            tgt += f" (mean of {ref['seeds']} seeds)" if "seeds" in ref else ""
            lines.append(f"| {jt} | {key}{tgt} | {ref['floor']:.4g} | "
                         + " | ".join(_cell(e, key) for e in entries) + " |")
    if all("means" in res["families"][f] for f in fams):
        lines += ["", "| type | mean | Pythia (reference) | Pythia (floor) | " + " | ".join(fams) + " |",
                  "|---|---|---|---|" + "---|" * len(fams)]
        for jt in types:
            for k in MEANS:
                ms = [res["families"][f]["means"].get(jt, {}).get(k) for f in fams]
                if ms[0] is None:
                    continue
                lines.append(f"| {jt} | {k} | {ms[0]['real']:.3f} | {ms[0]['floor']:.3f} | "
                             + " | ".join(f"{m['generated']:.3f}" for m in ms) + " |")
    pyth, speed = res["pythia_jets_per_cpu_s"], res["pythia_speed"]
    per_type = ", ".join(f"{t} {v['jets_per_cpu_s']:.0f}" for t, v in speed["types"].items())
    lines += ["", "ratio = model / floor (for the AUC: AUC / floor AUC; ≈ 1 with both ≈ 0.5 is indistinguishable); "
              "✓/✗: issue-21 target met / not met",
              "", f"Pythia 8 + FastJet: {pyth:.0f} jets per CPU-s (one core, initialisation taken out; mean over "
              f"{per_type}; with the initialisation in {speed['jets_per_cpu_s_with_init']:.0f} per CPU-s at "
              f"{speed['n_per_type']} jets per type); speed-up target ≥ {SPEED_TARGET:g}×", ""]
    for f in fams:
        r = res["families"][f]
        ms, m1 = r["model_speed"], r["model_speed_1thread"]
        train_txt = (f"training {r['train_wall_min']:.1f} wall-min, {r['train_cpu_min']:.1f} CPU-min, best epoch "
                     f"{r['best_epoch']}" if "train_cpu_min" in r else f"checkpoint {r.get('checkpoint')}")
        sel = r.get("selection") or {}
        if sel.get("val_physics"):
            tail = ", ".join(f"{e}: {v:.4f}" for e, v in zip(sel["epochs"][-4:], sel["val_physics"][-4:]))
            train_txt += (f"; last epoch {sel['last_epoch']}, selection metric best {sel['best']:.4f} "
                          f"(epoch {sel['best_epoch']}), last evaluations {tail}")
        threads = f"{ms['threads']} thread{'s' if ms['threads'] != 1 else ''}"
        lines.append(f"- {f}: {ms['jets_per_cpu_s']:.0f} jets per CPU-s ({threads}, {ms['jets_per_wall_s']:.0f}/s "
                     f"wall, {ms['jets']} jets), again on 1 thread {m1['jets_per_cpu_s']:.0f} ({m1['jets']} jets); "
                     f"speed-up per CPU-s {r['speedup_per_cpu_s']:.1f}× ({r['speedup_1thread']:.1f}× on 1 thread); "
                     f"{r['n_parameters']:,} parameters; {train_txt}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="training jets (JetNet-layout HDF5)")
    p.add_argument("--real", required=True, help="reference jets: generation conditions and metric reference")
    p.add_argument("--reference", required=True, help="independent second reference (the floor)")
    p.add_argument("--families", default="epic_fm,epic_gan",
                   help="comma-separated jets families with a packaged preset (default: the default preset "
                        "and the fastest model)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="FAMILY=PATH",
                   help="skip training FAMILY: evaluate this jets checkpoint (repeatable)")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock training limit per family")
    p.add_argument("--epochs", type=int, help="override the presets' epochs")
    p.add_argument("--fit-epochs", action="store_true",
                   help="fit the epochs (and the cosine schedule) to --minutes after the first epoch "
                        "(TrainConfig.fit_epochs_to_time)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="training device (cpu, cuda)")
    p.add_argument("--steps", type=int, help="sampler steps for flow-matching models")
    p.add_argument("--method", choices=("euler", "midpoint", "rk4"), help="ODE solver for flow-matching models")
    p.add_argument("--batch-size", type=int, default=1000, help="jets per model call when generating")
    p.add_argument("--n-speed", type=int, default=5000, help="jets generated for the speed measurement")
    p.add_argument("--n-pythia", type=int, default=300, help="jets per type for the Pythia speed measurement")
    p.add_argument("--efp-jobs", type=int, default=2)
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier AUC")
    p.add_argument("--classifier-seeds", type=int, default=1, metavar="K",
                   help="train each classifier K times and report the mean AUC (default 1)")
    p.add_argument("--types", help="comma-separated jet types (e.g. t): train and score on these types of the "
                                    "three files only (per-type models); the selected reference files are "
                                    "written to OUT/real.h5 and OUT/reference.h5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    checkpoints = {}
    for item in args.checkpoint:
        fam, sep, path = item.partition("=")
        if not sep or not path:
            p.error(f"--checkpoint: expected FAMILY=PATH, found {item!r}")
        checkpoints[fam] = path
    families = [f for f in args.families.split(",") if f]

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    data = read_jets(args.train)
    real, ref = read_jets(args.real), read_jets(args.reference)
    if args.types:
        types = [t for t in args.types.split(",") if t]
        try:
            data = select_types(data, types, args.train)
            real = select_types(real, types, args.real)
            ref = select_types(ref, types, args.reference)
        except ValueError as err:
            p.error(str(err))
        args.real, args.reference = str(out / "real.h5"), str(out / "reference.h5")
        write_jets(args.real, real)
        write_jets(args.reference, ref)
    res: dict = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                 "threads": args.threads, "types": args.types, "n_train": len(data), "n_real": len(real),
                 "n_reference": len(ref), "minutes": args.minutes, "families": {}}
    for fam in families:
        res["families"][fam] = run_family(fam, checkpoints.get(fam), data, real, args, out / fam)

    types = [t for t in real.types_present if t in JET_TYPES]
    res["pythia_speed"] = pythia = pythia_rate(types, args.n_pythia, real.n_particles, args.seed)
    if not pythia["available"]:
        raise SystemExit(f"bench_jet_models: {pythia['reason']}")
    res["pythia_jets_per_cpu_s"] = pyth = pythia["jets_per_cpu_s"]
    for r in res["families"].values():
        r["speedup_per_cpu_s"] = r["model_speed"]["jets_per_cpu_s"] / pyth
        r["speedup_1thread"] = r["model_speed_1thread"]["jets_per_cpu_s"] / pyth
    (out / "bench.json").write_text(json.dumps(res, indent=1))
    text = format_table(res)
    (out / "bench.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
