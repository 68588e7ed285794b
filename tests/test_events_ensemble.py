"""EventEnsemble (hepgen.domains.events.ensemble): the mixture's images are, row by row, the drawn
member's images with that member's seed; the draw is uniform; one checkpoint round-trips through the
domain, the API and ``hepgen sample``; bad members and payloads are refused in one line."""

import numpy as np
import pytest
import torch

from _toy_events import toy_events, untrained_dcgan
from hepgen.api import load_generator
from hepgen.checkpoint import load_checkpoint, save_checkpoint
from hepgen.cli import main
from hepgen.domains.events import DOMAIN, EventEnsemble
from hepgen.domains.events.ensemble import _MEMBER_SEED_STRIDE


def _members(k, data):
    gens = []
    for s in range(k):
        torch.manual_seed(100 + s)  # different weights per member
        gens.append(untrained_dcgan(data))
    return gens


def test_mixture_rows_are_the_drawn_members_samples():
    data = toy_events(40, seed=1)
    members = _members(3, data)
    ens = EventEnsemble(members)
    out = ens.sample_like(data, seed=7)
    who = np.random.default_rng(7).integers(0, 3, len(data))  # the documented draw
    assert set(who.tolist()) == {0, 1, 2}
    for k, m in enumerate(members):
        idx = np.flatnonzero(who == k)
        want = m.sample(data.conditions[idx], seed=7 + _MEMBER_SEED_STRIDE * (k + 1)).images
        np.testing.assert_array_equal(out.images[idx], want)
    np.testing.assert_array_equal(out.conditions, data.conditions)
    assert out.attrs["generator"] == "hepgen ensemble of 3 (dcgan,dcgan,dcgan)" and out.attrs["seed"] == 7
    # the members differ, so the mixture is not any one of them
    assert not np.array_equal(members[0].sample_like(data, seed=7).images, members[1].sample_like(data, seed=7).images)
    np.testing.assert_array_equal(ens.sample_like(data, seed=7).images, out.images)  # a function of the seed


class _Constant:
    """A stand-in member whose every image is filled with its index: shows who drew each row."""

    def __init__(self, k, pre):
        self.k, self.preprocessor, self.meta, self.model = k, pre, {"eta_max": 2.5}, torch.nn.Linear(1, 1)
        self.model.family = "constant"

    def sample(self, conditions, seed=0, batch_size=256, path="fp32"):
        out = toy_events(1, seed=0)
        out.images = np.full((len(conditions), *self.preprocessor.image_shape), float(self.k), np.float32)
        return out


def test_member_draw_is_uniform_and_independent_of_the_conditions():
    pre = untrained_dcgan(toy_events(4, seed=2)).preprocessor
    ens = EventEnsemble([_Constant(k, pre) for k in range(4)])
    cond = np.tile([1200.0, 400.0, 0.0], (4000, 1))
    who = ens.sample(cond, seed=11).images[:, 0, 0, 0]
    counts = np.bincount(who.astype(int), minlength=4)
    # multinomial(4000, 1/4 each): standard deviation 27 events; 5 sigma
    assert counts.sum() == 4000 and np.all(np.abs(counts - 1000) < 140), counts
    cond[::2, 0] = 1000.0  # other conditions, same seed: the same members draw the same rows
    np.testing.assert_array_equal(ens.sample(cond, seed=11).images[:, 0, 0, 0], who)
    assert not np.array_equal(ens.sample(cond, seed=12).images[:, 0, 0, 0], who)


def test_ensemble_checkpoint_round_trip_domain_api_and_cli(tmp_path):
    data = toy_events(12, seed=3)
    members = _members(2, data)
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.pt")
        m.save(paths[-1])
    ens = EventEnsemble.from_checkpoints(paths)
    ens.save(tmp_path / "ens.pt")
    want = ens.sample_like(data, seed=4).images
    loaded = DOMAIN.from_payload(load_checkpoint(tmp_path / "ens.pt"), "ens.pt")
    assert isinstance(loaded, EventEnsemble) and len(loaded) == 2 and loaded.meta["ensemble_size"] == 2
    np.testing.assert_array_equal(loaded.sample_like(data, seed=4).images, want)
    np.testing.assert_array_equal(load_generator(tmp_path / "ens.pt").sample_like(data, seed=4).images, want)
    DOMAIN.write(tmp_path / "like.h5", data)
    assert main(["sample", str(tmp_path / "ens.pt"), "-o", str(tmp_path / "out.h5"), "--like",
                 str(tmp_path / "like.h5"), "--seed", "4"]) == 0
    np.testing.assert_array_equal(DOMAIN.read(tmp_path / "out.h5").images, want)


