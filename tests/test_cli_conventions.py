"""The conventions every ``hepgen`` sub-command shares (docs/cli.md): help text and defaults on every
option, one spelling per concept (old spellings hidden aliases), --resume/--no-resume, --device,
presets without a thread count, shell completion."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hepgen.cli import _HelpFormatter, _parsers, _torch_device, build_parser, main
from hepgen.config import preset_names

SRC = Path(__file__).resolve().parents[1] / "src"


def _sub(parser, *path):
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _prog_actions():
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if not isinstance(action, (argparse._SubParsersAction, argparse._HelpAction, argparse._VersionAction)):
                yield parser.prog, action


def test_every_option_and_argument_of_every_sub_command_has_help():
    missing = [f"{prog} {'/'.join(a.option_strings) or a.dest}" for prog, a in _prog_actions()
               if a.help is None or (a.help is not argparse.SUPPRESS and not a.help.strip())]
    assert missing == []


def test_every_option_with_a_default_shows_it_in_its_help():
    parsers = list(_parsers(build_parser()))
    assert {p.formatter_class for p in parsers} == {_HelpFormatter}  # every sub-parser, not only the top one
    formatter = _HelpFormatter("hepgen")
    missing = []
    for prog, a in _prog_actions():
        if (not a.option_strings or a.help is argparse.SUPPRESS or a.default is None or a.default is argparse.SUPPRESS
                or isinstance(a, argparse._StoreTrueAction)):
            continue
        if "default" not in formatter._get_help_string(a):
            missing.append(f"{prog} {a.option_strings[0]}")
    assert missing == []
    text = _sub(build_parser(), "sample").format_help()
    assert "and 256 was also faster than 1000 (default: 256)" in " ".join(text.split())
    assert "(default: 256) (default" not in text


@pytest.mark.parametrize(("path", "default"), [
    (["train", "d.h5"], False), (["sample", "c.pt"], False), (["simulate", "jets"], True),
    (["simulate", "events", "--process", "qcd"], True), (["simulate", "tth", "--process", "tth"], True),
    (["simulate", "l1"], True), (["refine", "train", "a.h5", "b.h5"], True), (["simulate", "showers"], None),
])
def test_resume_is_one_convention_resume_and_no_resume_everywhere(path, default):
    parser = build_parser()
    assert parser.parse_args([*path, "-o", "x"]).resume is default
    assert parser.parse_args([*path, "-o", "x", "--resume"]).resume is True
    assert parser.parse_args([*path, "-o", "x", "--no-resume"]).resume is False


def test_counts_are_n_and_jet_types_are_type_the_old_spellings_hidden_aliases():
    parser = build_parser()
    ej = ["evaluate-jets", "r.h5", "g.h5", "-o", "e"]
    new = parser.parse_args([*ej, "--n-eval-samples", "7", "--n-batches", "3"])
    old = parser.parse_args([*ej, "--num-eval-samples", "7", "--num-batches", "3"])
    assert (new.num_eval_samples, new.num_batches) == (old.num_eval_samples, old.num_batches) == (7, 3)
    assert parser.parse_args(["export", "c.pt", "-o", "m.onnx"]).check_n == 1000
    assert parser.parse_args(["export", "c.pt", "-o", "m.onnx", "--check-n", "5"]).check_n == 5
    assert parser.parse_args(["export", "c.pt", "-o", "m.onnx", "--n-check", "6"]).check_n == 6
    assert parser.parse_args(["bench", "c.pt", "-o", "b", "--simulator-n", "9"]).simulator_n == 9
    assert parser.parse_args(["train", "d.h5", "-o", "r", "--type", "g,t"]).types == "g,t"
    assert parser.parse_args(["train", "d.h5", "-o", "r", "--types", "g"]).types == "g"
    for path, hidden in ((["evaluate-jets"], "--num-eval-samples"), (["evaluate"], "--num-batches"),
                         (["export"], "--check-n"), (["bench"], "--simulator-n"), (["train"], "--types")):
        assert hidden not in _sub(build_parser(), *path).format_help()
    # the counts of things: --n or --n-<things>, never --num-* or --<things>-n in the shown help
    shown = [s for _, a in _prog_actions() if a.help is not argparse.SUPPRESS for s in a.option_strings]
    assert [s for s in shown if s.startswith("--num-") or (s.endswith("-n") and s != "--n")] == []
    assert "--type" in shown and "--types" not in shown


@pytest.mark.parametrize("path", [["train", "d.h5"], ["sample", "c.pt"], ["sample-jets", "c.pt"]])
def test_device_is_selectable_on_train_sample_and_sample_jets(path):
    parser = build_parser()
    assert parser.parse_args([*path, "-o", "x", "--device", "auto"]).device == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args([*path, "-o", "x", "--device", "tpu"])


def test_device_names_resolve_and_missing_cuda_is_one_line(monkeypatch):
    import torch

    assert str(_torch_device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert str(_torch_device("auto")) == "cpu"
    with pytest.raises(ValueError, match=r"^--device cuda: torch sees no CUDA device \(try --device auto or cpu\)$"):
        _torch_device("cuda")


def test_train_passes_device_to_the_configuration(tmp_path):
    from hepgen.checkpoint import load_checkpoint

    assert main(["simulate", "showers", "-o", str(tmp_path / "d.h5"), "--n", "200", "-q"]) == 0
    assert main(["train", str(tmp_path / "d.h5"), "-o", str(tmp_path / "run"), "--family", "vae", "--epochs", "1",
                 "--device", "auto", "--threads", "1", "--set", "tensorboard=false", "--set", "n_eval=20",
                 "-q"]) == 0
    meta = load_checkpoint(tmp_path / "run" / "best.pt")["meta"]
    assert meta["train_config"]["device"] == "auto"


def test_presets_do_not_fix_a_thread_count():
    presets = sorted((SRC / "hepgen" / "configs").glob("*.yaml"))
    assert presets
    for path in presets:
        assert "threads" not in (yaml.safe_load(path.read_text()) or {}), path.name


def test_shell_completion_via_the_argcomplete_protocol(tmp_path):
    out = tmp_path / "completions.txt"

    def complete(line: str) -> list[str]:
        env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n",
               "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.run([sys.executable, "-c", "from hepgen.cli import main; main()"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return sorted(x.strip() for x in out.read_text().split("\n") if x.strip())

    assert complete("hepgen tr") == ["train"]
    assert complete("hepgen simulate ") == sorted(["-h", "--help", "showers", "jets", "events", "tth", "l1"])
    assert complete("hepgen sample best.pt --dev") == ["--device"]
    # the marker argcomplete's shell hook looks for in the first 1024 bytes of the entry point's module
    assert "PYTHON_ARGCOMPLETE_OK" in (SRC / "hepgen" / "cli.py").read_bytes()[:1024].decode()


def test_top_level_help_is_written_for_users():
    text = build_parser().format_help()
    assert "Train, sample and validate generative surrogates" in text
    assert "hepgen train train.h5 -o run/" in text  # the quick start keeps its lines
    assert "pip install 'hepgen[EXTRA]'" in text and 'eval "$(register-python-argcomplete hepgen)"' in text
    assert "``" not in text  # no reStructuredText markup


def test_every_command_with_a_seed_has_a_default_seed_so_its_log_line_names_it():
    # `hepgen train` takes the configuration's seed when --seed is not given (and logs that one)
    unseeded = [prog for prog, a in _prog_actions() if a.dest == "seed" and a.default is None]
    assert unseeded == ["hepgen train"]


def test_train_preset_help_names_every_packaged_preset():
    action = next(a for a in _sub(build_parser(), "train")._actions if "--preset" in a.option_strings)
    names = action.help.split("NAME.yaml:")[1].split(")")[0]
    assert sorted(n.strip() for n in names.split(",")) == preset_names()
