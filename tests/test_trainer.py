"""The training loop: kill-and-resume, EMA, checkpoint selection, early stopping, callbacks,
logs, mixed precision, and data-parallel training under torchrun (two CPU processes, gloo).

Every family is run through the same loop by ``tests/test_zoo.py``; here the loop's own
behaviour is checked on a small ``flow`` and on the toy families of ``_toy_models.py``.
"""

import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig, dump_config, load_config
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.score import separation_score as physics_score
from hepgen.models import build_model
from hepgen.models import flow as flow_module
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.trainer import (
    FullBatchCompiled,
    StopTraining,
    _split,
    scaled_lr,
    shard_indices,
    train,
)

GEOMETRY = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
SMALL_FLOW = {"transforms": 2, "hidden_features": 16, "n_hidden": 1}


@pytest.fixture(scope="module")
def data():
    # 300 showers: 270 train (5 batches of 64, the last one 14), 30 validation
    return simulate_dataset(300, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=3)


def _config(**kw):
    base = dict(family="flow", model=SMALL_FLOW, epochs=3, batch_size=64, lr=2e-3, n_eval=100,
                tensorboard=False, threads=1, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _log(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


# --- interruption and resume --------------------------------------------------------------


def test_killed_process_resumes_from_its_last_checkpoint(tmp_path, data):
    """A hard kill (os._exit: no clean-up, no finally) after epoch 2 of 4: resuming continues
    at epoch 3 / step 10 and ends with exactly the weights of an uninterrupted run."""
    write_showers(tmp_path / "train.h5", data)
    cfg = _config(epochs=4, ema=0.9)
    dump_config(cfg, tmp_path / "cfg.yaml")
    script = textwrap.dedent(f"""
        import os
        from hepgen.config import load_config
        from hepgen.data.formats import read_showers
        from hepgen.train.trainer import train
        def kill(epoch, record):
            if epoch == 2:
                os._exit(9)
        train(read_showers({str(tmp_path / 'train.h5')!r}), load_config({str(tmp_path / 'cfg.yaml')!r}),
              {str(tmp_path / 'killed')!r}, progress=False, callbacks=[kill])
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 9, proc.stderr
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["trainer"]["epoch"] == 2
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # atomic writes left no debris

    train(read_showers(tmp_path / "train.h5"), cfg, tmp_path / "killed", resume=True, progress=False)
    train(data, cfg, tmp_path / "whole", progress=False)
    rows = _log(tmp_path / "killed" / "train_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "killed" / "last.pt")
    _assert_same_weights(a["model"], b["model"])
    _assert_same_weights(a["trainer"]["ema"], b["trainer"]["ema"])  # EMA state resumed too
    _assert_same_weights(load_checkpoint(tmp_path / "whole" / "best.pt")["model"],
                         load_checkpoint(tmp_path / "killed" / "best.pt")["model"])


def test_resume_drops_log_rows_written_after_the_checkpoint(tmp_path, data):
    """A kill after epoch 2's log row but before its last.pt: the resumed run redoes epoch 2
    and the CSV and TensorBoard logs hold each epoch once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"

    def keep_epoch_1(epoch, record):
        if epoch == 1:
            (run / "epoch1.pt").write_bytes((run / "last.pt").read_bytes())
        if epoch == 2:
            raise StopTraining("simulated kill")

    train(data, _config(tensorboard=True), run, progress=False, callbacks=[keep_epoch_1])
    (run / "epoch1.pt").replace(run / "last.pt")  # as if the kill came before epoch 2's last.pt
    train(data, _config(tensorboard=True), run, resume=True, progress=False)
    rows = _log(run / "train_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2, 3]


def test_resume_without_trainer_state_is_a_clear_error(tmp_path, data):
    gen = train(data, _config(epochs=1), tmp_path / "run", progress=False)
    gen.save(tmp_path / "run" / "last.pt")  # a weights-only checkpoint under the name last.pt
    with pytest.raises(ValueError, match="last.pt: key 'trainer'"):
        train(data, _config(epochs=2), tmp_path / "run", resume=True, progress=False)


# --- EMA, selection, early stopping, callbacks ----------------------------------------------


def test_best_checkpoint_holds_the_ema_weights(tmp_path, data):
    train(data, _config(epochs=1, ema=0.9), tmp_path / "ema", progress=False)
    best = load_checkpoint(tmp_path / "ema" / "best.pt")["model"]
    last = load_checkpoint(tmp_path / "ema" / "last.pt")
    ema = {k.removeprefix("module."): v for k, v in last["trainer"]["ema"].items() if k.startswith("module.")}
    _assert_same_weights(ema, best)  # one epoch: best.pt is that epoch's averaged model
    assert _max_diff(best, last["model"]) > 1e-4  # ... which is not the raw model
    assert int(last["trainer"]["ema"]["n_averaged"]) == 5


def test_physics_selection_picks_the_epoch_with_the_lowest_val_physics(tmp_path, data):
    cfg = _config(select_by="physics", epochs=5, lr=5e-3)
    train(data, cfg, tmp_path / "phys", progress=False)
    rows = _log(tmp_path / "phys" / "train_log.csv")
    phys = [float(r["val_physics"]) for r in rows]
    assert len(phys) == 5 and len(set(phys)) > 1  # evaluated every epoch, on the weights of that epoch
    best = load_checkpoint(tmp_path / "phys" / "best.pt")
    assert best["meta"]["selected_by"] == "physics"
    assert best["meta"]["epoch"] == int(np.argmin(phys)) + 1
    # and its weights really score that value (same validation showers and seed)
    _, va_idx = _split(len(data), cfg.val_fraction, cfg.seed)
    score = physics_score(ShowerGenerator.load(tmp_path / "phys" / "best.pt"), data.subset(va_idx), seed=cfg.seed)
    assert score == pytest.approx(min(phys), rel=1e-5)


def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path, data):
    # lr = 0: the validation loss never improves after epoch 1, so patience 2 ends at epoch 3
    seen = []
    train(data, _config(epochs=10, lr=0.0, patience=2), tmp_path / "stall", progress=False,
          callbacks=[lambda epoch, record: seen.append((epoch, record))])
    rows = _log(tmp_path / "stall" / "train_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert len({r["val_loss"] for r in rows}) == 1
    assert [e for e, _ in seen] == [1, 2, 3]  # callbacks ran after every epoch, with the CSV row
    assert seen[-1][1]["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-5)
    assert load_checkpoint(tmp_path / "stall" / "best.pt")["meta"]["epoch"] == 1


def test_stop_training_from_a_callback_ends_after_the_checkpoint(tmp_path, data):
    def stop(epoch, record):
        assert math.isfinite(record["val_loss"]) and record["epoch"] == epoch
        if epoch == 2:
            raise StopTraining("pruned")

    train(data, _config(epochs=6), tmp_path / "cb", progress=False, callbacks=[stop])
    assert [int(r["epoch"]) for r in _log(tmp_path / "cb" / "train_log.csv")] == [1, 2]
    assert load_checkpoint(tmp_path / "cb" / "last.pt")["trainer"]["epoch"] == 2


def test_max_steps_csv_columns_and_tensorboard_events(tmp_path, data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(data, _config(max_steps=7, tensorboard=True), tmp_path / "tb", progress=False)
    rows = _log(tmp_path / "tb" / "train_log.csv")
    assert len(rows) == 2 and int(rows[-1]["step"]) == 7  # 5 batches per epoch: stops mid-epoch 2
    assert list(rows[0]) == ["epoch", "step", "train_loss", "val_loss", "lr", "seconds"]
    events = EventAccumulator(str(tmp_path / "tb" / "tb"))
    events.Reload()
    assert {"train_loss", "val_loss", "lr"} <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("train_loss")]
    assert [s for s, _ in logged] == [1, 2]
    assert logged[1][1] == pytest.approx(float(rows[1]["train_loss"]), rel=1e-5)
    # a resumed run appends rows under the same header
    train(data, _config(max_steps=12, tensorboard=False), tmp_path / "tb", resume=True, progress=False)
    with open(tmp_path / "tb" / "train_log.csv") as fh:
        lines = fh.read().splitlines()
    assert lines.count(lines[0]) == 1 and len(lines) == 1 + 3


def test_keys_logged_on_some_steps_are_averaged_over_those_steps(tmp_path, data):
    from _toy_models import registered

    with registered():
        train(data, _config(family="toy_adversarial", model={}, epochs=1, select_by="val_loss"), tmp_path / "toy",
              progress=False)
    (row,) = _log(tmp_path / "toy" / "train_log.csv")
    # the generator loss is reported on steps 1 and 3 only; critic ones on all 5
    assert {"train_loss", "train_gp", "train_generator_loss"} <= set(row)
    assert math.isfinite(float(row["train_generator_loss"]))
    assert load_checkpoint(tmp_path / "toy" / "best.pt")["meta"]["epoch"] == 1  # NaN val loss: the last epoch


def test_fresh_run_replaces_an_old_best_checkpoint(tmp_path, data):
    """With no finite selection metric, best.pt is this run's last model, not a stale file."""
    from _toy_models import registered

    with registered():
        train(data, _config(family="toy_adversarial", model={}, epochs=1, select_by="val_loss", seed=1),
              tmp_path / "run", progress=False)
        first = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
        train(data, _config(family="toy_adversarial", model={}, epochs=1, select_by="val_loss", seed=2),
              tmp_path / "run", progress=False)
    assert _max_diff(first, load_checkpoint(tmp_path / "run" / "best.pt")["model"]) > 0


# --- mixed precision ------------------------------------------------------------------------


def test_amp_trains_in_bf16_on_cpu(tmp_path, data):
    train(data, _config(epochs=1, max_steps=3, amp=True), tmp_path / "amp", progress=False)
    train(data, _config(epochs=1, max_steps=3), tmp_path / "fp32", progress=False)
    amp_w = load_checkpoint(tmp_path / "amp" / "last.pt")["model"]
    fp32_w = load_checkpoint(tmp_path / "fp32" / "last.pt")["model"]
    assert all(torch.isfinite(v).all() for v in amp_w.values() if v.is_floating_point())
    assert all(v.dtype == fp32_w[k].dtype for k, v in amp_w.items())  # master weights stay fp32
    assert 0 < _max_diff(amp_w, fp32_w) < 0.05  # bf16 rounding changed the steps, slightly


# --- torch.compile of the training loss ----------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch._inductor's import
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")  # dynamo tracing
def test_compiled_training_matches_eager_training(tmp_path, data, caplog):
    """compile: true — full batches through the compiled loss, the short last batch eagerly;
    the weights after 6 steps (one short batch) equal eager training's up to float rounding."""
    caplog.set_level("INFO", logger="hepgen.train.trainer")
    train(data, _config(epochs=2, max_steps=6, compile=True), tmp_path / "compiled", progress=False)
    train(data, _config(epochs=2, max_steps=6), tmp_path / "eager", progress=False)
    compiled = load_checkpoint(tmp_path / "compiled" / "last.pt")["model"]
    eager = load_checkpoint(tmp_path / "eager" / "last.pt")["model"]
    assert "the training loss compiled in" in caplog.text  # the compiled graph did run
    assert "training eagerly" not in caplog.text
    _assert_same_weights(eager, compiled, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch._inductor's import
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")  # dynamo tracing
def test_compiled_spline_coupling_training_matches_eager_training(tmp_path, data, caplog, monkeypatch):
    """compile: true on a spline coupling flow compiles its splines, not the whole loss: both couplings
    are set to the batch size and back to eager after training, the fused spline ran without a failure,
    and the weights after 6 steps (one short batch, eager) equal eager training's up to float rounding."""
    caplog.set_level("INFO", logger="hepgen.train.trainer")
    monkeypatch.setitem(flow_module._FUSED, "fn", None)
    monkeypatch.setitem(flow_module._FUSED, "failed", None)
    sizes = []
    set_size = flow_module.SplineCoupling.compile_for_batch
    monkeypatch.setattr(flow_module.SplineCoupling, "compile_for_batch",
                        lambda self, n: (sizes.append(n), set_size(self, n))[1])
    model = {**SMALL_FLOW, "coupling": True, "spline_bins": 4}
    train(data, _config(model=model, epochs=2, max_steps=6, compile=True), tmp_path / "compiled", progress=False)
    assert sizes == [64, 64, None, None]
    train(data, _config(model=model, epochs=2, max_steps=6), tmp_path / "eager", progress=False)
    assert "flow compiles its own regions (the spline couplings) for batches of 64 rows" in caplog.text
    assert "the training loss compiled in" not in caplog.text
    assert flow_module._FUSED["fn"] is not None and flow_module._FUSED["failed"] is None
    compiled = load_checkpoint(tmp_path / "compiled" / "last.pt")["model"]
    eager = load_checkpoint(tmp_path / "eager" / "last.pt")["model"]
    _assert_same_weights(eager, compiled, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch._inductor's import
def test_full_batch_compiled_dispatches_by_batch_size_and_falls_back_when_compiling_fails(caplog):
    net = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    f = FullBatchCompiled(net, batch_size=4)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nsecond line")

    f.compiled = broken
    torch.testing.assert_close(f(x), net(x))  # falls back, same numbers
    assert f.failed == "RuntimeError: no C++ compiler"
    assert "torch.compile failed (RuntimeError: no C++ compiler); training eagerly" in caplog.text
    torch.testing.assert_close(f(x), net(x))  # and stays eager
    assert f.compiled_calls == 0


def test_compile_is_refused_for_adversarial_families(tmp_path, data):
    with pytest.raises(ValueError, match="key 'compile': family 'gan' has its own training step"):
        train(data, _config(family="gan", model={}, epochs=1, max_steps=1, compile=True), tmp_path / "gan",
              progress=False)


def test_grad_scaler_step_equals_the_plain_step():
    """The fp16 path of the default training_step: scaling by a power of two and unscaling
    before clipping and stepping gives bit-identical weights (and a clipped update)."""
    x, c = torch.randn(32, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(32, 1)
    weights = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        model = build_model("flow", n_features=4, n_conditions=1, **SMALL_FLOW)
        opts = model.configure_optimizers(1e-2, 0.0)
        for step in range(3):
            model.training_step(x, c, opts, step, 0.5, **({"scaler": scaler} if scaler else {}))
        weights.append(model.state_dict())
    _assert_same_weights(*weights)


# --- configuration and helpers --------------------------------------------------------------


def test_new_train_config_fields_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig(ema=0.999, amp=True, device="auto", select_by="physics", eval_every=2, n_eval=500,
                      patience=3, max_steps=100, lr_scaling="sqrt", tensorboard=False)
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    for key, bad in (("select_by", "best"), ("ema", 1.5), ("device", "tpu"), ("lr_scaling", "cubic"),
                     ("eval_every", 0)):
        with pytest.raises(ValueError, match=key):
            TrainConfig(**{key: bad})


def test_shard_indices_follow_distributed_sampler_semantics():
    perm = np.array([4, 0, 3, 1, 2])
    # padded by wrapping to 6 = [4, 0, 3, 1, 2, 4]; rank r takes every 2nd from r
    np.testing.assert_array_equal(shard_indices(perm, 0, 2), [4, 3, 2])
    np.testing.assert_array_equal(shard_indices(perm, 1, 2), [0, 1, 4])
    np.testing.assert_array_equal(shard_indices(perm, 0, 1), perm)
    # batch i of the ranks together is batch i of one process at W times the batch size
    perm = np.random.default_rng(0).permutation(40)
    shards = [shard_indices(perm, r, 4) for r in range(4)]
    for i in range(0, 10, 3):
        together = np.sort(np.concatenate([s[i : i + 3] for s in shards]))
        np.testing.assert_array_equal(together, np.sort(perm[4 * i : 4 * i + 12]))
    with pytest.raises(ValueError, match="rank"):
        shard_indices(perm, 2, 2)


def test_lr_scaling_rules():
    assert scaled_lr(1e-3, "none", 4) == 1e-3
    assert scaled_lr(1e-3, "linear", 4) == pytest.approx(4e-3)
    assert scaled_lr(1e-3, "sqrt", 4) == pytest.approx(2e-3)


# --- data-parallel training -------------------------------------------------------------------


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_two_processes_at_batch_b_equal_one_process_at_batch_2b(tmp_path, data):
    """torchrun, 2 CPU processes (gloo), batch 32 each vs one process at batch 64, same seed:

    * ``flow``, stopped by a callback after epoch 1 and resumed in a second (2-process) call;
    * ``flow``, stopped after epoch 2 by 2 processes, resumed here by one process;
    * ``toy_adversarial``: two optimisers, n_critic = 2, a gradient penalty (double backward);
    * ``toy_unwrapped``: bypasses the DDP wrappers, which the trainer must refuse.
    """
    from _toy_models import registered, run_ddp_jobs

    h5 = str(tmp_path / "train.h5")
    write_showers(h5, data)
    flow = dict(family="flow", model=SMALL_FLOW, epochs=3, batch_size=32, lr=2e-3, tensorboard=False, threads=1,
                seed=7)
    toy = dict(flow, family="toy_adversarial", model={}, select_by="val_loss")
    out = {name: str(tmp_path / name) for name in ("flow", "flow_handover", "toy", "unwrapped")}
    jobs = [
        dict(data=h5, out=out["flow"], config=flow, stop_after=1),
        dict(data=h5, out=out["flow"], config=flow, resume=True),
        dict(data=h5, out=out["flow_handover"], config=flow, stop_after=2),
        dict(data=h5, out=out["toy"], config=toy),
        dict(data=h5, out=out["unwrapped"], config=dict(toy, family="toy_unwrapped"),
             report=str(tmp_path / "unwrapped.txt")),
    ]
    run_ddp_jobs(jobs, tmp_path)

    rows = _log(Path(out["flow"]) / "train_log.csv")
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(1, 5), (2, 10), (3, 15)]  # resumed, no repeats
    assert load_checkpoint(Path(out["flow"]) / "last.pt")["meta"]["world_size"] == 2
    assert "through self.wrapped(name)" in (tmp_path / "unwrapped.txt").read_text()

    with registered():
        for name, cfg in (("flow", flow), ("toy", toy)):
            train(data, TrainConfig(**dict(cfg, batch_size=64)), tmp_path / f"ref_{name}", progress=False)
            ref = load_checkpoint(tmp_path / f"ref_{name}" / "last.pt")["model"]
            ddp = load_checkpoint(Path(out[name]) / "last.pt")["model"]
            _assert_same_weights(ref, ddp, atol=1e-5)
            # the tolerance discriminates: one process at batch 32 ends elsewhere
            train(data, TrainConfig(**cfg), tmp_path / f"ref32_{name}", progress=False)
            assert _max_diff(ref, load_checkpoint(tmp_path / f"ref32_{name}" / "last.pt")["model"]) > 1e-3
    # a 2-process checkpoint resumed by one process at the global batch size
    train(data, TrainConfig(**dict(flow, batch_size=64)), out["flow_handover"], resume=True, progress=False)
    _assert_same_weights(load_checkpoint(tmp_path / "ref_flow" / "last.pt")["model"],
                         load_checkpoint(Path(out["flow_handover"]) / "last.pt")["model"], atol=1e-5)
