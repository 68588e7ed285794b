"""``fill_silent`` and ``trigger_vem`` as options of a run (adapter state), from Python and ``hepgen refine train``."""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.cli import build_parser, main
from hepgen.data.traces import write_traces
from hepgen.refine.adapters import get_adapter
from hepgen.refine.options import set_adapter_options
from hepgen.refine.refiner import load_refiner
from hepgen.simulate.auger_toy import simulate_auger

TINY = ["--epochs", "1", "--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]


def _state():
    return {"kind": "traces", "critic_min_vem": 0.0, "noise_vem": None, "layout": {"grid": [9, 9], "n_t": 80},
            "labels": [], "scale_vem": 0.1}


def test_fill_silent_and_trigger_set_the_state_and_the_network_choice():
    st = set_adapter_options(_state(), {"fill_silent": True, "trigger_vem": 3})
    assert st["fill_silent"] is True and st["trigger_vem"] == 3.0
    a = get_adapter("traces")
    arch = a.architecture(st)
    assert arch["fill_silent"] is True and arch["trigger_vem"] == 3.0
    assert a.keep_mask(simulate_auger(2, "sim", seed=1), st) is None        # every station may change
    only_rule = set_adapter_options(_state(), {"trigger_vem": 3.0})
    assert a.architecture(only_rule)["fill_silent"] is False and a.architecture(only_rule)["trigger_vem"] == 3.0


def test_fill_silent_refusals():
    with pytest.raises(ValueError, match=r"^refiner option 'fill_silent': needs the trigger threshold trigger_vem > 0 "
                                         r"VEM, found None$"):
        set_adapter_options(_state(), {"fill_silent": True})
    with pytest.raises(ValueError, match=r"^refiner option 'fill_silent': expected true or false, found 1$"):
        set_adapter_options(_state(), {"fill_silent": 1, "trigger_vem": 3.0})
    with pytest.raises(ValueError, match=r"^refiner option 'trigger_vem': expected a number >= 0, found -1$"):
        set_adapter_options(_state(), {"trigger_vem": -1})
    with pytest.raises(ValueError, match="the adapter of kind 'showers' has no such option"):
        set_adapter_options({"kind": "showers"}, {"fill_silent": True})


def test_cli_fill_silent_and_trigger_reach_the_checkpoint(tmp_path):
    a = build_parser().parse_args(["refine", "train", "s", "d", "-o", "r"])
    assert a.fill_silent is False and a.trigger_vem is None
    for name, seed in (("sim", 1), ("data", 2)):
        write_traces(tmp_path / f"{name}.h5", simulate_auger(12, name, seed=seed))
    adapter = get_adapter("traces")
    before = (adapter.fill_silent, adapter.trigger_vem)
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 *TINY, "--fill-silent", "--trigger-vem", "3"]) == 0
    model, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["preprocessing"]["fill_silent"] is True and payload["preprocessing"]["trigger_vem"] == 3.0
    assert model.fill_silent and model.trigger_vem == 3.0
    assert (adapter.fill_silent, adapter.trigger_vem) == before     # the registered adapter is not changed
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "r2"),
                 *TINY, "--fill-silent"]) != 0                          # no threshold: refused
    assert np.isfinite(payload["meta"]["history"]["critic_w"][0])
