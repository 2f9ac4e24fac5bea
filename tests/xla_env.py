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
