"""The portable parts of the shower report: a vector PDF beside every PNG figure, the histogram
contents in hist_data.json (checked against numpy on the raw showers), and the training loss
curve found through the generated file's checkpoint attribute."""

import json

import numpy as np
import pytest

from hepgen.data.formats import ShowerData
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers.evaluate import evaluate, read_training_log, write_outputs
from hepgen.simulate.calorimeter import simulate_dataset

GEOMETRY = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
LOG = "epoch,step,train_loss,val_loss,lr,seconds,val_physics\n1,5,2.5,2.25,0.001,1.0,\n2,10,2.0,1.75,0.0005,2.0,0.125\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    real = simulate_dataset(200, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=1)
    gen = simulate_dataset(200, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=2)
    (d / "run").mkdir()
    (d / "run" / "train_log.csv").write_text(LOG)
    gen = ShowerData(gen.showers, gen.incident_energies, gen.conditions, gen.geometry,
                     {**gen.attrs, "checkpoint": str(d / "run" / "best.pt")})  # as hepgen sample records it
    metrics, details = evaluate(real, gen, groups="fast", classifier=False, return_details=True)
    write_outputs(metrics, real, gen, d / "out", details)
    return d / "out", real, gen


def test_every_figure_has_a_vector_pdf_beside_it(report):
    out, _, _ = report
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 5
    for png in pngs:
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf


def test_hist_data_holds_the_counts_behind_the_feature_figures(report):
    out, real, gen = report
    data = json.loads((out / "hist_data.json").read_text())
    h = data["features"]["E_tot_over_E_inc"]
    edges = np.asarray(h["edges"])
    for key, showers in (("counts_real", real), ("counts_generated", gen)):
        ratio = showers.showers.sum(axis=1) / showers.incident_energies[:, 0]
        expected = np.histogram(np.clip(ratio, edges[0], edges[-1]), bins=edges)[0]  # overflow in the edge bins
        np.testing.assert_array_equal(np.asarray(h[key]), expected)
        assert sum(h[key]) == 200
    metrics = json.loads((out / "metrics.json").read_text())
    assert h["separation_power"] == pytest.approx(metrics["separation_power"]["E_tot_over_E_inc"], rel=1e-12)
    assert set(data["features"]) >= set(metrics["separation_power"])
    assert "hist_data.json" in (out / "report.html").read_text()


def test_training_history_is_exported_and_drawn_first(report, tmp_path):
    out, _, gen = report
    log = json.loads((out / "hist_data.json").read_text())["training_log"]
    assert log["epoch"] == [1.0, 2.0] and log["train_loss"] == [2.5, 2.0] and log["val_physics"] == [None, 0.125]
    html = (out / "report.html").read_text()
    assert html.index("<h3>Training history of the generator</h3>") < html.index("<h3>Average shower per layer</h3>")
    assert (out / "figures" / "loss_curve.pdf").is_file()
    # an explicit log wins; a checkpoint without one beside it gives no curve
    (tmp_path / "other.csv").write_text("epoch,train_loss\n1,7.0\n")
    assert read_training_log(gen, tmp_path / "other.csv") == {"epoch": [1.0], "train_loss": [7.0]}
    assert read_training_log(gen, tmp_path) is None
    assert read_training_log(ShowerData(gen.showers, gen.incident_energies, geometry=gen.geometry)) is None
