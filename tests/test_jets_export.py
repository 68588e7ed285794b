"""`hepgen export` of jet checkpoints (issue 21): the JetSampler graph, ONNX round trips, the check."""

import copy
import json
import types

import numpy as np
import pytest
import torch

from _toy_jets import toy_jets
from hepgen.cli import main
from hepgen.data.jets import JetData
from hepgen.domains.jets import JetGenerator, JetPreprocessor
from hepgen.domains.jets.preprocessing import close_momentum, momentum_along_axis
from hepgen.export_jets import (
    JET_ONNX_ATOL,
    JET_ONNX_RTOL,
    JetSampler,
    _order_swaps,
    check_jets_onnx,
    export_jets_onnx,
    random_jet_conditions,
)
from hepgen.models import build_model
from hepgen.models.base import MODEL_FAMILIES

P = 6


@pytest.fixture(scope="module")
def jets():
    return toy_jets(300, n_particles=P, seed=4)


def _generator(jets, family, closed=False, **hp) -> JetGenerator:
    torch.manual_seed(0)
    if closed:  # constituents that carry the jet's momentum: the preprocessor learns the closure
        jets = JetData(close_momentum(jets.particle_features), jets.jet_features, jets.jet_type)
    pre = JetPreprocessor(P, ["type", "pt", "eta"]).fit(jets)
    assert pre.momentum_closure == closed
    hparams = {**MODEL_FAMILIES[family].tiny_hparams(), **hp}
    model = build_model(family, n_features=3 * P, n_conditions=pre.n_conditions, **hparams).eval()
    with torch.no_grad():  # untrained but not trivial: output scale of order one
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    meta = {"pt_range": [800.0, 1200.0], "eta_range": [-2.0, 2.0], "jet_types": ["g", "t"]}
    return JetGenerator(model, pre, meta)


