"""The l1 domain and its models: the trainer contract by hand, the injected-anomaly toy,
save/load, quantised-vs-float agreement and ONNX."""

import numpy as np
import pytest
import torch

from _toy_l1 import toy_anomaly, toy_background
from hepgen.config import TrainConfig
from hepgen.data.l1 import L1Events
from hepgen.domains.anomaly import DOMAIN, L1Scaler, load_detector
from hepgen.domains.anomaly.deploy import (
    FixedPointScorer,
    count_macs,
    export_onnx,
    onnx_latency,
    precision_scan,
    quantize_fixed,
    score_module,
)
from hepgen.domains.anomaly.evaluate import evaluate_detector
from hepgen.domains.base import domain_of_data, get_domain
from hepgen.models import build_model


def _train(family: str, data: L1Events, epochs: int = 40, seed: int = 0, **model):
    torch.manual_seed(seed)
    config = TrainConfig(family=family, model=model, batch_size=128, lr=3e-3, seed=seed)
    DOMAIN.check(data, config)
    pre = DOMAIN.fit_preprocessor(data, config)
    net = DOMAIN.build_model(config, data, pre)
    x = torch.from_numpy(DOMAIN.features(pre, data, np.random.default_rng(seed)))
    c = torch.from_numpy(DOMAIN.conditions(pre, data))
    opts = net.configure_optimizers(config.lr, 0.0)
    rng = np.random.default_rng(seed)
    first = float((net.anomaly_outputs(x, c)["recon"] - x).square().mean())
    step = 0
    net.train()
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // config.batch_size)):
            net.training_step(x[idx], c[idx], opts, step, 5.0)
            step += 1
    net.eval()
    last = float((net.anomaly_outputs(x, c)["recon"] - x).square().mean())
    return DOMAIN.generator(net, pre, data, DOMAIN.meta(data, config)), first, last


@pytest.fixture(scope="module")
def bkg():
    return toy_background(1200, seed=0)


@pytest.fixture(scope="module")
def trained(bkg):
    return {f: _train(f, bkg) for f in ("l1_ae", "l1_vae")}


def test_domain_registry_and_checks(bkg):
    assert get_domain("l1") is DOMAIN and domain_of_data(bkg) is DOMAIN
    assert DOMAIN.default_family == "l1_vae" and DOMAIN.default_conditions == []
    with pytest.raises(ValueError, match=r"TrainConfig: key 'family': 'vae' generates showers, the data are l1; "
                                         r"families for l1: \['l1_ae', 'l1_vae'\]"):
        DOMAIN.check(bkg, TrainConfig(family="vae"))
    with pytest.raises(ValueError, match="need at least 2 training events, found 1"):
        DOMAIN.check(bkg.subset([0]), TrainConfig(family="l1_ae"))
    with pytest.raises(ValueError, match=r"TrainConfig: key 'conditions': the l1 models are unconditional"):
        DOMAIN.check(bkg, TrainConfig(family="l1_ae", conditions=["pt"]))


def test_scaler_padding_state_and_inverse(bkg):
    pre = L1Scaler().fit(bkg.objects)
    x = pre.transform(bkg.objects)
    assert x.shape == (len(bkg), 57) and x.dtype == np.float32
    pad = np.repeat(~bkg.mask, 3, axis=1)
    assert np.all(x[pad] == 0)                                         # padding stays 0
    assert np.all(x[:, 0::3][bkg.mask] > 0)                             # real objects have pT' > 0
    assert np.abs(x).max() < 5
    again = DOMAIN.preprocessor_from_state(pre.state_dict())
    np.testing.assert_array_equal(again.transform(bkg.objects), x)
    np.testing.assert_allclose(pre.inverse_transform(x), bkg.objects, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"L1 preprocessing state: key 'log_pt_mean': expected a list of 4 numbers, "
                                         r"found None"):
        L1Scaler.from_state({})
    with pytest.raises(ValueError, match=r"L1Scaler: expected objects of shape \(N, 19, 3\), found \(3, 57\)"):
        pre.transform(np.zeros((3, 57)))


