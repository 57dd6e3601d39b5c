"""Config: defaults < file < flags; bad settings are one line naming the key, exit 78."""
from __future__ import annotations

import pytest

from edge import config
from edge.errors import EX_CONFIG


def test_defaults_file_and_overrides(tmp_path):
    p = tmp_path / "k.toml"
    p.write_text('[camera]\nsource = "v4l2:/dev/video0"\nfps = 7.5\n[storage]\nmin_free_mb = 50\n')
    cfg = config.load(p, {"camera": {"source": "replay:/x"}, "storage": {"state_dir": None}})
    assert cfg["camera"]["source"] == "replay:/x" and cfg["camera"]["fps"] == 7.5
    assert cfg["storage"]["min_free_mb"] == 50 and cfg["model"]["tile"] == 744
    assert config.load()["camera"]["source"] == "simulated"


@pytest.mark.parametrize("text, key", [
    ("[camera]\nsorce = 'x'\n", "sorce"),
    ("[camra]\n", "camra"),
    ("[camera]\nwidth = '1920'\n", "width"),
    ("[camera]\nwidth = -5\n", "width"),
    ("[capture]\nkeep_raw = 1\n", "keep_raw"),
    ("[model]\nbackend = 'cuda'\n", "backend"),
    ("[model]\nsample = 'fish'\n", "sample"),
    ("[camera]\nsource = 'usb0'\n", "source"),
    ("[camera\n", "not valid TOML"),
    ("[export]\nauto_dir = 'media/usb'\n", "auto_dir"),
    ("[export]\nauto_dir = '/media/my stick'\n", "auto_dir"),
    ("[storage]\ndelete_after_upload_days = -1\n", "delete_after_upload_days"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert key in str(e.value) and e.value.code == EX_CONFIG and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")


def test_state_dir_follows_systemd(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/phonescope")
    assert str(config.state_dir(config.load())) == "/var/lib/phonescope"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert str(config.state_dir(config.load())) == "var"


def test_a_reader_that_goes_away_is_not_an_internal_error(capsys, monkeypatch):
    """`phonescope status | head`: the pipe closes under the command's print; it ends quietly with 0."""
    import sys

    from edge.cli import guarded

    def print_into_a_closed_pipe():
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", sys.stdout)   # guarded swaps stdout for /dev/null: restored after the test
    assert guarded("status", print_into_a_closed_pipe) == 0
    assert "internal error" not in capsys.readouterr().err
