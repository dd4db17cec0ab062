"""Run the Procfile's processes together (`make run`): one terminal, prefixed output, Ctrl-C stops them all.

Why not honcho: when Ctrl-C reaches every process of the terminal's group at once, honcho's own helper
processes die first and it hangs with the web server and workers gone but itself alive. Here each process
runs in its own process group, so stopping a group reaches its children too (gunicorn's and Celery's
workers), and a process whose launcher died gets SIGTERM from the kernel instead of living on.
"""

import argparse
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STOP_GRACE_SECONDS = 4.0
PR_SET_PDEATHSIG = 1


def read_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries.append((name.strip(), command.strip()))
    return entries


def _die_with_launcher() -> None:
    """Runs in the child before exec: its own process group, and SIGTERM if the launcher dies."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the process group still lets the launcher stop it


def _relay(name: str, width: int, stream, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<{width}} | {line}")
            sys.stdout.flush()


def _signal_groups(processes: list[subprocess.Popen], sig: int) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass


def _group_alive(process: subprocess.Popen) -> bool:
    try:
        os.killpg(process.pid, 0)
        return True
    except ProcessLookupError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", default="Procfile", type=Path)
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    args = parser.parse_args()

    os.environ["PORT"] = str(args.port)
    entries = read_procfile(args.procfile)
    width = max(len(name) for name, _ in entries)
    lock = threading.Lock()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())

    processes = []
    for name, command in entries:
        process = subprocess.Popen(
            shlex.split(os.path.expandvars(command)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_die_with_launcher,
        )
        processes.append(process)
        threading.Thread(target=_relay, args=(name, width, process.stdout, lock), daemon=True).start()

    exit_code = 0
    while not stopping.wait(0.2):
        ended = [(name, p.returncode) for (name, _), p in zip(entries, processes, strict=True) if p.poll() is not None]
        if ended:
            with lock:
                print(f"{ended[0][0]} exited with code {ended[0][1]}; stopping the others", flush=True)
            exit_code = 1
            break

    _signal_groups(processes, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while any(_group_alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_groups(processes, signal.SIGKILL)  # whatever did not stop in time, children included
    for process in processes:
        process.wait()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
