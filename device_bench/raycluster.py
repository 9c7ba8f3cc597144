"""Starting or joining Ray: one way for every caller (`run --executor ray`, `bench --farm`, auto's cost pool).

Why one place: `ray.init` on a HOST:PORT nobody listens on retries for minutes, and its failures are multi-line
exceptions of several types; every caller wants a fast, one-line failure instead. No TensorFlow here: the
device farm runs from `device_bench` alone.
"""

from __future__ import annotations

import logging
import socket


class RayUnavailable(RuntimeError):
    """Ray is missing, or nothing answers at the address; the message is one line for the user."""


def import_ray(hint: str):
    """The `ray` module, or RayUnavailable naming `hint` (how to install it)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"Ray is not installed: {hint}") from None
    return ray


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds on a HOST:PORT nobody listens on (ray.init would retry it for minutes)."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RayUnavailable(f"Invalid value for `ray_address`. Expected HOST:PORT (of `ray start --head`) or auto. "
                             f"Received: {address!r}.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailable(f"Cannot join Ray at {address}: nothing answers there ({e.strerror or type(e).__name__}); "
                             f"start the head with `ray start --head --port {port}`.") from None


def connect(ray, address: str | None, runtime_env: dict | None = None) -> bool:
    """Start a local Ray (address None: "local", never someone else's cluster by accident) or join `address`,
    unless this process is already connected; True when this call connected (the caller then shuts it down)."""
    if ray.is_initialized():
        return False
    check_reachable(address)
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, runtime_env=runtime_env)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: one line
        text = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise RayUnavailable(f"Cannot start or join Ray at {address or 'a new local Ray'}: {type(e).__name__}"
                             f"{': ' + text[0][:240] if text else ''}") from None
    return True
