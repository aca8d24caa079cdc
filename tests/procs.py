"""Run the product's real processes (as the Procfile and README do) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TWILIO_", "REDIS_URL"))}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
    base["LOG_LEVEL"] = "WARNING"
    base.update(extra)
    return base


def procfile() -> dict[str, str]:
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            name, cmd = line.split(":", 1)
            out[name.strip()] = cmd.strip()
    return out


def start(cmd: str, environ: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["bash", "-c", f"exec {cmd}"], env=environ, cwd=cwd, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process {proc.args} did not stop within {timeout}s of SIGTERM") from None


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def chatgw(*args: str, environ: dict[str, str], cwd: Path) -> str:
    out = subprocess.run([str(BIN / "chatgw"), *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start_up(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`chatgw up` on `port` with its data under `data_dir`, as a process group of its own."""
    environ = env(CHATGW_DATA_DIR=str(data_dir / "var"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [str(BIN / "chatgw"), "up", "--port", str(port)],
        env=environ,
        cwd=data_dir,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc, environ
