"""The time limit inside an epoch: ``max_minutes`` stops after the step that crosses it, the
``last.pt`` of the stop resumes at the next batch of the unfinished epoch, and the resumed run
ends with exactly the weights of an uninterrupted one.  A fake clock (one second per reading)
makes the stop point deterministic: no wall-clock time is measured."""

import csv
import functools

import pytest
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train import trainer
from hepgen.train.trainer import train

from _toy_models import FakeClock

GEOMETRY = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)


@pytest.fixture(scope="module")
def data():
    # 300 showers: 270 train → 5 batches of 64 per epoch, 30 validation
    return simulate_dataset(300, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=3)


def _config(**kw):
    base = dict(family="flow", model={"transforms": 2, "hidden_features": 16, "n_hidden": 1}, epochs=3,
                batch_size=64, lr=2e-3, n_eval=100, tensorboard=False, threads=1, seed=7, ema=0.9)
    base.update(kw)
    return TrainConfig(**base)


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")


# readings: fit's start (0), one after each of the first 4 batches of an epoch (the 5th and last
# batch is not checked: the epoch ends anyway), one in the validation.  So a limit of 2.5 s stops
# epoch 1 after its 3rd batch; 6.5 s lets epoch 1 finish (validated at 5 s) and stops epoch 2
# after its 2nd batch.
@pytest.mark.parametrize("limit_s, epoch, batch, step", [(2.5, 0, 3, 3), (6.5, 1, 2, 7)])
def test_time_limit_stops_inside_the_epoch_and_resumes_exactly(tmp_path, data, monkeypatch, limit_s, epoch, batch,
                                                                step):
    run = tmp_path / "stopped"
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    gen = train(data, _config(max_minutes=limit_s / 60), run, progress=False)
    last = load_checkpoint(run / "last.pt")
    tstate = last["trainer"]
    assert (tstate["epoch"], tstate["batch"], tstate["step"]) == (epoch, batch, step)  # stopped mid-epoch
    assert len(tstate["epoch_partial_by_rank"]) == 1
    assert tstate["epoch_partial_by_rank"][0]["counts"] == {"loss": batch}
    # best.pt is the best completed epoch, or the current weights when none completed; it loads
    best = ShowerGenerator.load(run / "best.pt")
    assert best.meta["epoch"] == epoch
    assert gen.model.family == "flow"
    assert [int(r["epoch"]) for r in _rows(run / "train_log.csv")] == list(range(1, epoch + 1)) \
        if epoch else not (run / "train_log.csv").exists()

    monkeypatch.setattr(trainer, "_clock", FakeClock())
    train(data, _config(), run, resume=True, progress=False)
    train(data, _config(), tmp_path / "whole", progress=False)
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(run / "last.pt")
    _same(a["model"], b["model"])
    _same(a["trainer"]["ema"], b["trainer"]["ema"])
    assert b["trainer"]["batch"] == 0 and b["trainer"]["step"] == 15
    ra, rb = _rows(tmp_path / "whole" / "train_log.csv"), _rows(run / "train_log.csv")
    assert [(r["epoch"], r["step"]) for r in rb] == [("1", "5"), ("2", "10"), ("3", "15")]
    # the resumed epoch's mean loss covers the steps before and after the stop
    assert [r["train_loss"] for r in rb] == [r["train_loss"] for r in ra]


def test_resume_inside_an_epoch_with_another_world_size_restarts_that_epoch(tmp_path, data, monkeypatch, caplog):
    run = tmp_path / "run"
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    train(data, _config(max_minutes=2.5 / 60, epochs=1), run, progress=False)
    payload = load_checkpoint(run / "last.pt")
    payload["trainer"]["epoch_partial_by_rank"] *= 2  # as if two processes had written it
    torch.save(payload, run / "last.pt")
    train(data, _config(epochs=1), run, resume=True, progress=False)
    assert "restarts from its first batch" in caplog.text
    assert load_checkpoint(run / "last.pt")["trainer"]["step"] == 3 + 5  # the epoch again, from batch 0


