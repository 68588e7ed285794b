"""Progress through the named stages of a long step (evaluation: features, metric groups, classifier
epochs, figures, …).

A :class:`Stages` object is what the evaluation functions take as ``progress``:

* ``False`` / ``None``: silent (``hepgen evaluate -q``);
* ``True``: one tqdm bar on stderr that counts the finished stages and shows the current one
  (and, inside a stage, e.g. the classifier's epoch) as its postfix;
* a callable ``f(message: str)``: called with every stage and sub-step message instead of a bar
  (notebooks, logging, tests).

A training loop without its own bar calls :meth:`Stages.step` for its epochs: the message changes,
the count of finished stages does not.  tqdm rather than hand-written ``print``: the bar is
redrawn in place on a terminal and is a widget in Jupyter (``tqdm.auto``).

>>> seen = []
>>> with Stages(seen.append, "evaluate", ["features", "classifier"]) as stages:
...     stages.stage("features")
...     stages.stage("classifier")
...     stages.step("classifier", "epoch 1/2")
>>> seen
['features', 'classifier', 'classifier: epoch 1/2']
>>> with Stages(False, "evaluate") as quiet:
...     quiet.stage("features")     # prints nothing
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

__all__ = ["Stages"]


class Stages:
    """Report the stages of a long step; see the module docstring.

    Arguments:
        progress: False/None (silent), True (tqdm bar on stderr), a callable taking the message,
            or another :class:`Stages` (returned as it is by :meth:`of`).
        desc: the bar's label, e.g. ``"evaluate showers"``.
        planned: the stage names expected (sets the bar's total; stages not listed still show).
    """

    def __init__(self, progress, desc: str, planned: Sequence[str] = ()) -> None:
        self.callback: Callable[[str], None] | None = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            self.bar = tqdm(total=len(planned) or None, desc=desc, unit="stage", leave=False,
                            bar_format="{desc}: {n_fmt}/{total_fmt} stages [{elapsed}] {postfix}"
                            if planned else "{desc}: {n_fmt} stages [{elapsed}] {postfix}")
        self.current: str | None = None
        self._users = 1  # close() ends the bar when the last user of a shared Stages closes it

    @classmethod
    def of(cls, progress, desc: str, planned: Sequence[str] = ()) -> Stages:
        """``progress`` itself when it is already a :class:`Stages` (nested calls share one bar; each
        caller closes it, the last close ends it)."""
        if isinstance(progress, Stages):
            progress._users += 1
            return progress
        return cls(progress, desc, planned)

    def stage(self, name: str) -> None:
        """Stage ``name`` starts (the previous one is done)."""
        if self.bar is not None:
            if self.current is not None:
                self.bar.update(1)
            self.bar.set_postfix_str(name)
        self.current = name
        if self.callback is not None:
            self.callback(name)

    def step(self, name: str, detail: str) -> None:
        """A sub-step of stage ``name`` (e.g. ``"epoch 3/50"``): shown, not counted."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"{name}: {detail}")
        if self.callback is not None:
            self.callback(f"{name}: {detail}")

    def epochs(self, name: str) -> Callable[[int, int], None] | None:
        """A ``f(epoch, n_epochs)`` callback for a training loop inside stage ``name``; None when silent
        (so that a loop can skip the call)."""
        if self.bar is None and self.callback is None:
            return None
        return lambda epoch, n_epochs: self.step(name, f"epoch {epoch}/{n_epochs}")

    def close(self) -> None:
        self._users -= 1
        if self._users <= 0 and self.bar is not None:
            if self.current is not None:
                self.bar.update(1)
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
