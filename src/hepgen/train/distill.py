"""Distil a trained generator into a one-pass student.

The teacher is any checkpoint whose model maps noise to features deterministically
(``sample_from_noise``: the flow families, and flow matching for jets).  The student learns
that map by regression (L1 in the teacher's standardised feature space) on pairs drawn from
the teacher at the conditions of a data file, so it inherits the teacher's preprocessing and
is saved as a checkpoint of the same kind: ``hepgen sample``, ``bench``, ``export`` and
``evaluate`` use it as they use any other.  The teacher names its student family
(``GenerativeModel.student_spec``): the feed-forward
:class:`~hepgen.models.student.FlowStudent` for flat features, the permutation-equivariant
:class:`~hepgen.models.jet_student.JetStudent` for particle clouds.

Kind-agnostic: the data and the checkpoint are handled through the domain protocol
(``domain_of_checkpoint``, ``read``, ``conditions``, ``from_payload``, the generator's
``save``), like the trainer.

Flow of one run (``distill``)::

    teacher ckpt ─► T(z, c)   data file ─► c pool (N, C)
                      │                      │
          pairs: z ~ N(0, 1), c from pool ─► x = T(z, c)   (n_pairs, regenerated each round)
                      │
          student S: Adam + cosine, L1(S(z, c), x), validated on fixed held-out pairs
                      │   (adversarial > 0: + λ·LSGAN loss of S against the data file's
                      │    samples, with a critic the student provides; selected by the
                      │    kind's physics score instead of the L1; observables > 0: + λ·the
                      │    pair's observables vs the teacher's; data_observables > 0: + μ·the
                      │    batch's observable distributions vs the data rows of its conditions)
          best.pt (the student with the teacher's preprocessing and meta) + distill_log.csv

Adversarial distillation: a regression student smooths the fine structure of the teacher's
map it cannot fit (for jets: the angular structure that sets τ21 and τ32, docs/jets.md).  With
``adversarial = λ > 0`` every step also updates a critic (``student.make_critic()``, least
squares labels ±1 as in :mod:`hepgen.models.epic_gan`) on the data file's samples against
the student's, and adds ``λ · ½·mean((D(S(z', c)) − 1)²)`` to the student's L1 — the L1
keeps the teacher's coverage, the critic sharpens towards the data (the idea of adversarial
diffusion distillation, Sauer et al. arXiv:2311.17042, on a regression-distilled start).
``init`` continues from an earlier student of the same teacher.

Physics term: with ``observables = λ > 0`` the student also learns each pair's physics
observables, ``λ · mean Σ_k |O_k(S(z, c)) − O_k(T(z, c))| / σ_k`` with the kind's differentiable
``distill_observables`` (jets: mass, τ21, τ32, D2, Σ pT_rel, ⟨log pT_rel⟩, σ(log pT_rel), ⟨ΔR⟩,
axis ratio; :mod:`hepgen.domains.jets.torch_observables`) and ``σ_k`` the spread of ``O_k``
over the teacher's validation samples (so that no observable counts more for its units).
A per-particle L1 weighs every coordinate alike; the substructure depends on the few
relative angles of the hard prongs, which the L1 leaves blurred — the term asks for them
jet by jet, against the teacher (not the data), so the validation metrics stay independent.

Data term: a student of a teacher cannot beat the teacher jet by jet; where the teacher's
observables are biased (jets: τ21 and τ32 above Pythia), ``data_observables = μ > 0`` also
matches each batch's *distribution* of the same observables to the data's:
``μ · Σ_k W1(O_k(S(z, c_i)), O_k(x_i)) / σ_k`` over the batch, where ``x_i`` is the data row
whose conditions ``c_i`` the pair was drawn at (so both samples share the batch's conditions)
and W1 is the 1-D Wasserstein distance of two equal-size samples (mean absolute difference of
the sorted values, :func:`batch_w1`).  This trains on the observables the validation reports
(W1 of τ21, τ32, D2 against independent samples): documented as such in docs/jets.md.
Marginals can be matched with the wrong jets (a low τ32 given to light jets instead of to
those at the top mass); ``data_slices = K > 0`` adds ``K`` random projections of the
standardised observables per step (:func:`sliced_w1`), which see their joint distribution;
``data_groups = G > 0`` matches the other observables within G groups of the first (jets: the
mass; :func:`grouped_w1`).  Measured on top jets (docs/jets.md, "The observables together"):
the slices did no better than twice the marginals' weight; the groups halved the χ² of τ32
given the mass, at a cost in FPD.

References: see :mod:`hepgen.models.student` and :mod:`hepgen.models.jet_student`.
"""

