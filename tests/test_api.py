"""The Python API (hepgen.api, re-exported from hepgen): light import, the same results as the command
line, in-memory and file paths agreeing, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

import hepgen
from hepgen.cli import main
from hepgen.data.formats import ShowerData
from hepgen.data.geometry import CylindricalBinning

GEOMETRY = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
TINY = dict(family="flow", epochs=1, batch_size=64, model={"hidden_features": 16, "transforms": 1},
            tensorboard=False, progress=False)


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (this process has imported everything already)."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    real = hepgen.simulate_showers(300, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=1)
    hepgen.write(d / "real.h5", real)
    gen = hepgen.train_generator(d / "real.h5", d / "model", **TINY)
    return d, real, gen


def test_import_hepgen_is_light_and_the_api_is_lazy():
    out = _python("import sys, hepgen; print(sorted(m for m in ('torch', 'matplotlib', 'hepgen.api', 'h5py') "
                  "if m in sys.modules)); hepgen.sample; print('hepgen.api' in sys.modules, 'torch' in sys.modules)")
    assert out.splitlines() == ["[]", "True True"]
    assert set(hepgen.__all__) >= {"load_generator", "sample", "read", "write", "evaluate", "train_generator"}
    assert "evaluate" in dir(hepgen)


def test_importing_hepgen_and_making_a_report_leaves_the_matplotlib_backend_alone(tmp_path):
    code = f"""
import matplotlib
matplotlib.use("svg")
import hepgen, hepgen.api, hepgen.bench, hepgen.domains.showers.plots, hepgen.domains.jets.report
from hepgen.data.geometry import CylindricalBinning
g = CylindricalBinning.regular(2, [0.0, 10.0, 30.0], n_alpha=1)
a = hepgen.simulate_showers(60, geometry=g, seed=1)
b = hepgen.simulate_showers(60, geometry=g, seed=2)
hepgen.evaluate(a, b, {str(tmp_path)!r}, metrics="fast")
hepgen.bench.plot_bench({{"runs": [{{"device": "cpu", "threads": 1, "path": "fp32", "batch_size": 1,
    "showers_per_s": 10.0, "roofline_ratio": 0.1}}], "simulator": {{}}, "batch_sizes": [1], "family": "flow",
    "sampler": "x", "n_voxels": 4}}, {str(tmp_path / "bench.png")!r})