def test_progress_shows_batches_within_the_epoch(tmp_path, data, capsys, monkeypatch):
    # redraw on every update (tqdm's default redraws at most every 0.1 s: this run is faster)
    monkeypatch.setattr(trainer, "tqdm", functools.partial(trainer.tqdm, mininterval=0))
    train(data, _config(epochs=1), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "epoch 1:" in err and "3/5 [" in err and "batch/s, loss=" in err


def test_an_epoch_that_ends_a_timed_run_is_scored(tmp_path, data, monkeypatch):
    """eval_every 10 would score only epoch 10; the time limit is up at epoch 1's end (fake clock:
    readings 1-4 in its batches, 5 s at its end > 4.5 s), so epoch 1 is scored, selected and the run stops."""
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    run = tmp_path / "timed"
    train(data, _config(epochs=20, select_by="physics", eval_every=10, max_minutes=4.5 / 60), run, progress=False)
    rows = _rows(run / "train_log.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert rows[0]["val_physics"] != ""
    assert load_checkpoint(run / "best.pt")["meta"]["epoch"] == 1


def test_fit_epochs_to_time_shortens_the_run_and_its_cosine(tmp_path, data, monkeypatch, caplog):
    """Fake clock with fitting on: 6 readings per epoch (4 in the batches, 1 in the validation, 1 for the
    fit), so the first epoch takes 6 s.  max_minutes = 22 s: 90 % is 19.8 s, 13.8 s left after epoch 1,
    two more epochs of 6 s fit → 3 of the 10 epochs.  The cosine then spans 3 epochs: the learning rates
    logged are 2e-3 · (1 + cos(π k / 3)) / 2 = 1.5e-3, 5e-4, 0 (by hand), and the weights are exactly those
    of a run configured with epochs=3 (whose cosine is the same at every epoch)."""
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    monkeypatch.setattr(trainer, "_step_clock", lambda: 0.0)  # every step equally long: no warm-up
    run = tmp_path / "fitted"
    caplog.set_level("INFO", logger="hepgen.train.trainer")
    train(data, _config(epochs=10, max_minutes=22 / 60, fit_epochs_to_time=True), run, progress=False)
    rows = _rows(run / "train_log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [float(r["lr"]) for r in rows] == pytest.approx([1.5e-3, 5e-4, 0.0], abs=1e-12)
    assert "6.0 s per epoch → 3 of 10 epochs" in caplog.text
    assert "the 3 epochs fitted to max_minutes" in caplog.text
    last = load_checkpoint(run / "last.pt")
    assert last["trainer"]["fitted_epochs"] == 3 and last["trainer"]["step"] == 15

    train(data, _config(epochs=3), tmp_path / "three", progress=False)
    _same(load_checkpoint(tmp_path / "three" / "last.pt")["model"], last["model"])

    # a resumed run keeps the fitted length: nothing left to train
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    train(data, _config(epochs=10, max_minutes=22 / 60, fit_epochs_to_time=True), run, resume=True, progress=False)
    assert load_checkpoint(run / "last.pt")["trainer"]["step"] == 15
    assert len(_rows(run / "train_log.csv")) == 3


class _StepClock:
    """The step clock read before and after each of an epoch's first two steps: the first step takes
    3 s, the second 1 s (a 2 s warm-up, as torch.compile's compilation in the first step)."""

    def __init__(self):
        self.readings = iter([0.0, 3.0, 3.0, 4.0] * 20)

    def __call__(self):
        return next(self.readings)


def test_fit_epochs_to_time_leaves_the_first_steps_warm_up_out_of_the_pace(tmp_path, data, monkeypatch, caplog):
    """The fake clock's first epoch takes 6 s as above, 2 s of it a warm-up in the first step (3 s against
    the second step's 1 s): the pace is 4 s, 13.8 s left after epoch 1 hold three more → 4 of 10 epochs
    (with the warm-up counted it would be 3)."""
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    monkeypatch.setattr(trainer, "_step_clock", _StepClock())
    caplog.set_level("INFO", logger="hepgen.train.trainer")
    run = tmp_path / "warm"
    train(data, _config(epochs=10, max_minutes=22 / 60, fit_epochs_to_time=True), run, progress=False)
    assert "4.0 s per epoch (after a warm-up of 2.0 s in its first step) → 4 of 10 epochs" in caplog.text
    assert load_checkpoint(run / "last.pt")["trainer"]["fitted_epochs"] == 4
    assert [r["epoch"] for r in _rows(run / "train_log.csv")] == ["1", "2", "3", "4"]


def test_fit_epochs_to_time_keeps_epochs_when_they_fit(tmp_path, data, monkeypatch):
    # 600 s of budget at 6 s per epoch: all 3 configured epochs fit, the schedule is unchanged
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    run = tmp_path / "fits"
    train(data, _config(epochs=3, max_minutes=10, fit_epochs_to_time=True), run, progress=False)
    assert load_checkpoint(run / "last.pt")["trainer"]["fitted_epochs"] == 3
    assert [float(r["lr"]) for r in _rows(run / "train_log.csv")] == pytest.approx([1.5e-3, 5e-4, 0.0], abs=1e-12)


def test_fit_epochs_to_time_needs_a_time_limit():
    with pytest.raises(ValueError, match="key 'fit_epochs_to_time': expected a time limit 'max_minutes'"):
        _config(fit_epochs_to_time=True)