from __future__ import annotations

import copy
import csv
import functools
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from hepgen._io import atomic_path
from hepgen.checkpoint import load_checkpoint
from hepgen.domains import domain_of_checkpoint
from hepgen.models import build_model
from hepgen.models.epic_gan import lsgan_critic_loss, lsgan_generator_loss

__all__ = ["batch_w1", "distill", "grouped_w1", "sliced_w1", "teacher_pairs", "unit_directions"]

log = logging.getLogger(__name__)


@torch.no_grad()
def teacher_pairs(teacher, pool: torch.Tensor, n: int, generator: torch.Generator,
                  batch_size: int = 2000, index: bool = False) -> tuple[torch.Tensor, ...]:
    """``n`` pairs ``(z, c, T(z, c))`` with ``c`` drawn with replacement from ``pool (N, C)``.

    Returns ``z: (n, noise_dim)``, ``c: (n, C)``, ``x: (n, D)`` float32 tensors, and with
    ``index`` also the rows ``(n,)`` of ``pool`` drawn (the same draws either way).

    >>> from hepgen.models import ConditionalFlow
    >>> t = ConditionalFlow(3, 1, transforms=1, hidden_features=4, n_hidden=1).eval()
    >>> z, c, x = teacher_pairs(t, torch.zeros(5, 1), 7, torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(x, t.sample_from_noise(c, z)))
    True
    """
    idx = torch.randint(len(pool), (n,), generator=generator)
    c = pool[idx]
    z = torch.randn(n, teacher.noise_dim, generator=generator)
    x = torch.cat([teacher.sample_from_noise(c[s: s + batch_size], z[s: s + batch_size])
                   for s in range(0, n, batch_size)])
    return (z, c, x.float(), idx) if index else (z, c, x.float())


def batch_w1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein-1 distance per column of two equal-size samples ``a, b: (B, K)`` → ``(K,)``.

    For equal sample sizes the optimal coupling pairs the sorted values, so
    ``W1 = mean_i |a_(i) − b_(i)|`` (differentiable in ``a`` and ``b`` almost everywhere);
    equal to :func:`scipy.stats.wasserstein_distance` of the two columns.

    >>> batch_w1(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([[2.0], [1.0], [0.0]]))
    tensor([0.3333])
    """
    if a.shape != b.shape:
        raise ValueError(f"batch_w1: expected two samples of one shape, found {tuple(a.shape)} and {tuple(b.shape)}")
    return (a.sort(0).values - b.sort(0).values).abs().mean(0)


def grouped_w1(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """W1 of the columns ``1 … K−1`` given column 0, for two equal-size samples ``a, b: (B, K)`` →
    ``(K − 1,)``: each sample ordered by its column 0 and cut into ``groups`` equal groups
    (``torch.tensor_split`` of ``B`` rows), :func:`batch_w1` between the i-th groups of the two,
    averaged over the groups.

    Marginals can agree while the association with column 0 is reversed; the groups see it:

    >>> a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0], [3.0, 1.0]])
    >>> b = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [3.0, 0.0]])
    >>> batch_w1(a, b), grouped_w1(a, b, 2)
    (tensor([0., 0.]), tensor([1.]))
    """
    if a.shape != b.shape:
        raise ValueError(f"grouped_w1: expected two samples of one shape, found {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a[a[:, 0].argsort()], b[b[:, 0].argsort()]
    rows = torch.arange(len(a)).tensor_split(groups)
    return torch.stack([batch_w1(a[r, 1:], b[r, 1:]) for r in rows]).mean(0)


def unit_directions(d: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` directions drawn uniformly on the unit sphere of ``R^d``, as the columns of ``(d, k)``.

    >>> u = unit_directions(3, 5, torch.Generator().manual_seed(0))
    >>> u.shape, torch.allclose(u.norm(dim=0), torch.ones(5))
    (torch.Size([3, 5]), True)
    """
    u = torch.randn(d, k, generator=generator)
    return u / u.norm(dim=0, keepdim=True)


