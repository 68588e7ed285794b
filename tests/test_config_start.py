"""config.starting_config: the one rule by which `hepgen train` and `hepgen.train_generator` pick a configuration."""

from __future__ import annotations

import pytest

from hepgen.config import TrainConfig, dump_config, preset, starting_config


def test_an_explicit_config_wins_over_family_and_default():
    given = TrainConfig(family="vae", epochs=3)
    assert starting_config(given, family="gan", default=lambda: TrainConfig(family="flow")) is given


def test_a_yaml_file_is_read_and_a_bare_name_is_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    dump_config(TrainConfig(family="flow_matching", epochs=7), path)
    from_file = starting_config(str(path), family="gan")
    assert (from_file.family, from_file.epochs) == ("flow_matching", 7)
    assert starting_config("caloflow") == preset("caloflow")
    with pytest.raises(ValueError, match="unknown preset 'no_such'"):
        starting_config("no_such")


def test_family_preset_then_family_defaults_then_the_kinds_default():
    assert starting_config(family="caloflow") == preset("caloflow")      # the family has a preset
    assert starting_config(family="flow") == TrainConfig(family="flow")  # code defaults
    assert starting_config(default=lambda: TrainConfig(family="epic_fm", epochs=2)).epochs == 2
