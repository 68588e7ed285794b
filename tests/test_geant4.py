"""Geant4 engine: physics of the showers, voxel mapping, resumable chunks, the C++ build.

Geant4 allows one run manager per process, so every simulation here runs in a
subprocess (one per calorimeter); the module-scoped fixtures run each once.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hepgen.data.formats import read_showers
from hepgen.data.geometry import CylindricalBinning, load_geometry, save_geometry
from hepgen.simulate.geant4 import engine as g4engine  # first: sets Geant4's data-free env
from hepgen.simulate.geant4 import get_preset, simulate_geant4

pytest.importorskip("geant4_pybind")

# 80 × (2 mm Pb + 5 mm polystyrene), one readout layer per period: X0_eff = 7 mm /
# (2/5.612 + 5/413.1) = 19.0 mm, 29.5 X0 deep; R_M = 1/(v_Pb/16.02 + v_sc/94.1) = 39.3 mm.
PHYSICS = textwrap.dedent("""
    import sys
    import numpy as np
    from hepgen.data.geometry import CylindricalBinning
    from hepgen.simulate.geant4 import CalorimeterSpec, Slab, Geant4Engine
    slabs = []
    for i in range(80):
        slabs += [Slab("G4_Pb", 2.0), Slab("G4_POLYSTYRENE", 5.0, i)]
    geo = CylindricalBinning.regular(80, [0, 5, 10, 20, 40, 80, 160, 300], n_alpha=4, particle="electron", pid=11)
    eng = Geant4Engine(CalorimeterSpec("test-pb-scint", tuple(slabs), geo, 300.0))
    out = {}
    for e, n in ((1000, 300), (4000, 75), (16000, 19)):
        r = eng.simulate(np.full(n, float(e)), "e-", seed=e + 11)
        out.update({f"{k}_{e}": v for k, v in r.items() if k != "seconds"})
    r = eng.simulate(np.full(4, 4000.0), "gamma", impact_position=np.tile([30.0, 0.0], (4, 1)), seed=3)
    out["offx"] = r["showers"]
    r = eng.simulate(np.full(4, 4000.0), "e+", impact_position=np.tile([0.0, 30.0], (4, 1)), seed=3)
    out["offy"] = r["showers"]
    r = eng.simulate(np.full(4, 4000.0), "e-", theta=np.full(4, 0.3), seed=3)
    out["tilt"] = r["showers"]
    np.savez(sys.argv[1], **out)
