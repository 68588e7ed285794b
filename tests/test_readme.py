"""The README's Python example runs as written (in a temporary folder) and does what its comments say."""

import json
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    text = README.read_text()
    match = re.search(r"^## Python / Jupyter\n.*?^```python\n(.*?)^```", text, re.S | re.M)
    assert match, "README.md: no ```python block under '## Python / Jupyter'"
    return match.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_python_example(), str(README), "exec"), scope)
    fake, test, also, metrics = scope["fake"], scope["test"], scope["also"], scope["metrics"]
    np.testing.assert_array_equal(fake.incident_energies.ravel(), test.incident_energies.ravel())
    assert fake.showers.shape == test.showers.shape == (500, 384)
    assert len(also) == 500 and set(np.unique(also.incident_energies)) == {1e4, 5e4}
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "train_log.csv").is_file()
    stored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert stored["separation_power_mean"] == metrics["separation_power_mean"]
    assert "<img src='data:image/png;base64," in (tmp_path / "eval" / "report.html").read_text()
    assert f"mean separation power {metrics['separation_power_mean']:.3f}" in capsys.readouterr().out