@pytest.mark.parametrize("family,closed", [("epic_gan", False), ("epic_fm", False), ("epic_fm", True)])
def test_jet_sampler_equals_generator_sample_on_the_same_noise(jets, family, closed):
    """The torch pre/post-processing of the graph repeats JetPreprocessor's numpy code (with the
    momentum closure where the preprocessor learnt it)."""
    gen = _generator(jets, family, closed=closed)
    sampler = JetSampler(gen).eval()
    rng = np.random.default_rng(2)
    inputs = random_jet_conditions(gen, 200, rng)
    pt, eta = inputs["jet_kinematics"][:, 0], inputs["jet_kinematics"][:, 1]
    ref = gen.sample(inputs["jet_type"], pt=pt, eta=eta, n=inputs["n"], seed=7, batch_size=1000)
    z = torch.randn(200, sampler.noise_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got, mask = sampler.call({**{k: torch.from_numpy(v) for k, v in inputs.items()}, "noise": z})
    np.testing.assert_allclose(got.numpy(), ref.particle_features, rtol=1e-4, atol=1e-5)
    assert np.array_equal(mask.numpy(), ref.mask)
    assert np.array_equal(mask.numpy().sum(axis=1), inputs["n"])
    along = momentum_along_axis(got.numpy())[inputs["n"] < P]
    assert np.allclose(along, 1.0, atol=1e-5) == closed
    # the padding noise is ignored: other numbers there change nothing
    z2 = z.clone().reshape(200, -1)
    z2[:, -2:] += 5.0  # the last slot's noise (epic_fm) / the jet's global noise (epic_gan)
    with torch.no_grad():
        other = sampler.call({**{k: torch.from_numpy(v) for k, v in inputs.items()}, "noise": z2})[0]
    full = inputs["n"] == P
    if family == "epic_fm":
        np.testing.assert_array_equal(other.numpy()[~full], got.numpy()[~full])
    assert not np.allclose(other.numpy()[full], got.numpy()[full])


def test_onnx_round_trip_flow_matching(jets, tmp_path):
    import onnx
    import onnxruntime as ort

    gen = _generator(jets, "epic_fm")
    path = tmp_path / "fm.onnx"
    info = export_jets_onnx(gen, path, checkpoint_sha256="abc", steps=2)
    assert info["inputs"] == ["n", "jet_type", "jet_kinematics", "noise"] and info["steps"] == 2
    model = onnx.load(path)
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["hepgen_steps"] == "2" and meta["hepgen_solver"] == "midpoint"
    assert meta["hepgen_checkpoint_sha256"] == "abc" and meta["hepgen_kind"] == "jets"
    assert json.loads(meta["hepgen_kinematics"]) == ["pt", "eta"]
    assert json.loads(meta["hepgen_jet_types"]) == ["g", "t"] and int(meta["hepgen_noise_dim"]) == 3 * P
    mult = json.loads(meta["hepgen_multiplicity"])
    assert set(mult) == {"g", "t"} and all(abs(sum(p) - 1) < 1e-9 and len(p) == P for p in mult.values())

    res = check_jets_onnx(path, gen, n=400, seed=1, steps=2)
    assert res["ok"] and res["n_outside_tolerance"] == 0 and res["mask_equal"] and res["padding_zero"], res
    assert res["rtol"] == JET_ONNX_RTOL and res["atol"] == JET_ONNX_ATOL

    # a batch size other than the example's, hand-made multiplicities 1, P and 3: masked slots are 0
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = np.array([1, P, 3], np.int64)
    feeds = {"n": n, "jet_type": np.array([0, 2, 2], np.int64),
             "jet_kinematics": np.array([[1000.0, 0.1], [900.0, -1.0], [1100.0, 1.5]], np.float32),
             "noise": np.random.default_rng(0).standard_normal((3, 3 * P)).astype(np.float32)}
    pf, mask = sess.run(["particle_features", "mask"], feeds)
    assert pf.shape == (3, P, 4) and mask.dtype == bool
    assert np.array_equal(mask, np.arange(P)[None, :] < n[:, None])
    assert np.array_equal(pf[..., 3], mask.astype(np.float32))
    assert (pf[~mask] == 0).all() and (pf[mask][:, 2] > 0).all()
    real_pt = [pf[j, : n[j], 2] for j in range(3)]
    assert all((np.diff(p) <= 0).all() for p in real_pt)  # sorted by decreasing pt_rel

    # the graph has the steps unrolled: a torch sampler at another step count gives other jets
    with torch.no_grad():
        one_step = JetSampler(gen, steps=1).call({k: torch.from_numpy(v) for k, v in feeds.items()})[0].numpy()
    assert np.abs(one_step - pf).max() > JET_ONNX_RTOL * np.abs(pf).max() + JET_ONNX_ATOL

    # a check that cannot pass: the graph against a generator with other weights
    other = copy.deepcopy(gen)
    with torch.no_grad():
        other.model.net.epic.local_out.bias.add_(0.5)
    bad = check_jets_onnx(path, other, n=100, seed=1, steps=2)
    assert not bad["ok"] and bad["n_outside_tolerance"] > 0


def test_cli_export_gan_checkpoint_with_check(jets, tmp_path, capsys):
    gen = _generator(jets, "epic_gan")
    gen.save(tmp_path / "gan.pt")
    out = tmp_path / "gan.onnx"
    assert main(["export", str(tmp_path / "gan.pt"), "--format", "onnx", "-o", str(out), "--check",
                 "--n-check", "300", "--steps", "3"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and '"ok": true' in text and '"padding_zero": true' in text
    assert "particle_features (B, 6, 4)" in text and "--steps ignored: the family samples in one pass" in text


@pytest.mark.slow
def test_onnx_round_trip_jet_transformer(jets, tmp_path):
    gen = _generator(jets, "jet_transformer_fm")
    export_jets_onnx(gen, tmp_path / "tr.onnx", steps=2)
    res = check_jets_onnx(tmp_path / "tr.onnx", gen, n=300, steps=2)
    assert res["ok"], res


def test_order_swaps_of_equal_pt_are_not_errors():
    ref = np.zeros((1, 3, 4))
    ref[0, :, 3] = [1, 1, 0]
    ref[0, 0, :3] = [0.1, 0.2, 0.4]
    ref[0, 1, :3] = [-0.3, 0.05, 0.4]  # the same pt_rel: either order is a valid sort
    got = ref.copy()
    got[0, [0, 1]] = ref[0, [1, 0]]
    bad = np.array([[True, True, False]])
    assert _order_swaps(got, ref, bad).tolist() == [[True, True, False]]
    got[0, 0, 0] += 0.01  # not a swap: that particle is nowhere in the reference
    assert _order_swaps(got, ref, bad).tolist() == [[False, True, False]]


def test_bad_inputs_name_the_problem(jets, tmp_path, capsys):
    with pytest.raises(ValueError, match="expected a jets generator"):
        JetSampler(types.SimpleNamespace(kind="showers"))
    gen = _generator(jets, "epic_fm")
    with pytest.raises(ValueError, match="steps: expected an integer >= 1"):
        JetSampler(gen, steps=0)
    # the checkpoint's kind picks the code: a kind without an export is refused in one line
    payload = {"hepgen_version": "0", "kind": "events", "family": "x", "hparams": {}, "model": {},
               "preprocessing": {}, "geometry": None, "meta": {}}
    from hepgen.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ev.pt", payload)
    assert main(["export", str(tmp_path / "ev.pt"), "-o", str(tmp_path / "ev.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "knows showers and jets checkpoints, found 'events'" in err