""")
X0_PERIODS = 7.0 / 19.0  # X0 per period of the physics stack
ENERGIES = (1000, 4000, 16000)


def _run(code: str, *args, env=None):
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=False,
                         env={**os.environ, **(env or {})}, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def physics(tmp_path_factory):
    path = tmp_path_factory.mktemp("g4") / "physics.npz"
    _run(PHYSICS, path)
    with np.load(path) as f:
        return dict(f)


def _visible(p, e):
    return p[f"showers_{e}"].sum(1) + p[f"outside_{e}"].sum(1)


def _deposited(p, e):
    return _visible(p, e) + p[f"absorber_{e}"]


def test_energy_conservation(physics):
    for e in ENERGIES:
        dep = _deposited(physics, e)
        # Geant4 conserves energy to float precision (≈ 1e-8 relative seen at 1 GeV)
        assert dep.max() <= e * (1 + 1e-6)
        assert 0.97 < dep.mean() / e <= 1.0
        assert np.all(physics[f"showers_{e}"] >= 0)


def test_sampling_fraction_stable_within_1_percent(physics):
    # visible / deposited: ≈ 0.2075 here (the MIP fraction is 0.30, e/mip ≈ 0.7).  Statistical
    # precision ≈ 0.4 % per energy (≈ 300 GeV simulated at each).
    sf = np.array([(_visible(physics, e) / _deposited(physics, e)).mean() for e in ENERGIES])
    assert 0.19 < sf.mean() < 0.23
    assert np.max(np.abs(sf / sf.mean() - 1)) < 0.01, sf


def test_linearity(physics):
    e = np.array(ENERGIES, dtype=float)
    vis = np.array([_visible(physics, x).mean() for x in ENERGIES])
    slope, intercept = np.polyfit(e, vis, 1)
    assert abs(intercept) < 0.01 * vis[-1]
    assert np.max(np.abs(vis / (slope * e) - 1)) < 0.015


def test_stochastic_term(physics):
    # σ/E = a/√E ⊕ b fitted to three energies; a sampling estimate for 2 mm Pb / 5 mm plastic
    # gives a ≈ 3.2 %·√(ΔE_cell/MeV) = 6 % (Amaldi) to 2.7 %·√(d_act/mm / f_mip) = 11 % (Wigmans).
    e_gev = np.array(ENERGIES) / 1000.0
    rel = np.array([_visible(physics, e).std(ddof=1) / _visible(physics, e).mean() for e in ENERGIES])
    (a2, b2), *_ = np.linalg.lstsq(np.stack([1 / e_gev, np.ones(3)], 1), rel**2, rcond=None)
    a = np.sqrt(max(a2, 0.0))
    assert 0.05 < a < 0.10, (rel, a2, b2)
    assert b2 < 0.02**2


def test_shower_maximum_grows_like_log_energy(physics):
    # centre of gravity of the longitudinal profile (X0) ≈ ln(E/E_c) + const: slope 1 per e-fold
    cog = []
    for e in ENERGIES:
        prof = physics[f"showers_{e}"].reshape(-1, 80, 28).sum(2).mean(0)
        cog.append((prof * (np.arange(80) + 0.5)).sum() / prof.sum() * X0_PERIODS)
    slope = np.polyfit(np.log(ENERGIES), cog, 1)[0]
    assert 0.8 < slope < 1.3, cog
    assert 4.0 < cog[0] < 7.0  # 1 GeV: t_max ≈ ln(1000/9.6) − 0.5 ≈ 4.1 X0, the centre ≈ 1.4 X0 deeper


def test_containment(physics):
    s = physics["showers_16000"].reshape(-1, 80, 4, 7)
    radial = s.sum((0, 1, 2))
    inside_2rm = radial[:5].sum() / (radial.sum() + physics["outside_16000"].sum())  # r < 80 mm ≈ 2 R_M
    assert 0.93 < inside_2rm < 0.99
    assert _deposited(physics, 16000).mean() / 16000 > 0.99  # 29.5 X0 deep, 300 mm radius
    last = s.sum((2, 3)).mean(0)[-10:].sum() / s.sum((2, 3)).mean(0).sum()
    assert last < 0.005  # the last 3.7 X0 see almost nothing


def test_voxel_mapping_follows_impact_point_and_angle(physics):
    geo = CylindricalBinning.regular(80, [0, 5, 10, 20, 40, 80, 160, 300], n_alpha=4)
    x, y = geo.voxel_xy()
    for key, sign in (("offx", (1, 0)), ("offy", (0, 1))):
        w = physics[key].sum(0)
        cx, cy = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
        # α bins are 90° wide (centres at ±45°, ±135°): a shower at r = 30 mm on +x shows ≈ 21–25 mm
        assert (cx if sign[0] else cy) > 15 and abs(cy if sign[0] else cx) < 5, (key, cx, cy)
    w = physics["tilt"].reshape(-1, 80, 28).sum(0)
    xl = (w * x[:28]).sum(1) / np.maximum(w.sum(1), 1e-9)
    assert xl[30] > xl[5] + 10  # tilted by 0.3 rad towards +x: the shower drifts to +x with depth


def test_python_scoring_equals_primitive_scorer(tmp_path):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from hepgen.simulate.geant4 import get_engine
        r = get_engine("ds2", scoring=sys.argv[2]).simulate(np.full(2, 2000.0), "e-", seed=5)
        np.save(sys.argv[1], np.concatenate([r["showers"], r["outside"], r["absorber"][:, None]], 1))
    """)
    _run(code, tmp_path / "a.npy", "primitive")
    _run(code, tmp_path / "b.npy", "python")
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (2, 6480 + 45 + 1)
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert 0.01 < a[:, :6480].sum() / 4000 < 0.05  # W/Si: ≈ 3 % of the energy is visible in silicon


