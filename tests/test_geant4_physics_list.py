"""The Geant4 engine's physics-list option: data-set checks before any run, provenance.

The stock lists (``standard``, ``option4``) cannot run here (no Geant4 data sets); what is
tested is that they are refused, in one line naming the variable and the folder, before
anything runs or is written, and that a complete data-set tree passes the check.
"""

import os
import subprocess
import sys

import pytest

from hepgen.data.formats import read_showers
from hepgen.simulate.geant4 import engine as g4engine  # first: sets Geant4's data-free env
from hepgen.simulate.geant4 import DATA_SETS, PHYSICS_LIST, PHYSICS_LISTS, check_data_sets

VARS = ("G4LEDATA", "G4LEVELGAMMADATA", "G4ENSDFSTATEDATA", "GEANT4_DATA_DIR")


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """No data-set variable set; GEANT4_DATA_DIR an empty folder."""
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    empty = tmp_path / "g4data"
    empty.mkdir()
    monkeypatch.setenv("GEANT4_DATA_DIR", str(empty))
    return empty


def _full_tree(root):
    """A folder laid out like Geant4 11.4's data sets (only the entries the check looks at)."""
    (root / "G4EMLOW8.8" / "brem_SB").mkdir(parents=True)
    (root / "G4EMLOW8.8" / "livermore").mkdir()
    (root / "PhotonEvaporation6.1.2").mkdir()
    (root / "G4ENSDFSTATE3.0").mkdir()
    (root / "G4ENSDFSTATE3.0" / "ENSDFSTATE.dat").write_text("")
    return root


def test_stock_lists_need_the_data_sets(no_data_env, monkeypatch, tmp_path):
    assert check_data_sets("data-free") == {}
    assert set(PHYSICS_LISTS) == {"data-free", "standard", "option4"}
    with pytest.raises(ValueError) as err:
        check_data_sets("standard")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (f"physics list 'standard' (G4EmStandardPhysics) needs Geant4's G4EMLOW8.8 data set: G4LEDATA is "
                   f"not set and GEANT4_DATA_DIR={no_data_env}: G4EMLOW8.8/ is not a folder; set G4LEDATA to its "
                   "folder, or GEANT4_DATA_DIR to the folder that holds G4EMLOW8.8/")
    monkeypatch.delenv("GEANT4_DATA_DIR")
    with pytest.raises(ValueError, match=r"^physics list 'option4' \(G4EmStandardPhysics_option4\) needs Geant4's "
                                         r"G4EMLOW8.8 data set: neither G4LEDATA nor GEANT4_DATA_DIR is set; "):
        check_data_sets("option4")
    # a G4LEDATA folder that is not G4EMLOW
    wrong = tmp_path / "emlow"
    (wrong / "brem_SB").mkdir(parents=True)
    monkeypatch.setenv("G4LEDATA", str(wrong))
    with pytest.raises(ValueError, match=rf"^.*G4LEDATA={wrong} has no livermore \(not a G4EMLOW8.8 folder\); "):
        check_data_sets("standard")
    # G4EMLOW alone is not enough: the ion tables of the stock constructors need PhotonEvaporation
    (wrong / "livermore").mkdir()
    with pytest.raises(ValueError, match=r"needs Geant4's PhotonEvaporation6.1.2 data set: neither G4LEVELGAMMADATA "):
        check_data_sets("standard")
    with pytest.raises(ValueError, match=r"^physics_list: expected one of \['data-free', 'option4', 'standard'\], "
                                         r"found 'FTFP_BERT'$"):
        check_data_sets("FTFP_BERT")


def test_complete_data_sets_pass_the_check(no_data_env, monkeypatch, tmp_path):
    root = _full_tree(no_data_env)  # GEANT4_DATA_DIR holds every data set: Geant4 11's folder names
    assert check_data_sets("standard") == {var: str(root / d) for var, (d, _) in DATA_SETS.items()}
    other = tmp_path / "my_emlow"  # a variable wins over GEANT4_DATA_DIR
    (other / "brem_SB").mkdir(parents=True)
    (other / "livermore").mkdir()
    monkeypatch.setenv("G4LEDATA", str(other))
    assert check_data_sets("option4")["G4LEDATA"] == str(other)


def test_simulate_refuses_before_any_run(no_data_env, tmp_path):
    pytest.importorskip("geant4_pybind")
    out = tmp_path / "run" / "x.h5"
    out.parent.mkdir()
    with pytest.raises(ValueError, match=r"^physics list 'standard' \(G4EmStandardPhysics\) needs Geant4's G4EMLOW8.8"):
        g4engine.simulate_geant4(out, 3, preset="demo", physics_list="standard", progress=False)
    assert not list(out.parent.iterdir())  # no chunk folder, no file
    with pytest.raises(ValueError, match=r"^physics_list: expected one of"):
        g4engine.simulate_geant4(out, 3, preset="demo", physics_list="qbbc", progress=False)


def _cli(*args, env=None):
    code = "import sys; from hepgen.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_cli_physics_list_default_provenance_and_error(tmp_path):
    pytest.importorskip("geant4_pybind")
    out = tmp_path / "g4.h5"
    res = _cli("simulate", "showers", "--engine", "geant4", "--preset", "demo", "--n", "2", "--energies", "300",
               "--seed", "4", "-q", "-o", out)
    assert res.returncode == 0, res.stderr[-3000:]
    attrs = read_showers(out).attrs
    assert attrs["physics_list_name"] == "data-free" and attrs["physics_list"] == PHYSICS_LIST
    assert attrs["physics_deviations"].startswith("vs G4EmStandardPhysics: no Seltzer-Berger")
    assert attrs["preset"] == "demo" and not any(k.startswith("data_set_") for k in attrs)
    # the stock list without data sets: one line on stderr, exit 2, nothing written
    env = {v: "" for v in VARS[:3]} | {"GEANT4_DATA_DIR": str(tmp_path / "none")}
    (tmp_path / "none").mkdir()
    res = _cli("simulate", "showers", "--engine", "geant4", "--preset", "demo", "--n", "2", "--physics-list",
               "standard", "-q", "-o", tmp_path / "std.h5", env=env)
    assert res.returncode == 2 and not (tmp_path / "std.h5").exists()
    assert res.stderr.strip().splitlines()[-1] == (  # after the log's INFO line with the command
        f"hepgen: error: physics list 'standard' (G4EmStandardPhysics) needs Geant4's G4EMLOW8.8 data set: "
        f"G4LEDATA is not set and GEANT4_DATA_DIR={tmp_path / 'none'}: G4EMLOW8.8/ is not a folder; set G4LEDATA "
        "to its folder, or GEANT4_DATA_DIR to the folder that holds G4EMLOW8.8/")
    res = _cli("simulate", "showers", "--physics-list", "standard", "--n", "2", "-q", "-o", tmp_path / "gf.h5")
    assert res.returncode == 2 and "--physics-list: options of --engine geant4" in res.stderr
