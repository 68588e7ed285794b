"""Throughput of the Pythia 8 + FastJet jet generation (hepgen.simulate.pythia), in jets/s per core.

For each jet type, generates ``--n`` jets in this process (one core, one Pythia instance):
Pythia's initialisation (~1 s), event generation (``Pythia.nextBatch``), clustering,
matching and feature building (module imports are timed apart).  Prints a table; the last line
of stdout is the result as JSON (the later generative-model benchmark compares against it).
Wall-clock rates depend on the machine's load; the CPU-time rate (``jets_per_cpu_s``) is
the per-core throughput even on a shared machine.  The load average is printed too.  Usage:

    python benchmarks/bench_jets.py --types g,q,t,w,z --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from hepgen.data.jets import JET_TYPES, jet_type_index
from hepgen.simulate.pythia import JetGenConfig, chunk_seed, generate_jets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--types", default="g,q,t,w,z", help="comma-separated jet types")
    p.add_argument("--n", type=int, default=1000, help="jets per type")
    p.add_argument("--n-particles", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    config = JetGenConfig(n_particles=args.n_particles)
    results = {}
    for name in args.types.split(","):
        t = jet_type_index(name)
        t0 = time.perf_counter()
        data = generate_jets(JET_TYPES[t], 0, seed=1, config=config)  # imports only
        t1, c1 = time.perf_counter(), time.process_time()
        data = generate_jets(JET_TYPES[t], args.n, seed=chunk_seed(args.seed, t, 0), config=config)
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
        results[JET_TYPES[t]] = {
            "jets": len(data),
            "events": int(data.attrs["n_events"]),
            "seconds": wall,
            "jets_per_s": len(data) / wall,
            "cpu_seconds": cpu,  # this process's CPU time: the per-core rate on a loaded machine
            "jets_per_cpu_s": len(data) / cpu,
            "jets_per_event": len(data) / data.attrs["n_events"],
            "import_seconds": t1 - t0,
        }
    print(f"{'type':>4} {'jets':>6} {'events':>7} {'wall s':>8} {'jets/s':>8} {'cpu s':>8} {'jets/cpu-s':>10} "
          f"{'jets/event':>10}")
    for name, r in results.items():
        print(f"{name:>4} {r['jets']:>6} {r['events']:>7} {r['seconds']:>8.1f} {r['jets_per_s']:>8.1f} "
              f"{r['cpu_seconds']:>8.1f} {r['jets_per_cpu_s']:>10.1f} {r['jets_per_event']:>10.2f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({"benchmark": "pythia_fastjet_jets", "per_core": True, "n_particles": args.n_particles,
                      "results": results, "load_avg_1min": load, "cpu_count": os.cpu_count(),
                      "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