RESUMABLE = textwrap.dedent("""
    import sys
    import numpy as np
    from hepgen.simulate.geant4 import engine, simulate_geant4
    out, fail_after, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if fail_after >= 0:
        real, done = engine._run_chunk, []
        def flaky(task):
            if len(done) == fail_after:
                raise RuntimeError("simulated crash")
            done.append(real(task))
            return done[-1]
        engine._run_chunk = flaky
    try:
        simulate_geant4(out, 7, preset="ds1-photon", particle="e-", energies=[500.0, 1000.0], seed=3,
                        chunk_size=2, position_range=(-5.0, 5.0), progress=False, workers=workers)
    except RuntimeError as err:
        print("interrupted:", err)
""")


def test_interrupted_run_resumes_to_identical_output(tmp_path):
    out, ref = tmp_path / "a.h5", tmp_path / "ref.h5"
    res = _run(RESUMABLE, out, 2, 1)
    assert "interrupted: simulated crash" in res.stdout
    chunks = sorted(p.name for p in (tmp_path / ".a.h5.chunks").glob("chunk_*.h5"))
    assert chunks == ["chunk_00000.h5", "chunk_00001.h5"] and not out.exists()
    # another seed is refused while the interrupted chunks are there
    with pytest.raises(ValueError, match=r"holds chunks of an interrupted run with other settings"):
        simulate_geant4(out, 7, preset="ds1-photon", particle="e-", energies=[500.0, 1000.0], seed=4,
                        chunk_size=2, position_range=(-5.0, 5.0), progress=False)
    _run(RESUMABLE, out, -1, 1)
    _run(RESUMABLE, ref, -1, 2)  # the reference in two worker processes: same file
    a, b = read_showers(out), read_showers(ref)
    assert len(a) == 7 and not (tmp_path / ".a.h5.chunks").exists()
    np.testing.assert_array_equal(a.showers, b.showers)
    np.testing.assert_array_equal(a.incident_energies, b.incident_energies)
    np.testing.assert_array_equal(a.conditions["impact_position"], b.conditions["impact_position"])
    assert len({tuple(r) for r in a.showers[:, :50]}) == 7  # no chunk twice
    assert set(np.unique(a.incident_energies)) <= {500.0, 1000.0}
    assert a.geometry.n_voxels == 368 and a.attrs["engine"] == "geant4"
    assert a.attrs["geant4_version"].startswith("geant4-11") and a.attrs["production_cut_mm"] == 0.7
    assert "Seltzer-Berger" in a.attrs["physics_deviations"] and a.attrs["seed"] == 3
    # the showers hold visible energy: LAr sampling of a 0.5–1 GeV electron (≈ 10–20 % visible)
    frac = a.showers.sum(1) / a.incident_energies[:, 0]
    assert np.all((frac > 0.05) & (frac < 0.4))