def test_models_learn_and_models_refuse_conditions(trained):
    for family, (_, first, last) in trained.items():
        assert last < 0.5 * first, (family, first, last)  # the reconstruction MSE halves at least
    with pytest.raises(ValueError, match=r"l1_ae hparam 'n_conditions': expected 0 \(unconditional\), found 2"):
        build_model("l1_ae", n_features=57, n_conditions=2)
    vae = build_model("l1_vae", n_features=57, n_conditions=0, latent_dim=2)
    assert "decoder_sigma" not in vae.hparams and build_model("l1_vae", **vae.hparams).latent_dim == 2


@pytest.mark.parametrize("family", ["l1_ae", "l1_vae"])
def test_injected_anomaly_ranks_first(trained, family):
    gen = trained[family][0]
    test = toy_background(500, seed=1)
    both = L1Events.concatenate([test, toy_anomaly()])
    scores = gen.scores(both)
    s = scores["mse"]
    assert np.argmax(s) == len(both) - 1, (family, s[-1], np.sort(s)[-3:])
    # The latent scores (VAE KL and |mu|^2) do NOT rank this anomaly first: the encoder maps the
    # TeV event, far outside the training range, close to the latent origin (|mu|^2 below the
    # background's 99 % quantile, asserted below).  Latent scores rely on the encoder's
    # extrapolation, which nothing constrains; docs/anomaly.md reports this and what the
    # Pythia signals show.  Pinned here so that a change of behaviour is noticed.
    if family == "l1_vae":
        assert scores["mu2"][-1] < np.quantile(scores["mu2"][:-1], 0.99)


@pytest.mark.parametrize("family", ["l1_ae", "l1_vae"])
def test_save_load_sample_and_selection(trained, tmp_path, family):
    gen = trained[family][0]
    gen.meta.update(epoch=3, step=7)
    gen.save(tmp_path / "best.pt", trainer_state={"step": 7})
    back = load_detector(tmp_path / "best.pt")
    test = toy_background(50, seed=2)
    for k, v in gen.scores(test).items():
        np.testing.assert_allclose(back.scores(test)[k], v, rtol=1e-6)
    assert back.meta["epoch"] == 3
    payload = torch.load(tmp_path / "best.pt", weights_only=True)
    assert payload["kind"] == "l1" and payload["family"] == family
    with pytest.raises(ValueError, match=r"x.pt: key 'kind': expected 'l1', found 'jets'"):
        DOMAIN.from_payload({**payload, "kind": "jets"}, "x.pt")
    fake = gen.sample_like(test, seed=1)
    assert isinstance(fake, L1Events) and len(fake) == 50 and fake.processes == ("generated",)
    assert np.all(fake.objects[~fake.mask] == 0)
    sel = DOMAIN.selection_score(gen, test, seed=0)
    assert sel == pytest.approx(float(np.mean(gen.scores(test)["mse"])))


def test_evaluate_files_on_toy(trained, tmp_path):
    from hepgen.data.l1 import write_l1

    gen = trained["l1_vae"][0]
    gen.save(tmp_path / "best.pt")
    write_l1(tmp_path / "bkg.h5", toy_background(2000, seed=5))
    anomalies = L1Events(np.repeat(toy_anomaly().objects, 20, axis=0), np.zeros(20), ("tev",))
    write_l1(tmp_path / "sig.h5", anomalies)
    m = DOMAIN.evaluate_files(tmp_path / "bkg.h5", tmp_path / "sig.h5", tmp_path / "out",
                              checkpoint=tmp_path / "best.pt", n_bootstrap=5)
    sig = m["scores"]["mse"]["signals"]["tev"]
    assert sig["auc"] == pytest.approx(1.0) and sig["eff@0.001"]["efficiency"] == 1.0
    assert set(m["scores"]) == {"mse", "mu2", "kl", "combined"}
    assert (tmp_path / "out" / "report.html").is_file()
    with pytest.raises(ValueError, match=r"l1 files are evaluated against a trained detector: hepgen evaluate-anomaly CHECKPOINT"):
        DOMAIN.evaluate_files(tmp_path / "bkg.h5", tmp_path / "sig.h5", tmp_path / "out")
    # the OOD check: generated events far from the background are flagged, the background itself is not
    m = evaluate_detector(gen, toy_background(1000, seed=6), {"tev": anomalies},
                          generated={"same": toy_background(1000, seed=7), "bad": anomalies}, n_bootstrap=0)
    assert m["ood"]["bad"]["0.99"]["fraction"] == 1.0 and m["ood"]["bad"]["0.99"]["ratio"] == pytest.approx(100.0)
    assert m["ood"]["same"]["0.99"]["ratio"] < 3.0
    with pytest.raises(ValueError, match="evaluate_detector: expected at least one signal sample, found none"):
        evaluate_detector(gen, toy_background(10), {})


