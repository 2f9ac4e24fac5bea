"""Environments for the tests' child processes that need several host CPU devices."""

from __future__ import annotations

import os


def with_host_devices(devices: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``devices`` host CPU devices.

    The device count is added to the XLA flags already set, rather than
    replacing them, so the suite's compile settings (tests/conftest.py) reach
    the child too."""
    env = dict(os.environ if base is None else base)
    kept = [f for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join([*kept, f"--xla_force_host_platform_device_count={devices}"])
    return env


def run_on_two_devices(script: str) -> str:
    """Runs ``script`` in this process, which has two host CPU devices
    (conftest.py), and returns what it printed: a script that needs two
    devices no longer pays for a fresh interpreter and its imports."""
    import contextlib
    import io

    import jax

    assert len(jax.local_devices()) == 2, "conftest.py gives every test process two CPU devices"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(script, "<two-device script>", "exec"), {"__name__": "__two_devices__"})
    return printed.getvalue()
