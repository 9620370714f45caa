"""Running the real `appserver-bot` program (`python -m bot`) as an operator would: a clean environment,
a working folder of its own, and its output read line by line while it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def bot_env(env: dict[str, str]) -> dict[str, str]:
    """Only what the test sets: nothing leaks in from the environment the tests run in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}


def run_bot(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=bot_env(env), capture_output=True,
                          text=True, timeout=timeout)


class BotProcess:
    """A running `appserver-bot`, its stdout and stderr collected into `lines` as they come."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=cwd, env=bot_env(env), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Until `text` is in `count` lines of output (fails if the program ends first)."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            assert self.proc.poll() is None or self._reader.is_alive(), f"the bot ended:\n{self.output}"
            assert time.monotonic() < deadline, f"fewer than {count} lines with {text!r} in:\n{self.output}"
            time.sleep(0.05)

    def health(self, port: int, timeout: float = 60) -> httpx.Response:
        """The first answer of /healthz (the bot may still be importing when this is called)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except httpx.TransportError:
                assert self.proc.poll() is None, f"the bot ended:\n{self.output}"
                assert time.monotonic() < deadline, f"/healthz never answered:\n{self.output}"
                time.sleep(0.1)

    def stop(self, sig: int, timeout: float = 30) -> int:
        """Send `sig` and wait for the end; the exit status (negative: ended by that signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the bot did not end within {timeout} s:\n{self.output}") from None
        self._reader.join(10)
        return code


def assert_bot_lines_only(output: str) -> None:
    """At INFO every log line is the bot's own: no library narrates its work."""
    for line in output.splitlines():
        assert line.startswith("appserver-bot: ") or re.match(r"\S+ \S+ (INFO|WARNING|ERROR) bot[.\w]*: ", line), line


def wait_for_sandbox(url: str, proc: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until a sandbox started as `appserver-bot sandbox` answers, failing if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url + "/_sandbox/log", timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None, "the sandbox did not start"
            time.sleep(0.1)
