"""A trained jet generator: model + jet preprocessing, saved and loaded together.

The jets counterpart of :class:`hepgen.domains.showers.generator.ShowerGenerator`.  Checkpoints have the same
format (``hepgen.checkpoint/1``) with ``kind = "jets"`` and no geometry.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from tqdm.auto import tqdm

from hepgen._version import __version__
from hepgen.checkpoint import load_checkpoint, save_checkpoint
from hepgen.data.jets import JetData, jet_type_index
from hepgen.domains.jets.preprocessing import JetPreprocessor
from hepgen.metrics.jets import jet_mass
from hepgen.models import GenerativeModel, build_model

__all__ = ["JetGenerator"]


class JetGenerator:
    """Samples JetNet-layout jets from a trained conditional particle-cloud model.

    Arguments:
        model: a trained jets family (``data_kind == "jets"``) on preprocessed clouds.
        preprocessor: the fitted :class:`~hepgen.domains.jets.preprocessing.JetPreprocessor`.
        meta: JSON-able facts about training.
    """

    kind = "jets"

    def __init__(self, model: GenerativeModel, preprocessor: JetPreprocessor, meta=None) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.meta = dict(meta or {})

    @property
    def n_particles(self) -> int:
        return self.preprocessor.n_particles

    @torch.no_grad()
    def sample(self, jet_type, pt=None, eta=None, mass=None, n=None, seed: int = 0, batch_size: int = 1_000,
               progress: bool = False, num_particles=None) -> JetData:
        """Generate one jet per entry.

        Arguments:
            jet_type: ``(N,)`` JetNet type indices or names (``"g"``, ``"t"``, …), or one name
                for all (then ``N`` is the length of ``pt``).
            pt, eta, mass: ``(N,)`` jet kinematics in GeV for the conditions the model uses.
            n: ``(N,)`` real particles per jet (1 … P); default: drawn from the training
                distribution of each type (seeded by ``seed``).
            seed: seeds the multiplicities and the model's noise.
            batch_size: jets per model call.
            num_particles: ``(N,)`` the full constituent counts to store in ``jet_features``
                (default ``n``).

        Returns:
            :class:`~hepgen.data.jets.JetData` with ``particle_features (N, P, 4)`` sorted by
            ``pt_rel`` and ``jet_features = [pt, eta, mass, num_particles]`` where pT and η
            are the conditions and the mass is that of the generated constituents
            (``m_rel · pT``; NaN without a pT).
        """
        pt = None if pt is None else np.asarray(pt, dtype=np.float64).reshape(-1)
        if isinstance(jet_type, str):
            size = len(pt) if pt is not None else (len(np.asarray(n).reshape(-1)) if n is not None else None)
            if size is None:
                raise ValueError("JetGenerator.sample: one jet type given; pass pt or n to say how many jets")
            jt = np.full(size, jet_type_index(jet_type), dtype=np.int64)
        else:
            jt = np.asarray([jet_type_index(t) if isinstance(t, str) else int(t) for t in np.asarray(jet_type).reshape(-1)],
                            dtype=np.int64)
        size = len(jt)
        cols = {"pt": pt, "eta": eta, "mass": mass}
        jf = np.full((size, 4), np.nan)
        for k, col in (("pt", 0), ("eta", 1), ("mass", 2)):
            if cols[k] is not None:
                v = np.asarray(cols[k], dtype=np.float64).reshape(-1)
                if len(v) != size:
                    raise ValueError(f"JetGenerator.sample: {k} has {len(v)} entries, jet_type {size}")
                jf[:, col] = v
            elif k in self.preprocessor.condition_names:
                raise ValueError(f"JetGenerator.sample: the model is conditioned on {k!r}; pass {k}=...")
        rng = np.random.default_rng(seed)
        n = self.preprocessor.sample_multiplicity(jt, rng) if n is None else np.asarray(n).reshape(-1).astype(np.int64)
        if len(n) != size:
            raise ValueError(f"JetGenerator.sample: n has {len(n)} entries, jet_type {size}")
        c = self.preprocessor.transform_conditions(n, jt, jf)
        device = next(self.model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(int(seed))
        self.model.eval()
        out = np.empty((size, self.n_particles, 4), dtype=np.float32)
        for s in tqdm(range(0, size, batch_size), desc="sampling jets", unit="batch", disable=not progress):
            ct = torch.from_numpy(c[s : s + batch_size]).to(device)
            x = self.model.sample(ct, generator=gen).float().cpu().numpy()
            out[s : s + batch_size] = self.preprocessor.inverse(x, n[s : s + batch_size])
        jf[:, 2] = jet_mass(out) * jf[:, 0]
        jf[:, 3] = n if num_particles is None else np.asarray(num_particles, dtype=np.float64).reshape(-1)
        jet_features = jf if np.all(np.isfinite(jf)) else None
        # evaluate_jets skips the jet-feature observables of such files (they are conditions)
        attrs = {"generator": self.model.family, "hepgen_version": __version__, "seed": int(seed),
                 "jet_features_from": "conditions"}
        return JetData(out, jet_features, jt, attrs)

    def sample_in_training_range(self, jet_type: str, n: int, seed: int = 0, batch_size: int = 1_000,
                                 progress: bool = False) -> JetData:
        """``n`` jets of ``jet_type`` with pT and η uniform in the training ranges (``meta['pt_range']``,
        ``meta['eta_range']``, GeV) and multiplicities from the training distribution; seeded by ``seed``
        (what ``hepgen sample-jets --type T --n N`` writes)."""
        if n is None or int(n) < 1 or jet_type is None:
            raise ValueError("give --like FILE.h5 (sample at its jets' conditions), or --type T and --n N")
        rng = np.random.default_rng(seed)
        lo, hi = self.meta.get("pt_range", [1000.0, 1000.0])
        elo, ehi = self.meta.get("eta_range", [0.0, 0.0])
        return self.sample(jet_type, pt=rng.uniform(lo, hi, int(n)), eta=rng.uniform(elo, ehi, int(n)), seed=seed,
                           batch_size=batch_size, progress=progress)

    def sample_like(self, data: JetData, seed: int = 0, batch_size: int = 1_000, progress: bool = False) -> JetData:
        """Generate one jet per jet of ``data``, at its type, kinematics and multiplicity."""
        jf = data.jet_features
        kin = {k: (None if jf is None else jf[:, col]) for k, col in (("pt", 0), ("eta", 1), ("mass", 2))}
        return self.sample(data.jet_type, n=data.mask.sum(axis=1), seed=seed, batch_size=batch_size,
                           progress=progress, num_particles=None if jf is None else jf[:, 3], **kin)

    # --- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike, trainer_state: dict | None = None) -> None:
        save_checkpoint(path, {
            "hepgen_version": __version__,
            "kind": "jets",
            "family": self.model.family,
            "hparams": self.model.hparams,
            "model": self.model.state_dict(),
            "preprocessing": self.preprocessor.state_dict(),
            "geometry": None,
            "meta": self.meta,
            "trainer": trainer_state,
        })

    @classmethod
    def load(cls, path: str | os.PathLike) -> JetGenerator:
        return cls.from_payload(load_checkpoint(path), source=str(path))

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> JetGenerator:
        if payload.get("kind") != "jets":
            raise ValueError(f"{source}: key 'kind': expected a jets checkpoint ('jets'), found "
                             f"{payload.get('kind', 'showers')!r}; load shower checkpoints with ShowerGenerator")
        try:
            model = build_model(payload["family"], **payload["hparams"])
            model.load_state_dict(payload["model"])
            pre = JetPreprocessor.from_state(payload["preprocessing"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"{source}: inconsistent checkpoint ({type(err).__name__}: {err})") from None
        model.eval()
        return cls(model, pre, payload.get("meta"))
