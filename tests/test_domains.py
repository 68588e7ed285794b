"""The domain layer: the kind registry, `kind` in checkpoints and files, and a new kind of data
trained by the unchanged trainer."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from hepgen.checkpoint import load_checkpoint, save_checkpoint
from hepgen.cli import main
from hepgen.config import TrainConfig
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.jets import read_jets
from hepgen.domains import (
    domain_of_checkpoint,
    domain_of_data,
    domain_of_file,
    get_domain,
    kinds,
    register_domain,
)
from hepgen.domains.base import check_kind, unregister_domain
from hepgen.domains.jets import JetGenerator
from hepgen.domains.showers import ShowerGenerator
from hepgen.models import GenerativeModel, build_model, register
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.trainer import train

GEOMETRY = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
SMALL_FLOW = {"transforms": 2, "hidden_features": 16, "n_hidden": 1}


@pytest.fixture(scope="module")
def showers():
    return simulate_dataset(300, geometry=GEOMETRY, energy_range=(2e3, 2e4), seed=5, progress=False)


@pytest.fixture(scope="module")
def shower_run(showers, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(showers, TrainConfig(family="flow", model=SMALL_FLOW, epochs=1, batch_size=64, tensorboard=False),
          out, progress=False)
    return out


def test_builtin_kinds_are_registered_and_found_by_data_and_file(showers, tmp_path):
    assert {"showers", "jets"} <= set(kinds())
    assert domain_of_data(showers).kind == "showers"
    write_showers(tmp_path / "s.h5", showers)
    assert domain_of_file(tmp_path / "s.h5").kind == "showers"
    with h5py.File(tmp_path / "s.h5", "r") as f:  # the file says what it holds
        assert f.attrs["kind"] == "showers"
    (tmp_path / "x.txt").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"x.txt: not a file of any known kind of data \[.*'showers', 'jets'"):
        domain_of_file(tmp_path / "x.txt")
    assert domain_of_file(tmp_path / "x.txt", default="showers").kind == "showers"
    with pytest.raises(ValueError, match=r"unknown kind of data 'images'; known: \[.*'showers', 'jets'"):
        get_domain("images")
    with pytest.raises(TypeError, match=r"expected data of a registered kind .*, found list"):
        domain_of_data([1, 2])


def test_a_second_domain_or_family_of_the_same_name_is_refused():
    with pytest.raises(ValueError, match=r"domain kind 'showers' is already registered \(ShowerDomain\)"):
        register_domain(get_domain("showers"))

    with pytest.raises(ValueError, match=r"model family 'flow' is already registered by hepgen.models.flow"):
        @register
        class Impostor(GenerativeModel):
            family = "flow"


def test_checkpoints_carry_their_kind_and_old_shower_checkpoints_load(shower_run, tmp_path):
    payload = load_checkpoint(shower_run / "best.pt")
    assert payload["kind"] == "showers" and domain_of_checkpoint(payload).kind == "showers"
    # a checkpoint written before kinds were recorded: no 'kind' key → showers, same weights
    old = {k: v for k, v in payload.items() if k not in ("kind", "format")}
    save_checkpoint(tmp_path / "old.pt", old)
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert "kind" not in loaded and domain_of_checkpoint(loaded).kind == "showers"
    gen = ShowerGenerator.load(tmp_path / "old.pt")
    ref = ShowerGenerator.load(shower_run / "best.pt")
    e = np.full((5, 1), 5e3)
    np.testing.assert_array_equal(gen.sample(e, seed=3), ref.sample(e, seed=3))
    # the other kind's loader refuses it, naming the file and the key
    with pytest.raises(ValueError, match=r"old.pt: key 'kind': expected a jets checkpoint \('jets'\), found 'showers'"):
        JetGenerator.load(tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"a.pt: key 'kind': unknown kind of data 'images'"):
        domain_of_checkpoint({"kind": "images"}, "a.pt")
    with pytest.raises(ValueError, match=r"a.pt: key 'kind': expected 'showers', found 'jets'"):
        check_kind("jets", "showers", "a.pt")


def test_a_file_of_another_kind_is_refused_by_name(showers, tmp_path):
    write_showers(tmp_path / "s.h5", showers)
    with pytest.raises(ValueError, match=r"s.h5: attribute 'kind': expected 'jets', found 'showers'"):
        read_jets(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f.attrs["kind"] = "jets"
    with pytest.raises(ValueError, match=r"s.h5: attribute 'kind': expected 'showers', found 'jets'"):
        read_showers(tmp_path / "s.h5")


def test_generated_showers_are_marked_with_their_kind(shower_run, tmp_path):
    assert main(["sample", str(shower_run / "best.pt"), "-o", str(tmp_path / "g.h5"), "--n", "20",
                 "--energies", "5000", "-q"]) == 0
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert f.attrs["kind"] == "showers"
    assert domain_of_file(tmp_path / "g.h5").kind == "showers"


def test_cli_refuses_an_option_of_another_kind(showers, tmp_path, capsys):
    write_showers(tmp_path / "s.h5", showers)
    assert main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "run"), "--n-particles", "30", "-q"]) == 2
    assert "--n-particles does not apply to showers files" in capsys.readouterr().err


# --- a new kind of data, plugged in without touching the trainer ----------------------------
@dataclasses.dataclass
class Points:
    """A toy container: 2-D points with one scalar label each."""

    x: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> Points:
        return Points(self.x[idx], self.label[idx])


class Standardiser:
    def __init__(self, mean, std) -> None:
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.n_features = len(self.mean)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class PointsGenerator:
    kind = "points"

    def __init__(self, model, pre, meta) -> None:
        self.model, self.preprocessor, self.meta = model, pre, dict(meta)

    def save(self, path, trainer_state=None) -> None:
        save_checkpoint(path, {"kind": self.kind, "family": self.model.family, "hparams": self.model.hparams,
                               "model": self.model.state_dict(), "preprocessing": self.preprocessor.state_dict(),
                               "meta": self.meta, "trainer": trainer_state})

    @torch.no_grad()
    def sample_like(self, data: Points, seed: int = 0) -> Points:
        c = torch.as_tensor(data.label[:, None], dtype=torch.float32)
        z = self.model.sample(c, generator=torch.Generator().manual_seed(seed)).numpy()
        return Points(z * self.preprocessor.std + self.preprocessor.mean, data.label)


class PointsDomain:
    kind = "points"
    data_type = Points
    default_family = "flow"
    default_conditions: list = []

    def check(self, data, config):
        if len(data) < 2:
            raise ValueError("need 2 points")

    def fit_preprocessor(self, data, config):
        return Standardiser(data.x.mean(0), data.x.std(0))

    def preprocessor_from_state(self, state):
        return Standardiser(state["mean"], state["std"])

    def build_model(self, config, data, pre):
        return build_model(config.family, n_features=pre.n_features, n_conditions=1, **config.model)

    def meta(self, data, config):
        return {"n": len(data)}

    def features(self, pre, data, rng):
        return ((data.x - pre.mean) / pre.std).astype(np.float32)

    def conditions(self, pre, data):
        return data.label[:, None].astype(np.float32)

    def generator(self, model, pre, data, meta):
        return PointsGenerator(model, pre, meta)

    def from_payload(self, payload, source):
        check_kind(payload.get("kind"), self.kind, source)
        model = build_model(payload["family"], **payload["hparams"])
        model.load_state_dict(payload["model"])
        return PointsGenerator(model, self.preprocessor_from_state(payload["preprocessing"]), payload["meta"])

    def selection_score(self, generator, data, seed):
        fake = generator.sample_like(data, seed)
        return float(np.abs(fake.x.mean(0) - data.x.mean(0)).sum())


@pytest.fixture
def points_domain():
    register_domain(PointsDomain())
    yield
    unregister_domain("points")


def test_a_new_kind_trains_with_the_unchanged_trainer(points_domain, tmp_path):
    rng = np.random.default_rng(0)
    label = rng.uniform(-1.0, 1.0, 1000)
    x = np.stack([3.0 * label + rng.normal(0, 0.5, 1000), rng.normal(10.0, 2.0, 1000)], axis=1)
    data = Points(x, label)
    cfg = TrainConfig(family="flow", model=SMALL_FLOW, epochs=15, batch_size=64, lr=5e-3, select_by="val_loss",
                      tensorboard=False)
    gen = train(data, cfg, tmp_path, progress=False)
    assert isinstance(gen, PointsGenerator) and load_checkpoint(tmp_path / "best.pt")["kind"] == "points"
    # it learned the conditional law: x0 = 3·label (+ noise), x1 ~ N(10, 2) (measured: slope 2.98,
    # mean 9.99, std 2.06)
    lab = np.linspace(-1.0, 1.0, 400)
    fake = gen.sample_like(Points(np.zeros((400, 2)), lab), seed=1)
    assert np.polyfit(lab, fake.x[:, 0], 1)[0] == pytest.approx(3.0, abs=0.4)
    assert fake.x[:, 1].mean() == pytest.approx(10.0, abs=0.4) and fake.x[:, 1].std() == pytest.approx(2.0, rel=0.2)
    # its selection score is the kind's own (0 for identical samples of the same law)
    assert get_domain("points").selection_score(gen, data, seed=0) < 0.5
    # and resuming a finished run is the same run
    again = train(data, dataclasses.replace(cfg), tmp_path, resume=True, progress=False)
    np.testing.assert_array_equal(again.sample_like(data, seed=2).x, gen.sample_like(data, seed=2).x)
