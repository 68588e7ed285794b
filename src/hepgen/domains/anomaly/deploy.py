"""Deployment as a Level-1 trigger needs it: fixed-point precision, size, MACs, ONNX latency.

What a trigger FPGA runs is the *score path* only: for the VAE the encoder up to the latent
mean and ``|μ|²`` (AXOL1TL's score), for the AE the encoder, decoder and the MSE.
:func:`score_module` builds that path as a plain ``torch.nn.Module`` ``(B, 57) → (B,)``.

Fixed point.  hls4ml implements a network with Xilinx ``ap_fixed<W, I>`` numbers: W bits, I
of them integer bits including the sign, so the resolution is ``2^-(W-I)`` and the range
``[-2^(I-1), 2^(I-1) - 2^-(W-I)]``; by default hls4ml truncates (``AP_TRN``) and wraps on
overflow (``AP_WRAP``).  :func:`quantize_fixed` reproduces these number formats in numpy and
:class:`FixedPointScorer` runs the score path with every weight, bias, layer output and
activation output rounded to ``ap_fixed<W, I>`` (one precision for everything, as hls4ml's
``default_precision`` with ``granularity="model"``, including its accumulator: every product
``a·w`` is cast to the precision and summed in it, as hls4ml's latency dense layer does;
LeakyReLU's α is stored in the precision too).  This is a numerical
emulation written here because hls4ml's own bit-accurate C++ emulation
(:func:`hls4ml_encode`, optional extra ``hepgen[anomaly]``) needs a g++ compile per model and
precision (tens of seconds each); the two are compared in ``docs/anomaly.md``.  Without
Vivado/Vitis HLS there is no synthesis here: no resource or latency report from the FPGA
tools — only the C++ emulation of the arithmetic.

ONNX.  :func:`export_onnx` writes the float score path; :func:`onnx_latency` times
``onnxruntime`` on one CPU thread at batch size 1.

Example:
    >>> quantize_fixed(np.array([0.30, -0.30, 40.0]), 8, 3).tolist()   # step 1/32; 40 wraps (mod 8) to 0
    [0.28125, -0.3125, 0.0]
    >>> quantize_fixed(np.array([0.30, -0.30, 40.0]), 8, 3, rounding="RND", overflow="SAT").tolist()
    [0.3125, -0.3125, 3.96875]
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hepgen._extras import require_extra
from hepgen._io import atomic_path
from hepgen.domains.anomaly.evaluate import auc, efficiency_at_fpr

try:
    import hls4ml
except ImportError:  # optional extra
    hls4ml = None

try:
    import onnxruntime
except ImportError:  # optional
    onnxruntime = None

__all__ = [
    "DEFAULT_PRECISIONS",
    "FixedPointScorer",
    "count_macs",
    "export_onnx",
    "hls4ml_encode",
    "onnx_latency",
    "precision_scan",
    "quantize_fixed",
    "score_module",
]

DEFAULT_PRECISIONS = ((16, 6), (14, 6), (12, 5), (10, 4), (8, 3))


def quantize_fixed(x, width: int, integer: int, rounding: str = "TRN", overflow: str = "WRAP") -> np.ndarray:
    """Round ``x`` to ``ap_fixed<width, integer>`` (signed) values, as float64.

    Arguments:
        x: array of reals.
        width, integer: W and I (I counts the sign bit; may exceed W or be negative as in
            Xilinx's types, but here ``1 <= integer <= width`` is required).
        rounding: ``"TRN"`` (towards −∞, AP_TRN) or ``"RND"`` (to nearest, ties up; AP_RND).
        overflow: ``"WRAP"`` (two's-complement wrap, AP_WRAP) or ``"SAT"`` (clip, AP_SAT).
    """
    width, integer = int(width), int(integer)
    if not 1 <= integer <= width <= 64:
        raise ValueError(f"fixed-point type: expected 1 <= I <= W <= 64, found ap_fixed<{width},{integer}>")
    if rounding not in ("TRN", "RND") or overflow not in ("WRAP", "SAT"):
        raise ValueError(f"fixed-point modes: expected rounding TRN/RND and overflow WRAP/SAT, found "
                         f"{rounding!r}/{overflow!r}")
    frac = width - integer
    scaled = np.asarray(x, dtype=np.float64) * 2.0**frac
    q = np.floor(scaled) if rounding == "TRN" else np.floor(scaled + 0.5)
    lo, hi = -(2.0 ** (width - 1)), 2.0 ** (width - 1) - 1
    if overflow == "SAT":
        q = np.clip(q, lo, hi)
    else:
        q = np.mod(q - lo, 2.0**width) + lo
    return q / 2.0**frac


class _ScorePath(nn.Module):
    def __init__(self, layers: nn.Sequential, kind: str, latent_dim: int = 0, decoder: nn.Sequential | None = None):
        super().__init__()
        self.layers, self.kind, self.latent_dim, self.decoder = layers, kind, int(latent_dim), decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(x)
        if self.kind == "mu2":
            return h[:, : self.latent_dim].square().sum(dim=1)
        return (self.decoder(h) - x).square().mean(dim=1)


def score_module(model, score: str = "auto") -> nn.Module:
    """The score path of an ``l1_vae`` (``"mu2"``: encoder → μ → Σμ²) or ``l1_ae``
    (``"mse"``: encoder → decoder → mean squared error; ``"mu2"``: the code's squared norm).

    ``score="auto"``: ``mu2`` for the VAE, ``mse`` for the AE.  Returns an ``nn.Module``
    ``x: (B, 57) → (B,)`` in eval mode.
    """
    family = getattr(model, "family", None)
    if family not in ("l1_vae", "l1_ae"):
        raise ValueError(f"score_module: expected an l1_vae or l1_ae model, found family {family!r}")
    if score == "auto":
        score = "mu2" if family == "l1_vae" else "mse"
    if score not in ("mu2", "mse") or (family == "l1_vae" and score != "mu2"):
        raise ValueError(f"score_module: score for {family}: expected 'mu2'{' or mse' if family == 'l1_ae' else ''}, "
                         f"found {score!r}")
    if family == "l1_vae":
        mod = _ScorePath(model.encoder, "mu2", latent_dim=model.latent_dim)
    else:
        mod = _ScorePath(model.encoder, score, latent_dim=model.latent_dim, decoder=model.decoder)
    return mod.eval()


def _linear_layers(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def count_macs(path: nn.Module) -> dict:
    """Multiply-accumulates per event and parameters of a score path (dense layers only).

    >>> count_macs(nn.Sequential(nn.Linear(57, 32), nn.ReLU(), nn.Linear(32, 6)))
    {'macs': 2016, 'parameters': 2054, 'layers': 2}
    """
    lin = _linear_layers(path)
    return {"macs": int(sum(m.in_features * m.out_features for m in lin)),
            "parameters": int(sum(p.numel() for m in lin for p in m.parameters())), "layers": len(lin)}


class FixedPointScorer:
    """Numpy emulation of a score path in ``ap_fixed<W, I>`` (see the module docstring).

    Arguments:
        path: a :func:`score_module`.
        width, integer: the precision of weights, biases, inputs, layer and activation outputs.
        rounding, overflow: the modes of :func:`quantize_fixed` (hls4ml defaults TRN, WRAP).
    """

    def __init__(self, path: nn.Module, width: int, integer: int, rounding: str = "TRN", overflow: str = "WRAP"):
        self.path, self.width, self.integer = path, int(width), int(integer)
        self.rounding, self.overflow = rounding, overflow
        quantize_fixed(0.0, width, integer, rounding, overflow)  # validates the type

    def _q(self, a):
        return quantize_fixed(a, self.width, self.integer, self.rounding, self.overflow)

    def _dense(self, h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        # hls4ml's dense_latency: every product a·w is cast to accum_t, the sum accumulates in
        # accum_t (here = the layer precision: hls4ml's default with granularity "model"), then
        # the bias is added and the result cast to result_t.  Chunked over events to bound memory.
        out = np.empty((len(h), w.shape[0]))
        for i in range(0, len(h), 1024):
            prods = self._q(h[i:i + 1024, :, None] * w.T[None])
            acc = prods[:, 0]
            for k in range(1, prods.shape[1]):
                acc = self._q(acc + prods[:, k])
            out[i:i + 1024] = self._q(acc + b)
        return out

    def _run(self, seq: nn.Sequential, h: np.ndarray) -> np.ndarray:
        for layer in seq:
            if isinstance(layer, nn.Linear):
                w = self._q(layer.weight.detach().double().numpy())
                b = self._q(layer.bias.detach().double().numpy())
                h = self._dense(h, w, b)
            elif isinstance(layer, nn.LeakyReLU):
                alpha = float(self._q(layer.negative_slope))  # hls4ml stores α in the layer precision
                h = np.where(h > 0, h, self._q(alpha * h))
            else:
                with torch.no_grad():
                    h = self._q(layer(torch.from_numpy(h)).numpy())
        return h

    def encode(self, x: np.ndarray) -> np.ndarray:
        """The fixed-point output of the encoder's dense stack, ``(N, 2K)`` (VAE) or ``(N, K)`` (AE)."""
        return self._run(self.path.layers, self._q(np.asarray(x, dtype=np.float64)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x: (N, 57)`` scaled features → ``(N,)`` scores in fixed point (float64 values)."""
        p = self.path
        h = self.encode(x)
        if p.kind == "mu2":
            return self._q((self._q(h[:, : p.latent_dim] ** 2)).sum(axis=1))
        x_q = self._q(np.asarray(x, dtype=np.float64))
        rec = self._run(p.decoder, h)
        return self._q(self._q((rec - x_q) ** 2).mean(axis=1))


@torch.no_grad()
def _float_scores(path: nn.Module, x: np.ndarray) -> np.ndarray:
    return path(torch.from_numpy(np.asarray(x, dtype=np.float32))).double().numpy()


def precision_scan(path: nn.Module, x_background: np.ndarray, x_signals: Mapping[str, np.ndarray],
                   precisions: Sequence[tuple[int, int]] = DEFAULT_PRECISIONS, fpr: float = 1e-4,
                   rounding: str = "TRN", overflow: str = "WRAP") -> dict:
    """AUC and efficiency at ``fpr`` per signal for float and each ``ap_fixed<W, I>`` precision.

    Arguments:
        path: a :func:`score_module`.
        x_background, x_signals: scaled features ``(N, 57)`` (background; name → signal).
        precisions: ``(W, I)`` pairs.

    Returns:
        ``{"float": {...}, "ap_fixed<W,I>": {"signals": {name: {"auc", "eff", "auc_loss"}},
        "max_auc_loss", "weight_bits", "score_agreement"}, "macs", "parameters"}`` where
        ``score_agreement`` is the Spearman rank correlation of fixed-point and float
        background scores (ties from coarse precision lower it).
    """
    from scipy.stats import spearmanr

    def figures(fn) -> dict:
        b = fn(x_background)
        out = {}
        for name, xs in x_signals.items():
            s = fn(xs)
            out[name] = {"auc": auc(b, s), "eff": efficiency_at_fpr(b, s, fpr)["efficiency"]}
        return b, out

    macs = count_macs(path)
    b_float, ref = figures(lambda x: _float_scores(path, x))
    res: dict = {"fpr": float(fpr), "macs": macs["macs"], "parameters": macs["parameters"],
                 "float": {"signals": ref, "weight_bits": 32 * macs["parameters"]}}
    for w, i in precisions:
        fx = FixedPointScorer(path, w, i, rounding, overflow)
        b_q, sig = figures(fx)
        for name in sig:
            sig[name]["auc_loss"] = ref[name]["auc"] - sig[name]["auc"]
        rho = spearmanr(b_float, b_q).statistic if np.ptp(b_q) > 0 else 0.0
        res[f"ap_fixed<{w},{i}>"] = {"signals": sig, "max_auc_loss": max(v["auc_loss"] for v in sig.values()),
                                     "weight_bits": int(w) * macs["parameters"],
                                     "score_agreement": float(rho) if np.isfinite(rho) else None}
    return res


def hls4ml_encode(path: nn.Module, x: np.ndarray, width: int, integer: int, output_dir: str | os.PathLike,
                  io_type: str = "io_parallel") -> np.ndarray:
    """Convert the encoder's dense stack of a score path with hls4ml (PyTorch frontend, Vivado
    backend, ``granularity="model"``, every type ``ap_fixed<width, integer>``), compile its
    bit-accurate C++ emulation with g++, and run it on ``x`` (quantised to the input type).

    Returns ``(N, 2K)`` (VAE: μ then log σ²) or ``(N, K)`` (AE code): the same numbers as
    :meth:`FixedPointScorer.encode` (tests/test_anomaly_hls4ml.py checks they agree bit for
    bit).  No synthesis (no Vivado/Vitis here): no resource or latency estimate.

    Raises:
        ImportError: hls4ml is not installed (``pip install 'hepgen[anomaly]'``).
    """
    if hls4ml is None:
        raise ImportError("hls4ml_encode needs the optional extra: pip install 'hepgen[anomaly]'")
    seq = nn.Sequential(*path.layers).eval()
    prec = f"ap_fixed<{int(width)},{int(integer)}>"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        config = hls4ml.utils.config_from_pytorch_model(seq, input_shape=(int(x.shape[1]),), granularity="model",
                                                        default_precision=prec, backend="Vivado")
        model = hls4ml.converters.convert_from_pytorch_model(seq, hls_config=config, output_dir=str(output_dir),
                                                             backend="Vivado", io_type=io_type)
        model.compile()
    xq = quantize_fixed(x, width, integer)
    return np.asarray(model.predict(np.ascontiguousarray(xq)), dtype=np.float64).reshape(len(x), -1)


def export_onnx(path: nn.Module, output: str | os.PathLike, n_features: int = 57) -> Path:
    """Write the float score path as ONNX (input ``x: (batch, 57)``, output ``score: (batch,)``), atomically."""
    require_extra("onnx", "ONNX export (onnx, onnxscript)", ("onnx", "onnxscript"))  # torch's dynamo exporter
    output = Path(output)
    example = torch.zeros(1, int(n_features))
    with atomic_path(output) as tmp, warnings.catch_warnings():
        # warnings raised inside torch.export/onnxscript about their own internals
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        torch.onnx.export(path, (example,), tmp, input_names=["x"], output_names=["score"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1 << 20)}}, dynamo=True,
                          verbose=False)
    return output


def onnx_latency(onnx_path: str | os.PathLike, x: np.ndarray, n_runs: int = 2000, threads: int = 1) -> dict:
    """onnxruntime CPU latency at batch size 1 (µs: median, 90 %, 99 %) and its scores of ``x``.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    if onnxruntime is None:
        require_extra("onnx", "onnx_latency (onnxruntime)")
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    sess = onnxruntime.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(x, dtype=np.float32)
    scores = sess.run(["score"], {"x": x})[0]
    one = [x[i % len(x)][None] for i in range(min(len(x), 256))]
    for r in range(100):  # warm-up
        sess.run(["score"], {"x": one[r % len(one)]})
    times = np.empty(int(n_runs))
    for r in range(int(n_runs)):
        t0 = time.perf_counter()
        sess.run(["score"], {"x": one[r % len(one)]})
        times[r] = time.perf_counter() - t0
    us = times * 1e6
    return {"median_us": float(np.median(us)), "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "n_runs": int(n_runs), "threads": int(threads),
            "scores": scores}
