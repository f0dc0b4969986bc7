"""Processes the benchmark starts, and what /proc says about them.

Each process is started pinned with taskset in a session of its own, so
that it and whatever it forks (workers) form one process group: CPU time
and RSS are summed over the group, and stopping it signals the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL to what is left after timeout."""
        pgid = self.pid  # start_new_session: the group is ours alone
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not group_pids(pgid) and not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.popen.poll()
                if not group_pids(pgid):
                    break
                time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1.0)


_STARTED: list[Proc] = []


def stop_all() -> None:
    """Stop every process start() started, the last first."""
    while _STARTED:
        _STARTED.pop().stop()


def start(
    name: str, argv: list[str], *, cpus: str, log_dir: Path, env: dict[str, str] | None = None, cwd: str | None = None
) -> Proc:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    proc = Proc(name=name, popen=popen, log_path=log_path)
    _STARTED.append(proc)
    return proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after "(comm)": index 0 is field 3 (state) of proc(5).
    return text[text.rindex(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def cpu_seconds(pgid: int) -> float:
    """User plus system CPU time of every live process in the group."""
    ticks = 0
    for pid in group_pids(pgid):
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


def _summed_kib(pgid: int, path: str, field: str) -> int:
    """A `Field:  N kB` line of /proc/PID/<path>, summed over the group."""
    total = 0
    for pid in group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def rss_kib(pgid: int) -> int:
    """VmRSS summed over the group, in KiB."""
    return _summed_kib(pgid, "status", "VmRSS:")


def pss_kib(pgid: int) -> int:
    """Pss summed over the group, in KiB: pages shared between processes (the workers' tiktoken
    encodings, loaded before the fork) count once in all, where VmRSS counts them in each."""
    return _summed_kib(pgid, "smaps_rollup", "Pss:")


def pin_self(cpu: int) -> bool:
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except OSError:
        return False


def raise_nofile() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def wait_until(check, *, timeout: float, proc: Proc | None = None, interval: float = 0.1) -> bool:
    """Poll the async check until it returns true, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            if await check():
                return True
        except Exception:
            pass
        await asyncio.sleep(interval)
    return False
