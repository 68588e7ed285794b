"""Classifier two-sample AUCs of trained refiners on large samples they never saw (issue #17).

A refinement demonstration (``bench_refine_showers.py``, ``bench_refine_auger.py``) measures its
AUCs on the 30 % of its data it holds out, so the classifier learns from a few hundred events
per class and can miss what a better-fed one sees.  This script takes finished refiner
checkpoints (one per refiner seed) and measures them again on new samples of any size:

* ``--toy N``: N new Auger-like toy "sim" events and N (2N with ``--null``) "data" events
  (:mod:`hepgen.simulate.auger_toy`, streams ``SeedSequence([11 | 12, SALT])``, independent of the
  benchmark's integer seeds 11/12, of the fresh-per-epoch salts 1000 + refiner seed and of the
  memorisation diagnostic's 999);
* ``--gflash N``: N new GFlash showers (default calorimeter, ``--gflash-seed``, default 5; the
  benchmark's sim is seed 1 and its stand-in data seed 2) as sim, with ``--data FILE`` (e.g. a
  Geant4 file simulated with another seed than the benchmark's);
* ``--sim FILE --data FILE``: any two files of the refiners' kind.

``--null`` splits the data into halves A and B: A is the data of every comparison and B vs A
is the real-vs-real floor (0.5 for an unbiased test).  Writes ``OUT/holdout.json`` and
``OUT/report.html`` (AUC table and ROC curves) and prints the figures.  Single-threaded.

Usage:
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_refine_holdout.py \\
        RUN/refiner_main.pt [RUN2/refiner_main.pt ...] --toy 10000 --null -o bench_out/refine_holdout
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path

import numpy as np
import torch
from bench_refine_showers import add_classifier_seeds, classifier_seeds, print_holdout

from hepgen.refine.adapters import read_kind
from hepgen.refine.proof import dump_json, holdout_aucs, roc_figure, table_html, write_html_report
from hepgen.refine.refiner import load_refiner
from hepgen.simulate.auger_toy import simulate_auger
from hepgen.simulate.calorimeter import simulate_dataset

#: salt of the toy hold-out samples (see the module docstring)
TOY_SALT = 2000


def toy_samples(n: int, null: bool, salt: int = TOY_SALT):
    """``(sim, data)`` new toy events: ``n`` sim, ``n`` data (``2n`` when ``null``)."""
    def rng(base):
        return np.random.default_rng(np.random.SeedSequence([base, int(salt)]))
    return (simulate_auger(n, mode="sim", seed=rng(11)),
            simulate_auger(2 * n if null else n, mode="data", seed=rng(12)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="refiner checkpoints (refiner_main.pt of a demonstration)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--toy", type=int, metavar="N", help="N new Auger-like toy events per sample")
    src.add_argument("--gflash", type=int, metavar="N", help="sim = N new GFlash showers (needs --data)")
    src.add_argument("--sim", help="sim file of the refiners' kind (needs --data)")
    p.add_argument("--data", help="data file (with --gflash or --sim)")
    p.add_argument("--gflash-seed", type=int, default=5)
    p.add_argument("--salt", type=int, default=TOY_SALT, help="seed salt of the toy samples")
    p.add_argument("--null", action="store_true", help="split the data in halves: B vs A is the real-vs-real floor")
    p.add_argument("--refine-seed", type=int, default=1, help="noise seed of the refiners (demonstrate uses seed + 1)")
    add_classifier_seeds(p)
    p.add_argument("-o", "--out", default="bench_out/refine_holdout")
    return p


def write_report(out: Path, r: dict, notes: list[str]) -> None:
    rows = [["sim vs data", *_cells(r["sim vs data"])]]
    rows += [[f"refined ({c}) vs data", *_cells(a)] for c, a in r["refined vs data"].items()]
    if r["null"] is not None:
        rows.append(["data B vs data A (null)", *_cells(r["null"])])
    s = r["sizes"]
    sections = [("Setup", "<p>" + "<br>".join(html.escape(n) for n in notes) + f"</p><p>kind {r['kind']}; sim {s['sim']} events, data "
                 f"{s['data']}" + (f", null data B {s['null']}" if s["null"] else "") +
                 f"; classifier seeds {r['seeds']}.</p>"),
                ("Classifier two-sample AUC (mean ± std over classifier seeds)",
                 table_html(rows, ["sample", "AUC (low-level + labels)", "± std", "± (Hanley–McNeil, one seed)",
                                   "AUC (summaries)", "± std"]))]
    write_html_report(out / "report.html", "Refiners on a large hold-out sample", sections,
                      [("ROC curves (low-level features + labels)", roc_figure(r["rocs"]))])


def _cells(a: dict) -> list:
    lo, hi = a["auc_low_level"], a["auc_high_level"]
    return [lo["auc"], lo["auc_std"], lo["auc_err"], hi["auc"], hi["auc_std"]]


def main() -> None:
    p = build_parser()
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    kind = load_refiner(a.checkpoints[0])[1].get("kind")
    if (a.toy and kind != "traces") or (a.gflash and kind != "showers"):
        p.error(f"{a.checkpoints[0]}: key 'kind': expected {'traces' if a.toy else 'showers'!r} "
                f"(--{'toy' if a.toy else 'gflash'}), found {kind!r}")
    if a.toy:
        sim, data = toy_samples(a.toy, a.null, a.salt)
        notes = [f"Auger-like toy: {a.toy} new sim and {len(data)} new data events, SeedSequence([11 | 12, {a.salt}])"]
    else:
        if not a.data:
            p.error("--gflash and --sim need --data")
        try:  # a file of another kind than the refiners': one line, no traceback
            data = read_kind(a.data, kind, "the refiners'")
            if a.sim:
                sim = read_kind(a.sim, kind, "the refiners'")
        except ValueError as e:
            raise SystemExit(str(e)) from None
        if a.gflash:
            sim = simulate_dataset(a.gflash, seed=a.gflash_seed)
            notes = [f"sim = {a.gflash} new GFlash showers (default calorimeter, seed {a.gflash_seed})"]
        else:
            notes = [f"sim = {a.sim}"]
        notes.append(f"data = {a.data} ({len(data)} events)")
    notes.append(f"generation/reading took {time.perf_counter() - t0:.0f} s")
    print("\n".join(notes), flush=True)
    sources = ("toy sim", "toy data") if a.toy else (a.sim or f"GFlash seed {a.gflash_seed}", a.data)
    r = holdout_aucs(a.checkpoints, sim, data, seeds=classifier_seeds(a), null=a.null, refine_seed=a.refine_seed,
                     sim_source=sources[0], data_source=sources[1])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dump_json(out / "holdout.json", {**{k: v for k, v in r.items() if k != "rocs"}, "notes": notes})
    write_report(out, r, notes)
    print_holdout(r)
    print(f"report: {out}/report.html  ({time.perf_counter() - t0:.0f} s total)")


if __name__ == "__main__":
    main()
