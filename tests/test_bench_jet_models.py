"""benchmarks/bench_jet_models.py: the W1 batch size per type, the selection curve read from the
training log, and the table's substructure means and per-type Pythia rates (issue 21: five jet types)."""

import numpy as np
import pytest

from _benchmarks import load_benchmark
from hepgen.data.jets import JetData


def _jets(types):
    pf = np.zeros((len(types), 3, 4), np.float32)
    pf[:, 0] = (0.0, 0.0, 1.0, 1.0)
    return JetData(pf, jet_type=np.asarray(types, np.int8))


def test_eval_sample_size_is_the_rarest_types_count_capped():
    bench = load_benchmark("bench_jet_models")
    # 4 g, 2 q, 3 t, 5 w, 3 z: the per-type metrics draw 2 jets per batch (the rarest type), not len // 2 = 8
    jets = _jets([0] * 4 + [1] * 2 + [2] * 3 + [3] * 5 + [4] * 3)
    assert bench.eval_sample_size(jets) == 2
    assert bench.eval_sample_size(_jets([0] * 7 + [2] * 9)) == 7
    assert bench.eval_sample_size(_jets([0] * 7 + [2] * 9), cap=5) == 5


def test_select_types_keeps_the_named_types_and_names_the_file_when_one_is_missing():
    bench = load_benchmark("bench_jet_models")
    jets = _jets([0, 2, 3, 2, 0])
    tops = bench.select_types(jets, ["t"], "ref.h5")
    assert tops.jet_type.tolist() == [2, 2]
    assert bench.select_types(jets, ["top", "g"], "ref.h5").jet_type.tolist() == [0, 2, 2, 0]
    with pytest.raises(ValueError, match=r"^ref\.h5: key jet_type: expected jets of type\(s\) z \(--types\), "
                                         r"found g,t,w$"):
        bench.select_types(jets, ["t", "z"], "ref.h5")
    with pytest.raises(ValueError, match="jet type 'x'"):
        bench.select_types(jets, ["x"], "ref.h5")


def test_selection_curve_reads_the_physics_metric_where_it_was_evaluated(tmp_path):
    bench = load_benchmark("bench_jet_models")
    log = tmp_path / "train_log.csv"
    log.write_text("epoch,step,train_loss,val_loss,lr,seconds,val_physics\n"
                   "1,10,1.5,1.4,0.001,3.0,\n"
                   "2,20,1.4,1.3,0.001,6.0,0.30\n"
                   "3,30,1.3,1.2,0.001,9.0,\n"
                   "4,40,1.2,1.2,0.001,12.0,0.21\n"
                   "5,50,1.2,1.1,0.001,15.0,0.25\n"
                   "6,60,1.1,1.1,0.001,18.0,\n")
    sel = bench.selection_curve(log)
    assert sel["epochs"] == [2, 4, 5]
    assert sel["val_physics"] == pytest.approx([0.30, 0.21, 0.25], abs=1e-12)
    assert (sel["best_epoch"], sel["last_epoch"]) == (4, 6)
    assert sel["best"] == pytest.approx(0.21, abs=1e-12) and sel["last"] == pytest.approx(0.25, abs=1e-12)
    assert bench.selection_curve(tmp_path / "missing.csv") == {}


def _entry(value, floor):
    return {"value": value, "error": 0.0, "floor": floor, "floor_error": 0.0, "ratio": value / floor,
            "target_met": value / floor <= 3.0}


def test_format_table_prints_means_and_per_type_pythia_rates():
    bench = load_benchmark("bench_jet_models")
    fam = {"metrics": {"t": {"fpd": _entry(0.006, 0.002)}},
           "means": {"t": {"tau32": {"real": 0.483, "generated": 0.61, "floor": 0.481}}},
           "model_speed": {"jets_per_cpu_s": 300.0, "threads": 1, "jets_per_wall_s": 290.0, "jets": 5000},
           "model_speed_1thread": {"jets_per_cpu_s": 310.0, "jets": 2000},
           "speedup_per_cpu_s": 2.0, "speedup_1thread": 2.07, "n_parameters": 1234,
           "train_wall_min": 30.0, "train_cpu_min": 29.5, "best_epoch": 40,
           "selection": {"epochs": [35, 40, 45], "val_physics": [0.2, 0.1, 0.15], "last_epoch": 47,
                         "best_epoch": 40, "best": 0.1, "last": 0.15}}
    res = {"n_real": 15000, "n_reference": 15000, "families": {"jet_transformer_fm": fam},
           "pythia_speed": {"types": {"g": {"jets_per_cpu_s": 120.0}, "t": {"jets_per_cpu_s": 180.0}},
                            "jets_per_cpu_s": 150.0, "jets_per_cpu_s_with_init": 75.0, "n_per_type": 300},
           "pythia_jets_per_cpu_s": 150.0}
    text = bench.format_table(res)
    assert "| t | fpd (≤ 3×) | 0.002 | 0.006 | 3.00 ✓ |" in text
    assert "| t | tau32 | 0.483 | 0.481 | 0.610 |" in text
    assert "mean over g 120, t 180; with the initialisation in 75 per CPU-s at 300 jets per type)" in text
    assert "last epoch 47, selection metric best 0.1000 (epoch 40), last evaluations 35: 0.2000, " \
           "40: 0.1000, 45: 0.1500" in text
