"""The native launcher: the services of docker-compose.yml as real processes on loopback.

`python -m shared.launcher` starts the retriever, waits until it is ready, starts the generator
pointed at it, and stops both on Ctrl-C / SIGTERM (SIGTERM lets uvicorn drain requests in
flight). The end-to-end tests use `ServiceProcess` directly. Settings pass through the
environment exactly as in the compose file (`KGRAG_RETRIEVER_*`, `KGRAG_GENERATOR_*`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# OpenMP threads that spin while they wait starve the other service on a small CPU (MiniLM on 2
# threads beside a busy neighbour: 37 -> 258 facts/s once they sleep), so both sleep when idle, but
# spin briefly first (libgomp, torch's OpenMP on Linux; 10,000 spins, about 0.1 ms): a forward pass
# runs hundreds of small operators, and waking the threads for each made single answers 10-13%
# slower and a single search 2.2x slower (18.4 against 8.4 ms in process).
OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}


@dataclass
class ServiceProcess:
    """One service (`python -m <module>`) as a child process, with its log in a file."""

    module: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        prefix = "KGRAG_RETRIEVER_" if self.module.startswith("retriever") else "KGRAG_GENERATOR_"
        env = {
            **OPENMP_ENV,
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            f"{prefix}HOST": self.host,
            f"{prefix}PORT": str(self.port),
            **self.env,
        }
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.module} not ready on {self.url} after {timeout_s:.0f}s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shared.launcher", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--retriever-port", type=int, default=8001)
    p.add_argument("--generator-port", type=int, default=8000)
    p.add_argument("--data-dir", default=os.environ.get("KGRAG_RETRIEVER_DATA_DIR", "var/demo"))
    p.add_argument("--log-dir", type=Path, default=Path("var/log"))
    p.add_argument("--no-generator", action="store_true", help="start the retriever only")
    return p


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    retriever = ServiceProcess(
        "retriever_service",
        args.retriever_port,
        {"KGRAG_RETRIEVER_DATA_DIR": args.data_dir},
        args.log_dir / "retriever.log",
    )
    services = [retriever]
    if not args.no_generator:
        services.append(
            ServiceProcess(
                "generator_service",
                args.generator_port,
                {"KGRAG_GENERATOR_RETRIEVER_URL": retriever.url},
                args.log_dir / "generator.log",
            )
        )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for service in services:
            service.start().wait_ready()
            print(
                f"{service.module} ready at {service.url} (docs: {service.url}/docs, log: {service.log_path})",
                flush=True,
            )
        while all(s.proc is not None and s.proc.poll() is None for s in services):
            time.sleep(0.5)
        print("a service exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    raise SystemExit(main())
