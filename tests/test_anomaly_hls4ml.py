"""hls4ml's bit-accurate C++ emulation (g++) against hepgen's numpy fixed-point emulation."""

import pytest

hls4ml = pytest.importorskip("hls4ml")

import numpy as np
import torch

from hepgen.domains.anomaly.deploy import FixedPointScorer, hls4ml_encode, score_module
from hepgen.models import build_model


def test_hls4ml_matches_numpy_emulation_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    model = build_model("l1_vae", n_features=57, n_conditions=0, hidden=[16, 8], latent_dim=3)
    path = score_module(model)
    x = (np.random.default_rng(0).normal(size=(100, 57)) * 0.7).astype(np.float32)
    out = hls4ml_encode(path, x, 12, 5, tmp_path / "hls")
    emu = FixedPointScorer(path, 12, 5).encode(x)
    assert out.shape == (100, 6)
    np.testing.assert_array_equal(out, emu)
    with torch.no_grad():
        ref = path.layers(torch.from_numpy(x)).double().numpy()
    assert 0 < np.abs(out - ref).max() < 0.5  # quantised, so not float, but close