print(matplotlib.get_backend())
"""
    assert _python(code) == "svg"
    assert (tmp_path / "report.html").is_file() and (tmp_path / "bench.png").stat().st_size > 1000


def test_read_write_round_trip_and_errors(tmp_path):
    data = hepgen.simulate_showers(7, geometry=GEOMETRY, seed=3)
    back = hepgen.read(hepgen.write(tmp_path / "s.h5", data))
    assert isinstance(back, ShowerData) and back.geometry.to_dict() == GEOMETRY.to_dict()
    np.testing.assert_array_equal(back.showers, data.showers.astype(np.float32))
    with pytest.raises(ValueError, match="--n-particles does not apply to showers files"):
        hepgen.read(tmp_path / "s.h5", n_particles=3)
    with pytest.raises(ValueError, match="nothing.h5: file not found"):
        hepgen.read(tmp_path / "nothing.h5")


def test_jets_read_write_through_the_same_functions(tmp_path):
    from _toy_jets import toy_jets

    from hepgen.data.jets import JetData

    jets = toy_jets(20, n_particles=6)
    back = hepgen.read(hepgen.write(tmp_path / "j.h5", jets), n_particles=4)
    assert isinstance(back, JetData) and back.particle_features.shape == (20, 4, 4)
    np.testing.assert_array_equal(back.particle_features, jets.particle_features[:, :4])


def test_train_generator_refuses_unknown_settings(tmp_path):
    data = hepgen.simulate_showers(20, geometry=GEOMETRY, seed=0)
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['epoch'\]"):
        hepgen.train_generator(data, tmp_path, epoch=1)


def test_sample_in_memory_equals_the_file_and_the_cli(run, tmp_path, capsys):
    d, real, gen = run
    loaded = hepgen.load_generator(d / "model" / "best.pt")
    assert loaded.kind == "showers" and loaded.model.family == "flow"
    mem = hepgen.sample(loaded, 250, energy_range=(6e3, 4e4), seed=5, chunk_size=100)
    filed = hepgen.sample(d / "model" / "best.pt", 250, energy_range=(6e3, 4e4), seed=5, chunk_size=100,
                          output=tmp_path / "api.h5")
    assert main(["sample", str(d / "model" / "best.pt"), "-o", str(tmp_path / "cli.h5"), "--n", "250",
                 "--energy-range", "6e3", "4e4", "--seed", "5", "--chunk-size", "100", "-q"]) == 0
    cli = hepgen.read(tmp_path / "cli.h5")
    assert mem.showers.shape == (250, GEOMETRY.n_voxels)
    e = mem.incident_energies.ravel()
    assert e.min() >= 6e3 and e.max() <= 4e4
    for other in (filed, cli):
        np.testing.assert_array_equal(other.incident_energies.ravel(), e)
        np.testing.assert_allclose(other.showers, mem.showers, rtol=0, atol=0)
    assert not np.array_equal(mem.showers[:100], mem.showers[100:200])  # chunks have their own seeds
    assert json.loads(mem.attrs["hepgen_conditions"])["mode"] == "energy_range"


def test_sample_like_takes_the_conditions_of_data_or_a_file(run):
    d, real, gen = run
    a = hepgen.sample(gen, like=real, n=40, seed=1)
    b = hepgen.sample(gen, like=d / "real.h5", n=40, seed=1)
    np.testing.assert_array_equal(a.incident_energies, real.incident_energies[:40])
    np.testing.assert_array_equal(a.showers, b.showers)
    with pytest.raises(ValueError, match="--n: expected a number of showers >= 1, found 0"):
        hepgen.sample(gen, 0)
    with pytest.raises(ValueError, match="expected showers \\(ShowerData\\) or a CaloChallenge HDF5 file, found dict"):
        hepgen.sample(gen, like={})
    with pytest.raises(ValueError, match="jet_type applies to jets"):
        hepgen.sample(gen, 10, jet_type="t")


def test_evaluate_in_memory_equals_files_and_the_cli(run, tmp_path, capsys):
    d, real, gen = run
    fake = hepgen.sample(gen, like=real, seed=2)
    hepgen.write(tmp_path / "fake.h5", fake)
    mem = hepgen.evaluate(real, fake, metrics="fast")
    files = hepgen.evaluate(d / "real.h5", tmp_path / "fake.h5", metrics="fast")
    assert main(["evaluate", str(d / "real.h5"), str(tmp_path / "fake.h5"), "-o", str(tmp_path / "cli"), "--fast",
                 "-q"]) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert "inputs" not in mem and files["inputs"] == {"real": str(d / "real.h5"), "generated": str(tmp_path / "fake.h5")}
    for key in ("separation_power", "ks", "energy_response", "features"):
        assert json.loads(json.dumps(mem[key])) == cli[key] == json.loads(json.dumps(files[key]))
    assert (tmp_path / "cli" / "report.html").is_file()
    with pytest.raises(ValueError, match="--num-batches does not apply to showers files"):
        hepgen.evaluate(real, fake, num_batches=2)


def test_evaluate_and_sample_jets_in_memory(tmp_path):
    from _toy_jets import toy_jets

    real, other = toy_jets(120, n_particles=6, seed=1, types=(2,)), toy_jets(120, n_particles=6, seed=2, types=(2,))
    m = hepgen.evaluate(real, other, num_eval_samples=50, num_batches=2, no_efp=True, no_classifier=True,
                        n_particles=5)
    assert set(m["types"]) == {"t"} and m["types"]["t"]["n_particles"] == 5
    assert "inputs" not in m


def test_jets_train_sample_through_the_api_match_the_cli(tmp_path, capsys):
    from _toy_jets import toy_jets

    from hepgen.models import MODEL_FAMILIES

    jets = toy_jets(120, n_particles=6, seed=0, types=(2,))
    gen = hepgen.train_generator(jets, tmp_path / "run", family="epic_fm", epochs=1, batch_size=64, progress=False,
                                 model=MODEL_FAMILIES["epic_fm"].tiny_hparams(), tensorboard=False)
    api = hepgen.sample(tmp_path / "run" / "best.pt", 30, jet_type="t", seed=3)
    assert main(["sample-jets", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "cli.h5"), "--type", "t",
                 "--n", "30", "--seed", "3", "-q"]) == 0
    np.testing.assert_array_equal(hepgen.read(tmp_path / "cli.h5").particle_features, api.particle_features)
    like = hepgen.sample(gen, 10, like=jets, seed=1)
    np.testing.assert_array_equal(like.particle_features[..., 3].sum(axis=1), jets.particle_features[:10, :, 3].sum(axis=1))
    with pytest.raises(ValueError, match="like holds 8 particles per jet, the model generates 6"):
        hepgen.sample(gen, like=toy_jets(10, n_particles=8, types=(2,)))
    with pytest.raises(ValueError, match="energies applies to showers"):
        hepgen.sample(gen, 10, energies=[1e3], jet_type="t")
