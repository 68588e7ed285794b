"""report.html is one self-contained file (showers and jets): every src/href is a data: URI or an in-page
anchor, the embedded figures are the PNG files written beside it (each with its PDF), and the shower
report's hist_data.json link carries the file itself."""

import base64
import html.parser
import json

from _toy_jets import toy_jets

import hepgen
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.jets.evaluate import evaluate_jet_files
from hepgen.domains.showers.evaluate import evaluate, write_outputs
from hepgen.report.portable import external_references

GEOMETRY = CylindricalBinning.regular(2, [0.0, 10.0, 30.0], n_alpha=2)


class _Links(html.parser.HTMLParser):
    """Every (tag, attribute, value) of src/href, straight from html.parser (independent of the helper)."""

    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [(tag, k, v) for k, v in attrs if k in ("src", "href")]


def _links(page: str):
    parser = _Links()
    parser.feed(page)
    return parser.links


def _check_self_contained(out):
    page = (out / "report.html").read_text()
    links = _links(page)
    bad = [x for x in links if not (x[2].startswith("data:") or x[2].startswith("#"))]
    assert bad == [] and external_references(page) == []
    images = [v for t, k, v in links if t == "img"]
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(images) == len(pngs) >= 2
    embedded = sorted(base64.b64decode(v.split(",", 1)[1]) for v in images if v.startswith("data:image/png;base64,"))
    assert embedded == sorted(p.read_bytes() for p in pngs)
    for png in pngs:
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", png
    return links


def test_shower_report_is_one_file(tmp_path):
    real = hepgen.simulate_showers(80, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=1)
    gen = hepgen.simulate_showers(80, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=2)
    metrics, details = evaluate(real, gen, groups="features", classifier=False, return_details=True)
    write_outputs(metrics, real, gen, tmp_path, details)
    links = _check_self_contained(tmp_path)
    hist = [v for t, k, v in links if t == "a" and v.startswith("data:application/json")]
    assert len(hist) == 1
    assert json.loads(base64.b64decode(hist[0].split(",", 1)[1])) == json.loads((tmp_path / "hist_data.json").read_text())


def test_a_relative_figure_would_be_caught():
    assert external_references("<p><img src='figures/a.png'><a href='hist_data.json'>x</a></p>") == [
        ("img", "src", "figures/a.png"), ("a", "href", "hist_data.json")]


def test_jet_report_is_one_file(tmp_path):
    hepgen.write(tmp_path / "real.h5", toy_jets(100, n_particles=6, seed=1, types=(2,)))
    hepgen.write(tmp_path / "gen.h5", toy_jets(100, n_particles=6, seed=2, types=(2,)))
    evaluate_jet_files(tmp_path / "real.h5", tmp_path / "gen.h5", tmp_path / "out", num_eval_samples=50,
                       num_batches=2, efps=False, classifier=False)
    _check_self_contained(tmp_path / "out")
