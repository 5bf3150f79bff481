"""Without ``-v`` the console shows warnings only, even from loggers that run at INFO."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from cocoon.cli import main


@pytest.fixture
def bare_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("bare_root")
@pytest.mark.parametrize(("verbose", "info_shown"), [(False, False), (True, True)])
def test_console_level_follows_verbose(
    verbose: bool, info_shown: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger().handlers = []  # pytest adds its capture handlers around the call itself
    main._logging(verbose)
    worker_log = logging.getLogger("cocoon.worker.quiet-test")
    worker_log.setLevel(logging.INFO)  # as a worker does for its own /logs view
    worker_log.info("served one request")
    worker_log.warning("engine is slow")
    err = capsys.readouterr().err
    assert "engine is slow" in err
    assert ("served one request" in err) is info_shown
