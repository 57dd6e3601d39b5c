"""Shared fixtures: real models exported through the real export path."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import NotifySocket, export_random_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return export_random_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def scaled_model(tmp_path_factory) -> Path:
    return export_random_model(tmp_path_factory.mktemp("model15") / "scaled.onnx", width=8, blocks=1, scale=1.5)


@pytest.fixture
def notify(tmp_path):
    """systemd's end of the notify protocol on a real datagram socket (the daemon needs systemd-python to
    speak it)."""
    pytest.importorskip("systemd.daemon", reason="the daemon speaks sd_notify through systemd-python")
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def caplog(caplog):
    """The daemon's logger, even after setup_logging() (which stops it propagating to the root) or a library's
    logging.config call (which disables loggers that existed before it) ran in this process."""
    import logging

    logger = logging.getLogger("phonescope")
    old = logger.propagate, logger.level, logger.disabled
    logger.propagate, logger.disabled = True, False
    logger.setLevel(logging.INFO)
    yield caplog
    logger.propagate, logger.level, logger.disabled = old