def sliced_w1(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced Wasserstein-1 of two equal-size samples ``a, b: (B, d)`` along the unit columns of
    ``directions: (d, k)``, scaled by ``d``: ``d · mean_j W1(a·u_j, b·u_j)`` (a scalar).

    The marginals (:func:`batch_w1`) miss how the observables go together (for top jets: a
    student can lower τ32 in the jets below the top mass to match τ32's marginal, where
    Pythia's low τ32 sits at the top mass); the projections see the joint distribution
    (Bonneel et al., J. Math. Imaging Vis. 51 (2015) 22; Deshpande et al. arXiv:1803.11188),
    though with 9 observables a random direction weighs any one pair of them little.
    The factor ``d`` gives the slices the weight of the ``d`` marginals, whose sum is also
    ``d`` times a mean.

    Example: a and b with equal marginals, one with x = y and one with x = −y, are told apart
    only by the slices:

    >>> t = torch.linspace(-1, 1, 5)[:, None]
    >>> a, b = torch.cat([t, t], 1), torch.cat([t, -t], 1)
    >>> batch_w1(a, b).sum().item()
    0.0
    >>> round(sliced_w1(a, b, torch.tensor([[1.0], [1.0]]) / 2 ** 0.5).item(), 4)  # along (1, 1)/√2
    1.6971
    """
    return batch_w1(a @ directions, b @ directions).mean() * a.shape[1]


def distill(teacher_path, data, out_dir, *, minutes: float = 3.0, rounds: int | None = None,
            n_pairs: int = 50_000, n_val: int = 5_000, epochs_per_round: int = 2, batch_size: int = 500,
            lr: float = 1e-3, hidden: int | None = None, n_hidden: int | None = None, seed: int = 0,
            threads: int | None = None, progress: bool = True, adversarial: float = 0.0,
            init: str | os.PathLike | None = None, n_select: int = 2000,
            student_hparams: dict | None = None, observables: float = 0.0,
            data_observables: float = 0.0, data_slices: int = 0, data_groups: int = 0) -> Path:
    """Train a student of the checkpoint at ``teacher_path``; return the path of its ``best.pt``.

    Arguments:
        teacher_path: a trained checkpoint whose family has ``sample_from_noise``.
        data: a data file of the teacher's kind, or its in-memory container: the student
            learns at its conditions (the training file is the natural choice).
        out_dir: receives ``best.pt`` and ``distill_log.csv``.
        minutes: wall-clock budget; checked after every batch, and no round starts whose
            teacher pairs (timed by the last round) would take the rest.  The cosine
            learning-rate schedule spans the budget (or ``rounds``), so a stop at the limit ends it.
        rounds: number of rounds instead of a time budget; each round draws ``n_pairs``
            fresh teacher pairs and trains ``epochs_per_round`` epochs on them.
        n_val: fixed held-out teacher pairs; the student with the lowest validation L1 is kept.
        epochs_per_round: passes over each round's pairs (raise it where the teacher is slow:
            a jet transformer's pairs cost far more than the student's steps on them).
        batch_size, lr: student training.
        hidden, n_hidden: student size (None: the student family's defaults — 1024 and 3
            for the flat ``student``; per-particle width 128 and 4 EPiC layers for
            ``jet_student``).
        seed: seeds pairs, student initialisation and batch order.
        threads: torch CPU threads (None: leave as is).
        adversarial: weight λ of the critic's loss in the student's (0: pure regression).
            The data's rows are split: ``n_select`` (at most a tenth) for the selection
            score, the rest for the critic.
        init: a student checkpoint of the same family and shapes to start from (its size and
            hyper-parameters replace ``hidden``, ``n_hidden`` and ``student_hparams``).
        n_select: rows of the data kept for the adversarial selection score.
        student_hparams: further constructor arguments of the student family (e.g.
            ``{"network": "transformer"}`` for ``jet_student``).
        observables: weight λ of the physics term: the mean over pairs of
            ``Σ_k |O_k(student) − O_k(teacher)| / σ_k`` for the kind's differentiable observables
            ``O`` (``domain.distill_observables``; jets: mass / pT, τ21, τ32, D2, Σ pT_rel,
            ⟨log pT_rel⟩, σ(log pT_rel), ⟨ΔR⟩, axis ratio) with ``σ_k`` their standard
            deviations over the teacher's validation samples, added to the regression error;
            the kept round then minimises ``val_l1 + λ · val_obs`` (0: no physics term).
        data_observables: weight μ of the data term: ``Σ_k W1_k / σ_k`` between the batch's
            student observables and those of the data rows the batch's conditions were
            drawn from (:func:`batch_w1`; same ``σ_k``); the kept round then also adds
            ``μ ·`` the term over the validation pairs (0: no data term).
        data_slices: with the data term, also match the *joint* distribution of the
            observables: add the mean W1 over ``data_slices`` random unit directions of the
            standardised observable vector ``O / σ`` (fresh each step; 64 fixed ones for the
            validation score), times the number of observables, so that the slices weigh as
            much as the marginals (0: the marginals alone; :func:`sliced_w1`).
        data_groups: with the data term, also match the other observables *given the first*
            (jets: given the mass): the batch's student and data rows each ordered by the
            first observable and cut into ``data_groups`` equal groups, W1 of every other
            observable between matched groups, averaged over the groups (:func:`grouped_w1`;
            0: no grouped term).

    Raises:
        ValueError: the teacher has no deterministic ``sample_from_noise``, the data
            have no rows, ``observables`` or ``data_observables`` is asked of a kind
            without them, ``data_slices`` or ``data_groups`` without ``data_observables``, or
            more ``data_groups`` than half a batch's rows.
    """
    for name, value in (("data_slices", data_slices), ("data_groups", data_groups)):
        if value and not data_observables:
            raise ValueError(f"distill: {name}: expected it with data_observables > 0, found {name} {value} "
                             f"and data_observables {data_observables}")
    if data_groups > batch_size // 2:  # a group of fewer than two rows has no distribution to compare
        raise ValueError(f"distill: data_groups: expected at most batch_size // 2 = {batch_size // 2} groups, "
                         f"found {data_groups}")
    if threads:
        torch.set_num_threads(int(threads))
    teacher_path, out = Path(teacher_path), Path(out_dir)
    payload = load_checkpoint(teacher_path)
    domain = domain_of_checkpoint(payload, str(teacher_path))
    gen = domain.from_payload(payload, str(teacher_path))
    teacher = gen.model.eval()
    if not hasattr(teacher, "sample_from_noise") or getattr(teacher, "noise_dim", None) is None:
        raise ValueError(f"{teacher_path}: key 'family': {teacher.family!r} has no deterministic noise-to-sample "
                         "map (sample_from_noise) to distil; use a flow checkpoint (caloflow, flow) or, for "
                         "jets, a flow-matching one (epic_fm, jet_transformer_fm)")
    if teacher.data_kind is None:  # the student families: distilled, not trained on data
        raise ValueError(f"{teacher_path}: key 'family': {teacher.family!r} is already a student; "
                         "distil its teacher instead")
    if isinstance(data, (str, os.PathLike)):  # a file of the teacher's kind, else its container
        data = domain.read(data)
    pool = torch.from_numpy(np.asarray(domain.conditions(gen.preprocessor, data), dtype=np.float32))
    if len(pool) == 0:
        raise ValueError("distill: the data file has no rows to take conditions from")
    obs_of = real_obs = None
    if observables or data_observables:
        if not hasattr(domain, "distill_observables"):
            asked = "observables" if observables else "data_observables"
            raise ValueError(f"distill: {asked}: expected a kind with differentiable observables "
                             f"(distill_observables), found kind {domain.kind!r} without; use {asked}=0")
        obs_of = functools.partial(domain.distill_observables, gen.preprocessor)
    if data_observables:  # the data's own observables, row by row as the pool
        x_real = torch.from_numpy(np.asarray(domain.features(gen.preprocessor, data, np.random.default_rng(seed)),
                                             dtype=np.float32))
        real_obs = _observables(obs_of, x_real, pool)
        del x_real
    torch.manual_seed(seed)
    family, derived = teacher.student_spec()
    if init is not None:
        student = _initial_student(init, family, teacher)
    else:
        size = {k: int(v) for k, v in (("hidden", hidden), ("n_hidden", n_hidden)) if v is not None}
        student = build_model(family, n_features=teacher.n_features, n_conditions=teacher.n_conditions,
                              teacher_family=teacher.family, **derived, **size, **(student_hparams or {}))
    rng = torch.Generator().manual_seed(seed)
    val = teacher_pairs(teacher, pool, n_val, rng, index=True)
    if obs_of is not None:
        val_obs = _observables(obs_of, val[2], val[1])
        obs_scale = val_obs.std(0).clamp_min(1e-6)  # each observable in units of its spread
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    adv = _Adversary(student, domain, gen.preprocessor, data, seed, lr, n_select) if adversarial else None
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    budget = minutes * 60.0
    best, rows, step, rnd = math.inf, [], 0, 0
    steps_per_round = epochs_per_round * math.ceil(n_pairs / batch_size)
    progress_of = (lambda: rnd / rounds) if rounds else (lambda: (time.perf_counter() - t0) / budget)
    result = copy.copy(gen)
    result.meta = {**gen.meta, "distilled_from": {"checkpoint": str(teacher_path), "family": teacher.family}}
    if adversarial:
        result.meta["distilled_from"]["adversarial"] = float(adversarial)
    if init is not None:
        result.meta["distilled_from"]["init"] = str(init)
    if obs_of is not None:
        result.meta["distilled_from"].update(observables=float(observables), observable_scales=obs_scale.tolist())
    if data_observables:
        result.meta["distilled_from"]["data_observables"] = float(data_observables)
    val_dirs = None  # the slices' fixed validation directions
    if data_slices:  # their own generator: the batches and pairs stay those of a run without slices
        result.meta["distilled_from"]["data_slices"] = int(data_slices)
        slice_rng = torch.Generator().manual_seed(seed + 1)
        val_dirs = unit_directions(real_obs.shape[1], 64, torch.Generator().manual_seed(seed + 2))
    if data_groups:
        result.meta["distilled_from"]["data_groups"] = int(data_groups)
    pair_s = 0.0  # what the last round's teacher pairs took: a round that would spend the rest on them is skipped
    while (rounds and rnd < rounds) or (not rounds and time.perf_counter() - t0 + pair_s < budget):
        tp = time.perf_counter()
        z, c, x, idx = teacher_pairs(teacher, pool, n_pairs, rng, index=True)
        x_obs = _observables(obs_of, x, c) if observables else None
        pair_s = time.perf_counter() - tp
        student.train()
        losses, obs_losses, data_losses = [], [], []
        for k in range(steps_per_round):
            frac = min(progress_of() + (k / steps_per_round / rounds if rounds else 0.0), 1.0)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
            i = torch.randint(n_pairs, (batch_size,), generator=rng)
            xs = student.sample_from_noise(c[i], z[i])
            loss = l1 = student.distill_error(xs, c[i], x[i])
            if obs_of is not None:
                o_s = obs_of(xs, c[i])
                if observables:
                    o = ((o_s - x_obs[i]).abs() / obs_scale).sum(1).mean()
                    loss = loss + observables * o
                    obs_losses.append(o.item())
                if data_observables:
                    dirs = unit_directions(o_s.shape[1], data_slices, slice_rng) if data_slices else None
                    w = _data_term(o_s, real_obs[idx[i]], obs_scale, dirs, data_groups)
                    loss = loss + data_observables * w
                    data_losses.append(w.item())
            if adv is not None:
                loss = loss + adversarial * adv.step(batch_size, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(l1.item())
            step += 1
            if not rounds and time.perf_counter() - t0 >= budget:
                break
        rnd += 1
        student.eval()
        with torch.no_grad():
            xv = student.sample_from_noise(val[1], val[0])
            v = float(student.distill_error(xv, val[1], val[2]))
        row = {"round": rnd, "step": step, "train_l1": float(np.mean(losses)), "val_l1": v}
        score = v
        if obs_of is not None:
            ov = _observables(obs_of, xv, val[1])
            if observables:
                vo = float(((ov - val_obs).abs() / obs_scale).sum(1).mean())
                row.update(train_obs=float(np.mean(obs_losses)), val_obs=vo)
                score += observables * vo
            if data_observables:  # over all validation pairs at once: a sharper estimate than a batch's
                vd = float(_data_term(ov, real_obs[val[3]], obs_scale, val_dirs, data_groups))
                row.update(train_data_w1=float(np.mean(data_losses)), val_data_w1=vd)
                score += data_observables * vd
        if adv is not None:
            row.update(adv.summary())
            scored = copy.copy(result)
            scored.model = student  # in eval mode; the score only samples
            row["score"] = score = float(domain.selection_score(scored, adv.select, seed))
        rows.append({**row, "minutes": (time.perf_counter() - t0) / 60})
        if progress:
            log.info("distill round %d: %s", rnd, ", ".join(f"{k} {val:.4g}" for k, val in row.items()
                                                             if k != "round"))
        if score < best:
            best = score
            result.model = copy.deepcopy(student).eval()
            result.meta["distilled_from"].update(val_l1=v, rounds=rnd, steps=step)
            if observables:
                result.meta["distilled_from"]["val_obs"] = vo
            if data_observables:
                result.meta["distilled_from"]["val_data_w1"] = vd
            if adv is not None:
                result.meta["distilled_from"]["score"] = score
            result.save(out / "best.pt")
    with atomic_path(out / "distill_log.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out / "best.pt"


def _data_term(o: torch.Tensor, real: torch.Tensor, scale: torch.Tensor, directions: torch.Tensor | None,
               groups: int) -> torch.Tensor:
    """The data term of ``o`` against ``real`` (both ``(B, K)``, in units of ``scale``): the
    marginals' W1, plus the slices along ``directions`` (None: none), plus the groups' W1 given
    the first column (0: none)."""
    w = (batch_w1(o, real) / scale).sum()
    if directions is not None:
        w = w + sliced_w1(o / scale, real / scale, directions)
    if groups:
        w = w + (grouped_w1(o, real, groups) / scale[1:]).sum()
    return w


@torch.no_grad()
def _observables(obs_of, x: torch.Tensor, c: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The domain's observables ``(N, K)`` of ``x: (N, D)`` at ``c: (N, C)``, in batches, no gradient."""
    return torch.cat([obs_of(x[s: s + batch_size], c[s: s + batch_size]) for s in range(0, len(x), batch_size)])


def _initial_student(path, family: str, teacher):
    """The model of the student checkpoint at ``path``, checked against the teacher's student."""
    payload = load_checkpoint(path)
    student = domain_of_checkpoint(payload, str(path)).from_payload(payload, str(path)).model
    if student.family != family or (student.n_features, student.n_conditions) != (teacher.n_features,
                                                                                  teacher.n_conditions):
        raise ValueError(f"{path}: key 'family': expected a {family} of {teacher.n_features} features and "
                         f"{teacher.n_conditions} conditions (the teacher's student), found "
                         f"{student.family} of {student.n_features} and {student.n_conditions}")
    return student.train()


class _Adversary:
    """The critic of adversarial distillation: its data, optimiser and least-squares losses.

    The data's rows are shuffled (``seed``) and split: ``select`` (``n_select`` rows, at most a
    tenth) for the kind's selection score, the rest as the critic's real samples (features
    and conditions preprocessed as for training).  Labels ±1 for real / generated and target
    +1 for the student, as :class:`~hepgen.models.epic_gan.JetGAN`'s LSGAN.
    """

    def __init__(self, student, domain, pre, data, seed: int, lr: float, n_select: int) -> None:
        if not hasattr(student, "make_critic"):
            raise ValueError(f"adversarial: the {student.family!r} student has no critic (make_critic); "
                             "adversarial distillation is available for jet students")
        self.student, self.critic = student, student.make_critic()
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(data))
        k = max(1, min(int(n_select), len(data) // 10))
        self.select = data.subset(np.sort(order[:k]))
        train = data.subset(np.sort(order[k:]))
        self.x = torch.from_numpy(np.asarray(domain.features(pre, train, rng), dtype=np.float32))
        self.c = torch.from_numpy(np.asarray(domain.conditions(pre, train), dtype=np.float32))
        # betas (0.5, 0.9): the GAN setting of hepgen.models.epic_gan
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))
        self.parts: list[tuple[float, float, float]] = []

    def step(self, batch_size: int, rng: torch.Generator) -> torch.Tensor:
        """One critic update; returns the student's adversarial loss (with its graph)."""
        j = torch.randint(len(self.x), (batch_size,), generator=rng)
        xr, cr = self.x[j], self.c[j]
        fake = self.student.sample_from_noise(cr, torch.randn(batch_size, self.student.noise_dim, generator=rng))
        s = self.critic(torch.cat([xr, fake.detach()]), torch.cat([cr, cr]))
        s_real, s_fake = s[:batch_size], s[batch_size:]
        loss_c = lsgan_critic_loss(s_real, s_fake)
        self.opt.zero_grad(set_to_none=True)
        loss_c.backward()
        self.opt.step()
        loss_g = lsgan_generator_loss(self.critic(fake, cr))
        self.parts.append((loss_c.item(), s_real.mean().item(), s_fake.mean().item()))
        return loss_g

    def summary(self) -> dict[str, float]:
        """Mean critic loss and scores since the last summary (for the log)."""
        a = np.asarray(self.parts or [(math.nan,) * 3])
        self.parts = []
        return {"critic_loss": float(a[:, 0].mean()), "critic_real": float(a[:, 1].mean()),
                "critic_fake": float(a[:, 2].mean())}
