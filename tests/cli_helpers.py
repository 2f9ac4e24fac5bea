"""Helpers of the tests that drive the ``jaxrl`` command in-process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jaxrl.cli import main


def run_cli(capsys, *argv):
    started = time.perf_counter()
    status = main([str(a) for a in argv])
    seconds = time.perf_counter() - started
    out, err = capsys.readouterr()
    return status, out, err, seconds


def assert_usage_error(status, err, seconds, *fragments):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxrl: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert seconds < 3.0


def jaxrl_command(*argv):
    """The real command line, as a subprocess, with the fake agent registered."""
    return [sys.executable, str(Path(__file__).parent / "fake_agent.py"), *map(str, argv)]
