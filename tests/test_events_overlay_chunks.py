"""Bounded-memory overlay (issue #15): event files read in row slices (``read_events(path, rows=...)``,
``event_file_header``) and ``bench_events.py overlay --chunk`` against ``overlay_shift`` on the whole sample
(``figure3``'s distinct curve labels: test_events_bench.py)."""

import argparse
import json

import h5py
import numpy as np
import pytest

from _benchmarks import load_benchmark
from _toy_events import toy_events, untrained_dcgan
from hepgen.checkpoint import load_checkpoint
from hepgen.data.events import EventImages, event_file_header, read_events, write_events
from hepgen.domains.events import DOMAIN, overlay_shift
from hepgen.metrics.event_jets import event_observables

bench = load_benchmark("bench_events")


def test_read_events_rows_is_the_slice_of_the_whole_file(tmp_path):
    d = toy_events(7, seed=3)
    d.truth_jets = np.arange(7 * 2 * 4, dtype=np.float32).reshape(7, 2, 4)
    d.process = np.array([0, 2, 0, 2, 0, 2, 0], np.int8)
    d.attrs.update(seed=11, pileup="fixed")
    path = tmp_path / "e.h5"
    write_events(path, d)
    assert event_file_header(path)[0] == 7
    assert {k: event_file_header(path)[1][k] for k in ("eta_max", "seed", "pileup")} == \
        {"eta_max": 2.5, "seed": 11, "pileup": "fixed"}
    whole = read_events(path)
    for rows in (slice(0, 3), slice(2, 7), slice(5, 99), slice(4, 4)):
        part = read_events(path, rows=rows)
        want = whole.subset(rows)
        assert len(part) == len(want)
        np.testing.assert_array_equal(part.images, want.images)
        np.testing.assert_array_equal(part.conditions, want.conditions)
        np.testing.assert_array_equal(part.truth_jets, want.truth_jets)
        np.testing.assert_array_equal(part.process, want.process)
        assert part.attrs == whole.attrs
    for bad in (slice(0, 6, 2), [0, 1]):
        with pytest.raises(ValueError, match=r"e.h5: rows: expected a slice of step 1, found"):
            read_events(path, rows=bad)
    with pytest.raises(FileNotFoundError, match="nope.h5: event-image file not found"):
        event_file_header(tmp_path / "nope.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros((1, 1, 2, 2))
        f.attrs["kind"] = "jets"
    with pytest.raises(ValueError, match="other.h5: attribute 'kind': expected 'events', found 'jets'"):
        event_file_header(other)
    # validation applies to the rows read: a negative pixel in row 5 is found by a slice holding it only
    images = whole.images.copy()
    images[5, 0, 0, 0] = -1.0
    with h5py.File(path, "a") as f:
        f["images"][5] = images[5]
    assert len(read_events(path, rows=slice(0, 5))) == 5
    with pytest.raises(ValueError, match="e.h5: key 'images': expected finite energies >= 0 GeV, found min -1.0"):
        read_events(path, rows=slice(3, 6))


def test_pixel_energy_mean_pooled_from_per_event_counts():
    # two 1-channel 2 × 2 images: pixels (3, 0, 1, 0) and (0, 0, 0, 8): non-empty 3, 1, 8 → mean 4 GeV
    img = np.array([[[[3.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 8.0]]]], np.float32)
    o = bench._per_event(img, 2.5)
    assert o["n_pixels"].tolist() == [2.0, 1.0] and o["total_energy"].tolist() == [4.0, 8.0]
    assert "pixel_energy" not in o and "jet_pt" not in o
    assert bench._pixel_energy_mean(o) == 4.0
    assert bench._pixel_energy_mean(event_observables(img)) == 4.0
    # on realistic images the pooled mean is the flat one up to float rounding
    d = toy_events(6, seed=9)
    flat = event_observables(d.images)["pixel_energy"].mean()
    assert bench._pixel_energy_mean(bench._per_event(d.images, d.eta_max)) == pytest.approx(flat, rel=1e-6)


def _generator(tmp_path, te):
    gen = untrained_dcgan(te, ["mu"])
    gen.save(tmp_path / "g.pt")
    return str(tmp_path / "g.pt")


def test_bench_overlay_in_chunks_equals_overlay_shift_on_the_whole(tmp_path, monkeypatch):
    hard = toy_events(10, seed=5)
    te = toy_events(12, seed=6)
    te.conditions = np.tile([0.0, 0.0, 20.0], (12, 1))
    # files split so that chunks of 3 cross file boundaries: hard 4 + 6, pile-up 3 + 5 + 4
    write_events(tmp_path / "h1.h5", hard.subset(slice(0, 4)))
    write_events(tmp_path / "h2.h5", hard.subset(slice(4, 10)))
    for name, rows in (("p1", slice(0, 3)), ("p2", slice(3, 8)), ("p3", slice(8, 12))):
        write_events(tmp_path / f"{name}.h5", te.subset(rows))
    ck = _generator(tmp_path, te)
    reads = []
    real_read = bench.read_events
    monkeypatch.setattr(bench, "read_events", lambda p, rows=None: reads.append((str(p), rows)) or real_read(p, rows))
    args = argparse.Namespace(hard=f"{tmp_path / 'h1.h5'},{tmp_path / 'h2.h5'}",
                              pileup_test=",".join(str(tmp_path / f"p{i}.h5") for i in (1, 2, 3)), n_hard=0, mu=[20],
                              checkpoints=[ck], seed=7, target=5.0, figures=False, workdir=str(tmp_path), tag="_c3",
                              chunk=3, select_members=False, path="fp32")  # 3 does not divide the 10 events: chunks 3, 3, 3, 1
    bench.overlay(args)
    got = json.loads((tmp_path / "overlay_mu20_c3.json").read_text())
    assert got["n"] == 10 and got["chunk"] == 3
    res = got["results"][ck]
    # Pythia side: overlay_shift on all 10 hard events and the first 10 pile-up images at once (to rounding: numpy
    # sums an event's jet masses over the widest jet list of the batch, so the last bit may depend on the chunk)
    fake_whole = DOMAIN.from_payload(load_checkpoint(ck), ck).sample_like(te.subset(slice(0, 10)), seed=7)
    whole = overlay_shift(hard, te.subset(slice(0, 10)), fake_whole)
    for k in ("n_jets", "summed_mass"):
        for key in ("mean_hard", "shift_real", "shift_real_err"):
            assert res[k][key] == pytest.approx(whole[k][key], rel=1e-12), (k, key)
    assert res["summed_mass"]["shift_real"] > 0
    # generator side: each chunk of 3 sampled with seed 7 + its first event, joined: overlay_shift on those images
    gen = DOMAIN.from_payload(load_checkpoint(ck), ck)
    fake = EventImages.concatenate([gen.sample_like(te.subset(slice(s, min(s + 3, 10))), seed=7 + s)
                                    for s in range(0, 10, 3)])
    want = overlay_shift(hard, te.subset(slice(0, 10)), fake)
    for k in want:
        assert res[k] == pytest.approx(want[k], rel=1e-12)
    # a different draw from the whole-file one (chunks of 3 are not whole sampling batches of 256)
    assert res["summed_mass"]["shift_gen"] != whole["summed_mass"]["shift_gen"]
    # every read is a row slice of at most one chunk, and each event row is read once per set
    assert all(rows is not None and rows.stop - rows.start <= 3 for _, rows in reads)
    per_file = {}
    for p, rows in reads:
        per_file.setdefault(p.rsplit("/", 1)[-1], []).extend(range(rows.start, rows.stop))
    assert per_file == {"h1.h5": [0, 1, 2, 3], "h2.h5": [0, 1, 2, 3, 4, 5], "p1.h5": [0, 1, 2],
                        "p2.h5": [0, 1, 2, 3, 4], "p3.h5": [0, 1]}
    # one chunk (--chunk >= N) is the whole-file computation, generator draw included
    args.chunk, args.tag = 2048, "_c1"
    bench.overlay(args)
    one = json.loads((tmp_path / "overlay_mu20_c1.json").read_text())["results"][ck]
    for k in whole:
        assert one[k] == pytest.approx(whole[k], rel=1e-12)
    # a wrong mu in a later chunk is found there, and named
    bad = te.subset(slice(8, 12))
    bad.conditions[1, 2] = 50.0
    write_events(tmp_path / "p3.h5", bad)
    args.chunk = 3
    with pytest.raises(ValueError, match=r"has mu \[50.0\], expected \[20\] \(--mu; events 9-9\)"):
        bench.overlay(args)
    args.chunk = 0
    with pytest.raises(ValueError, match="overlay --chunk: expected a positive number of events per chunk, found 0"):
        bench.overlay(args)


def test_chunk_seed_keeps_the_whole_file_noise_at_batch_multiples():
    # sample() seeds the noise of the batch at row i from seed + i: chunks of 512 (2 batches of 256) seeded
    # with seed + their first event draw exactly the whole-file noise
    assert [bench.chunk_seed(7, s) for s in (0, 512, 1024)] == [7, 519, 1031]
    te = toy_events(4, seed=6)
    te.conditions = np.tile([0.0, 0.0, 20.0], (4, 1))
    gen = untrained_dcgan(te, ["mu"])
    cond = np.tile([[0.0, 0.0, 20.0]], (1100, 1))
    whole = gen.sample(cond, seed=7).images
    parts = [gen.sample(cond[s:s + 512], seed=bench.chunk_seed(7, s)).images for s in range(0, 1100, 512)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