def test_fixed_point_emulation_by_hand():
    np.testing.assert_allclose(quantize_fixed([1.3, -1.3, 100.0, -100.0], 6, 3, overflow="SAT"),
                               [1.25, -1.375, 3.875, -4.0])  # step 1/8, range [-4, 3.875]
    np.testing.assert_allclose(quantize_fixed([5.0], 6, 3), [-3.0])  # 5 wraps to 5 - 8
    np.testing.assert_allclose(quantize_fixed([0.1875], 6, 3, rounding="RND"), [0.25])  # 1.5 steps → 2
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[0.30, -0.70]])
        lin.bias[:] = torch.tensor([0.1])
    path = score_module.__globals__["_ScorePath"](torch.nn.Sequential(lin), "mu2", latent_dim=1)
    # ap_fixed<8,3>: w → 0.28125, -0.71875; b → 0.09375; x = (1, 1): 0.28125 - 0.71875 + 0.09375 = -0.34375
    # → square 0.1181640625 → truncated to 3/32 = 0.09375
    out = FixedPointScorer(path, 8, 3)(np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(out, [0.09375])
    with pytest.raises(ValueError, match=r"fixed-point type: expected 1 <= I <= W <= 64, found ap_fixed<8,9>"):
        quantize_fixed(1.0, 8, 9)


def test_quantised_vs_float_agreement(trained):
    """At ap_fixed<16,6> (hls4ml semantics: every product truncated to 2^-10, so a bias of about
    -2^-11 per product, 57 + 32 + 16 products deep) the fixed-point |mu|^2 agrees with float to
    5 % of the largest background score, ranks events alike (Spearman > 0.99), and the MSE-free
    latent score's AUC for the anomaly moves by less than 0.01."""
    gen = trained["l1_vae"][0]
    path = score_module(gen.model)
    test = toy_background(400, seed=3)
    x = gen.preprocessor.transform(test.objects)
    with torch.no_grad():
        ref = path(torch.from_numpy(x)).double().numpy()
    q = FixedPointScorer(path, 16, 6)(x)
    assert np.max(np.abs(q - ref)) < 0.05 * np.max(ref)
    hard = toy_background(400, seed=9).objects.copy()
    hard[..., 0] *= 3.0                                   # a "signal": every object 3× harder
    xs = gen.preprocessor.transform(hard)
    scan = precision_scan(path, x, {"hard": xs}, precisions=[(16, 6), (8, 3)], fpr=1e-2)
    assert scan["float"]["signals"]["hard"]["auc"] > 0.6
    assert abs(scan["ap_fixed<16,6>"]["signals"]["hard"]["auc_loss"]) <= 0.01
    assert scan["ap_fixed<16,6>"]["score_agreement"] > 0.99
    assert scan["macs"] == count_macs(path)["macs"] == 57 * 32 + 32 * 16 + 16 * 6
    assert scan["ap_fixed<8,3>"]["weight_bits"] == 8 * scan["parameters"]


def test_onnx_matches_torch(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    for family in ("l1_vae",):  # one family: the dynamo export takes ~8 s per model
        gen = trained[family][0]
        path = score_module(gen.model)
        x = gen.preprocessor.transform(toy_background(64, seed=4).objects)
        export_onnx(path, tmp_path / f"{family}.onnx")
        r = onnx_latency(tmp_path / f"{family}.onnx", x, n_runs=50)
        with torch.no_grad():
            ref = path(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(r["scores"], ref, rtol=1e-5, atol=1e-6)
        assert r["median_us"] > 0
    with pytest.raises(ValueError, match=r"score_module: expected an l1_vae or l1_ae model, found family 'vae'"):
        score_module(build_model("vae", n_features=3, n_conditions=1))
