"""Real Jupyter pieces for the notebook tests: `lead-finder serve` in a child process, a Jupyter
environment of temporary folders, and nbclient execution with a real kernel.

    with lead_finder_serve(tmp_path) as server:              # `lead-finder serve` on loopback
        env = jupyter_env(tmp_path, SIXTYFOUR_API_KEY=server.api_key, ...)
        nb = execute_notebook(path, env=env, cwd=folder)     # outputs and widget state kept
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from servers import HOST, free_port, new_api_key

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
EXAMPLES = REPO / "examples"
ARTIFACTS = REPO / "test-artifacts"


@dataclass
class ServeProcess:
    """A running `lead-finder serve`: where it listens, the key it accepts, its child process."""

    base_url: str
    api_key: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stats(self) -> dict[str, Any]:
        """The server's counters (GET /_lf/stats): charges per lead key, requests, cents."""
        response = httpx.get(self.base_url + "/_lf/stats", headers={"x-api-key": self.api_key},
                             trust_env=False, timeout=10)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def _serve_command() -> list[str]:
    # The console script the README tells people to run; `python -m lead_finder` is the same CLI.
    script = Path(sys.executable).with_name("lead-finder")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lead_finder"]


@contextmanager
def lead_finder_serve(tmp: Path, *args: str) -> Iterator[ServeProcess]:
    """Run `lead-finder serve --port N *args` on 127.0.0.1 with a fresh canary key; stop it with
    SIGTERM afterwards. Keys and the job file come from the environment, as in production."""
    key = new_api_key()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEAD_FINDER_", "SIXTYFOUR_"))}
    env["LEAD_FINDER_SERVER_KEYS"] = key
    env["LEAD_FINDER_SERVER_JOBS"] = str(tmp / "server-jobs.sqlite3")
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*_serve_command(), "serve", "--host", HOST, "--port", str(port), *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError("lead-finder serve exited:\n" + log_path.read_text()[-2000:])
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("lead-finder serve did not start") from None
                time.sleep(0.05)
        yield ServeProcess(f"http://{HOST}:{port}", key, process, log_path)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM (a clean stop; Jupyter asks for confirmation on Ctrl-C), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def jupyter_env(tmp: Path, **settings: str) -> dict[str, str]:
    """Environment variables that keep Jupyter, IPython and lead_finder inside `tmp`.

    The kernel inherits them. `settings` adds lead_finder's (SIXTYFOUR_API_KEY,
    LEAD_FINDER_BASE_URL, ...); the cache is `tmp/cache.sqlite3` unless given.
    """
    env = {
        "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
        # no kernelspec from the user's own folders: the kernel is this venv's Python
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",  # no "migrating paths" deprecation warning
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
        "IPYTHONDIR": str(tmp / "ipython"),
        "MPLBACKEND": "agg",
        "LEAD_FINDER_CACHE": str(tmp / "cache.sqlite3"),
    }
    env.update(settings)
    return env


def execute_notebook(path: Path, *, cwd: Path, timeout: float = 120,
                     extra_cells: Sequence[str] = ()) -> Any:
    """Execute a notebook with a real kernel (nbclient), keeping widget state; returns the
    executed notebook. `extra_cells` are appended first (test code run in the same kernel).
    The kernel's environment is this process's: set it with monkeypatch before calling."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def cell_text(cell: Mapping[str, Any]) -> str:
    """Everything a code cell printed or showed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def last_json(cell: Mapping[str, Any]) -> Any:
    """The last line of a cell's printed output, read as JSON (test cells report that way)."""
    printed = "".join(o["text"] for o in cell.get("outputs", [])
                      if o.get("output_type") == "stream" and o.get("name") == "stdout")
    lines = [line for line in printed.splitlines() if line.strip()]
    return json.loads(lines[-1])


def copy_project_files(tmp: Path) -> Path:
    """Copy notebooks/ and examples/ into `tmp` (executing writes exports next to a notebook)
    and return the notebooks folder."""
    shutil.copytree(NOTEBOOKS, tmp / "notebooks")
    shutil.copytree(EXAMPLES, tmp / "examples")
    return tmp / "notebooks"