def test_bad_members_and_payloads(tmp_path):
    data, small = toy_events(8, seed=5), toy_events(8, seed=5, side=16)
    with pytest.raises(ValueError, match="expected at least one member generator, found none"):
        EventEnsemble([])
    with pytest.raises(ValueError, match=r"member 1: image shape \(1, 16, 16\), expected member 0's \(1, 64, 64\)"):
        EventEnsemble([untrained_dcgan(data), untrained_dcgan(small)])
    other = untrained_dcgan(data)
    other.meta["eta_max"] = 3.2
    with pytest.raises(ValueError, match="member 1: eta_max 3.2, expected member 0's 2.5"):
        EventEnsemble([untrained_dcgan(data), other])
    with pytest.raises(ValueError, match="e.pt: key 'members': expected a non-empty list of member checkpoints, "
                                         "found NoneType"):
        DOMAIN.from_payload({"kind": "events", "family": "ensemble"}, "e.pt")
    with pytest.raises(ValueError, match="e.pt: key 'kind': expected 'events', found 'jets'"):
        EventEnsemble.from_payload({"kind": "jets", "family": "ensemble", "members": []}, "e.pt")
    EventEnsemble([untrained_dcgan(data)]).save(tmp_path / "ens.pt")
    with pytest.raises(ValueError, match="ens.pt: key 'family': expected a single generator, found an ensemble"):
        EventEnsemble.from_checkpoints([tmp_path / "ens.pt"])
    payload = load_checkpoint(tmp_path / "ens.pt")
    payload["members"][0]["kind"] = "showers"
    save_checkpoint(tmp_path / "bad.pt", payload)
    with pytest.raises(ValueError, match=r"bad.pt \(member 0\): key 'kind': expected 'events', found 'showers'"):
        load_generator(tmp_path / "bad.pt")


def test_cli_ensemble_writes_the_mixture_and_refuses_other_kinds(tmp_path, capsys):
    data = toy_events(10, seed=6)
    paths = []
    for i, m in enumerate(_members(3, data)):
        paths.append(str(tmp_path / f"m{i}.pt"))
        m.save(paths[-1])
    assert main(["ensemble", *paths, "-o", str(tmp_path / "ens.pt")]) == 0
    assert "an equal-weight mixture of 3 events generators" in capsys.readouterr().out
    want = EventEnsemble.from_checkpoints(paths).sample_like(data, seed=9).images
    np.testing.assert_array_equal(load_generator(tmp_path / "ens.pt").sample_like(data, seed=9).images, want)
    assert main(["info", str(tmp_path / "ens.pt")]) == 0
    info = capsys.readouterr().out
    n = sum(p.numel() for p in load_generator(paths[0]).model.parameters())
    assert '"family": "ensemble"' in info and f'"parameters": {3 * n}' in info
    # one member, an ensemble as a member, a checkpoint of another kind: one line each, nothing written
    assert main(["ensemble", paths[0], "-o", str(tmp_path / "one.pt")]) == 2
    assert "expected two or more checkpoints, found 1" in capsys.readouterr().err
    assert main(["ensemble", paths[0], str(tmp_path / "ens.pt"), "-o", str(tmp_path / "two.pt")]) == 2
    assert "ens.pt: key 'family': expected a single generator, found an ensemble" in capsys.readouterr().err
    payload = load_checkpoint(paths[1])
    payload["kind"] = "jets"
    save_checkpoint(tmp_path / "jets.pt", payload)
    assert main(["ensemble", paths[0], str(tmp_path / "jets.pt"), "-o", str(tmp_path / "three.pt")]) == 2
    assert "jets.pt: key 'kind': expected 'events' (as " in capsys.readouterr().err
    assert not any((tmp_path / f).exists() for f in ("one.pt", "two.pt", "three.pt"))
