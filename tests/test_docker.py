"""The images (docker/) and the way to a cluster (`cuelab pipeline submit`).

No Docker engine or cluster runs here: the Dockerfiles are linted and checked against the local
environment's pins, not built; submit is tested on the ways it must fail.
"""

import http.server
import re
import socket
import subprocess
import threading
import time
import tomllib

import pytest
from conftest import BIN, ROOT, tiny_experiment, write_params
from cuelab.errors import CuelabError
from cuelab.pipeline import submit

DOCKERFILES = sorted((ROOT / "docker").glob("*Dockerfile"))


def instructions(dockerfile):
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in dockerfile.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [tuple(line.strip().split(None, 1)) for line in joined.splitlines() if line.strip()]


def pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(re.match(r"([\w.-]+)==([\w.+]+)", d).groups() for d in deps)


def test_there_are_a_render_and_a_training_image():
    assert {f.name for f in DOCKERFILES} >= {"render.Dockerfile", "train.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda f: f.name)
def test_hadolint_finds_nothing(dockerfile):
    r = subprocess.run([BIN / "hadolint", "--no-color", str(dockerfile)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


@pytest.mark.reliability(10)
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda f: f.name)
def test_the_images_turn_telemetry_off(dockerfile):
    env = " ".join(args for op, args in instructions(dockerfile) if op == "ENV")
    assert "MLFLOW_DISABLE_TELEMETRY=true" in env and "DVC_NO_ANALYTICS=1" in env


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda f: f.name)
def test_every_pip_install_is_constrained_by_constraints_txt(dockerfile):
    runs = [args for op, args in instructions(dockerfile) if op == "RUN"]
    installs = [cmd for args in runs for cmd in re.split(r"&&|;", args) if "pip install" in cmd]
    assert installs, f"{dockerfile.name} installs nothing with pip"
    for cmd in installs:
        assert re.search(r"(-c|--constraint)\s+constraints\.txt\b", cmd), (
            f"{dockerfile.name}: `{cmd.strip()}` must install with -c constraints.txt, the one "
            "file that pins the environment")
    copies = " ".join(args for op, args in instructions(dockerfile) if op == "COPY")
    assert "constraints.txt" in copies, f"{dockerfile.name} does not copy constraints.txt"


@pytest.mark.parametrize("package", ["torch", "bpy"])
def test_dockerfile_pins_match_pyproject(package):
    """Bumping torch or bpy in pyproject.toml without the images (or the reverse) fails here."""
    want = pyproject_pins()[package]
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert f"{package}=={want}" in constraints, f"constraints.txt: {package} is not {want}"
    arg = f"{package.upper()}_VERSION"
    found = {}
    for dockerfile in DOCKERFILES:
        for op, args in instructions(dockerfile):
            pins = re.findall(rf"\b{arg}=([\w.+]+)", args) if op == "ARG" else []
            pins += re.findall(rf"\b{package}==([\w.+]+)", args)
            for pin in pins:
                found.setdefault(dockerfile.name, []).append(pin)
                assert pin == want, (f"{dockerfile.name}: {package} {pin}, but pyproject.toml "
                                     f"pins {want}: change both")
    # torch is installed by hand in every image; bpy's system libraries are chosen for one version
    needed = DOCKERFILES if package == "torch" else [ROOT / "docker" / "render.Dockerfile"]
    assert all(f.name in found for f in needed), f"no {package} pin in {needed}"


def test_the_build_context_holds_what_the_dockerfiles_copy():
    """.dockerignore lets in only what is listed (`*`, then `!path`): every COPY source must be."""
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for dockerfile in DOCKERFILES:
        for op, args in instructions(dockerfile):
            if op == "COPY" and not args.startswith("--from"):
                *sources, _ = args.split()
                for source in sources:
                    assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
                    assert source.rstrip("/") in allowed, (
                        f"{dockerfile.name} copies {source}: add !{source} to .dockerignore")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submit_to_an_unreachable_host_fails_quickly_and_clearly(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    host = f"http://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    r = subprocess.run([BIN / "cuelab", "pipeline", "submit", "--host", host, "--params",
                        str(params)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 30
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"--host {host}: cannot reach Kubeflow Pipelines" in r.stderr
    assert "check the URL" in r.stderr and "port-forward" in r.stderr


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_submit_to_a_server_that_is_not_kubeflow_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(CuelabError, match="HTTP 404.*not the Kubeflow Pipelines API"):
            submit(host, params)
    finally:
        server.shutdown()


def test_submit_wants_a_url_with_a_scheme(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    with pytest.raises(CuelabError, match=r"--host: got 'localhost:8080'.*http://"):
        submit("localhost:8080", params)