def test_cartesian_preset_maps_x_and_y(tmp_path):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from hepgen.simulate.geant4 import get_engine
        eng = get_engine("3dgan")
        a = eng.simulate(np.full(2, 2000.0), "gamma", impact_position=np.tile([20.4, 0.0], (2, 1)), seed=1)
        b = eng.simulate(np.full(2, 2000.0), "gamma", impact_position=np.tile([0.0, -20.4], (2, 1)), seed=1)
        np.save(sys.argv[1], np.stack([a["showers"].sum(0), b["showers"].sum(0)]))
    """)
    _run(code, tmp_path / "c.npy")
    w = np.load(tmp_path / "c.npy")
    geo = get_preset("3dgan").geometry
    x, y = geo.voxel_xy()
    for row, (ex, ey) in zip(w, ((20.4, 0.0), (0.0, -20.4))):
        assert abs((row * x).sum() / row.sum() - ex) < 2.0 and abs((row * y).sum() / row.sum() - ey) < 2.0


def test_binning_xml_round_trip(tmp_path):
    for name in ("ds1-photon", "ds2"):
        geo = get_preset(name).geometry
        path = tmp_path / f"{name}.xml"
        save_geometry(geo, path)
        back = load_geometry(path)
        assert back.n_voxels == geo.n_voxels and back.to_dict() == geo.to_dict()
    text = (tmp_path / "ds1-photon.xml").read_text()
    assert '<Layer id="12" r_edges="0,100,200,400,1000,2000" n_bin_alpha="1"' in text


def test_library_build_is_safe_when_concurrent(tmp_path):
    code = "from hepgen.simulate.geant4 import build_library; print(build_library())"
    env = {"HEPGEN_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **env}) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    lib = Path(paths.pop())
    assert lib.is_file() and lib.parent == tmp_path / "geant4"
    assert not list(lib.parent.glob(".build-*"))  # no temporary left


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^preset: expected one of \['3dgan', 'calogan', 'demo', 'ds1-photon', 'ds2', 'hgcal'\], found 'ds9'$"):
        simulate_geant4(tmp_path / "x.h5", 3, preset="ds9")
    with pytest.raises(ValueError, match=r"^particle: expected one of .*found 'pi\+'$"):
        simulate_geant4(tmp_path / "x.h5", 3, particle="pi+")
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 1, found 0$"):
        simulate_geant4(tmp_path / "x.h5", 0)
    with pytest.raises(ValueError, match=r"^energy_range: expected finite lo <= hi > 0, found \(0, 10\)$"):
        simulate_geant4(tmp_path / "x.h5", 3, energy_range=(0, 10))
    with pytest.raises(ValueError, match=r"^theta_range: expected angles within \(-pi/2, pi/2\) rad"):
        simulate_geant4(tmp_path / "x.h5", 3, theta_range=(0.0, 2.0))
    with pytest.raises(ValueError, match=r"^energies: expected one or more finite energies > 0 MeV, found \[-1.0\]$"):
        simulate_geant4(tmp_path / "x.h5", 3, energies=[-1.0])
    assert not list(tmp_path.iterdir())  # nothing written for bad input
    monkeypatch.setenv("HEPGEN_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("CXX", "no-such-compiler-hepgen")
    with pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler: install g\+\+"):
        g4engine.build_library()
    monkeypatch.setattr(g4engine, "g4", None)
    with pytest.raises(ImportError, match=r"^the Geant4 engine needs the optional extra: pip install 'hepgen\[geant4\]'$"):
        simulate_geant4(tmp_path / "x.h5", 3)


def test_cli_simulates_geant4_showers(tmp_path):
    out = tmp_path / "g4.h5"
    res = _run("import sys; from hepgen.cli import main; sys.exit(main(sys.argv[1:]))",
               "simulate", "showers", "--engine", "geant4", "--preset", "ds2", "--particle", "e-", "--n", "4",
               "--energies", "1000", "--chunk-size", "2", "--seed", "2", "-q", "-o", out,
               "--write-binning", tmp_path / "b.xml")
    assert f"wrote 4 Geant4 showers ({read_showers(out).geometry.n_voxels} voxels)" in res.stdout
    data = read_showers(out, tmp_path / "b.xml")  # the written binning reads the file
    assert len(data) == 4 and data.attrs["engine"] == "geant4" and data.attrs["seed"] == 2
    assert np.all(data.incident_energies == 1000.0) and np.all(data.showers.sum(1) < 1000.0)
