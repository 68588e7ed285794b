"""One check shared by the refiner-option tests: training interrupted after one epoch and resumed
from its checkpoint ends with exactly the weights of an uninterrupted two-epoch run."""

from __future__ import annotations

import torch

from hepgen.refine.refiner import RefinerConfig, train_refiner


def assert_resume_is_exact(tmp_path, x, y, x_data, y_data, options: dict, **train_kw) -> dict:
    """Train 2 epochs at once (``a.pt``) and 1 + 1 epochs resumed (``b.pt``) with ``RefinerConfig(**options)``
    and the keyword arguments ``train_kw`` of :func:`train_refiner`; assert equal weights (rtol = atol = 0)
    and the resumed history's epochs [1, 2].  Returns the uninterrupted run's checkpoint payload."""
    full, _ = train_refiner(x, y, x_data, y_data, RefinerConfig(**options, epochs=2), checkpoint=tmp_path / "a.pt",
                            progress=False, **train_kw)
    train_refiner(x, y, x_data, y_data, RefinerConfig(**options, epochs=1), checkpoint=tmp_path / "b.pt",
                  progress=False, **train_kw)
    resumed, hist = train_refiner(x, y, x_data, y_data, RefinerConfig(**options, epochs=2),
                                  checkpoint=tmp_path / "b.pt", progress=False, **train_kw)
    assert hist["epoch"] == [1, 2]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    return torch.load(tmp_path / "a.pt", weights_only=False)
