"""deploy/ (issue 4 §6): no Docker engine here, so each file is checked by the tool that reads it.

- the Dockerfile: hadolint, plus the properties the issue asks for (multi-stage, slim base,
  models pulled and verified at build time with the test suite's own command, non-root USER,
  HEALTHCHECK on /readyz, no network at run time);
- compose.yaml: the Compose specification's parser (compose-spec) and the security settings;
- nginx.conf: ``nginx -t``, then a real nginx on loopback in front of a stand-in upstream,
  checking the body limit, the JSON 413, and X-Forwarded-For overwritten at the edge.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cleancut.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PULL = "cleancut models pull u2net u2netp"  # scripts/setup runs exactly this
DEFAULTS = Settings.model_fields


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run scripts/setup (it installs the test tools)")
    return found


# --- Dockerfile ---------------------------------------------------------------------------------
def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[list[tuple[str, str]]] = [[]]
    for line in logical:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--format", "json", "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_dockerfile_is_multi_stage_on_slim_python_3_11() -> None:
    preamble, *stages = dockerfile_stages()
    args = dict(a.split("=", 1) for i, a in preamble if i == "ARG")
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    froms = [stage[0][1] for stage in stages]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    runtime = stages[-1]
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv", "--from=builder /models /models"]


def test_models_are_pulled_at_build_time_with_the_test_suites_command() -> None:
    builder, runtime = dockerfile_stages()[1:]
    runs = [a for i, a in builder if i == "RUN"]
    assert any("pip install --no-cache-dir ." in r for r in runs)
    assert any(r.startswith(PULL) for r in runs), runs
    assert PULL in (ROOT / "scripts" / "setup").read_text()
    env = " ".join(a for i, a in builder if i == "ENV")
    assert "CLEANCUT_MODEL_DIR=/models" in env
    # The runtime stage runs nothing that needs the network, and no pip is left to run.
    runtime_runs = " ".join(a for i, a in runtime if i == "RUN")
    assert "pip" not in runtime_runs and "models pull" not in runtime_runs
    assert not any(i == "ADD" for i, _ in runtime)
    assert any("pip uninstall --yes pip" in r for r in runs)


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    runtime = dockerfile_stages()[-1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) >= 1000
    # The user owns only the temporary directory.
    setup = " ".join(a for i, a in runtime if i == "RUN")
    assert f"install -d -o {uid} -g {gid} -m 0700 /tmp/cleancut" in setup


def test_runtime_environment_and_command() -> None:
    runtime = dockerfile_stages()[-1]
    env = dict(pair.split("=", 1) for i, a in runtime if i == "ENV" for pair in shlex.split(a))
    assert env["CLEANCUT_MODEL_DIR"] == "/models"
    assert env["CLEANCUT_TMP_DIR"] == env["TMPDIR"] == "/tmp/cleancut"
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/cleancut/")  # numba caches; the root is RO
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["CLEANCUT_URL_FETCH_ENABLED"] == "false"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    cmd = [a for i, a in runtime if i == "CMD"][-1]
    assert json.loads(cmd) == ["cleancut", "serve", "--host", "0.0.0.0"]


def test_healthcheck_asks_readyz_with_python() -> None:
    runtime = dockerfile_stages()[-1]
    checks = [a for i, a in runtime if i == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert "--start-period=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/readyz" in argv[2] and "urllib.request" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # the one-liner is valid Python


# --- compose.yaml -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification() -> None:
    try:
        from compose_spec import PyCompose
    except ImportError:
        pytest.fail("compose-spec is not installed; run scripts/setup (it installs test tools)")
    parsed = PyCompose.from_yaml((DEPLOY / "compose.yaml").read_text())
    assert parsed.service_names() == ["cleancut"]


def test_compose_locks_the_container_down(compose: dict[str, Any]) -> None:
    service = compose["services"]["cleancut"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "cap_add" not in service and "privileged" not in service
    assert "no-new-privileges:true" in service["security_opt"]
    assert service.get("network_mode") != "host"
    assert all(str(v).endswith(":ro") for v in service.get("volumes", []))
    uid = service["user"].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000


def test_compose_gives_one_tmpfs_for_the_temporary_directory(compose: dict[str, Any]) -> None:
    service = compose["services"]["cleancut"]
    (mount,) = service["tmpfs"]
    path, _, options = mount.partition(":")
    assert path == "/tmp/cleancut"  # CLEANCUT_TMP_DIR in the Dockerfile
    opts = dict(o.partition("=")[::2] for o in options.split(","))
    uid = service["user"].split(":")[0]
    assert opts["uid"] == uid and opts["mode"] == "0700"
    assert {"noexec", "nosuid", "nodev"} <= opts.keys() and opts["size"]


def test_compose_limits_memory_cpu_and_processes(compose: dict[str, Any]) -> None:
    service = compose["services"]["cleancut"]
    assert re.fullmatch(r"\d+[mg]", service["mem_limit"])
    assert service["memswap_limit"] == service["mem_limit"]
    cpus = float(service["cpus"])
    env = service["environment"]
    workers, threads = int(env["CLEANCUT_WORKERS"]), int(env["CLEANCUT_INTRA_OP_THREADS"])
    assert 1 <= workers * threads <= cpus
    assert service["pids_limit"] > 0


def test_compose_publishes_on_loopback_only_and_needs_api_keys(compose: dict[str, Any]) -> None:
    service = compose["services"]["cleancut"]
    assert service["ports"] and all(p.startswith("127.0.0.1:") for p in service["ports"])
    env = service["environment"]
    secret = env["CLEANCUT_API_KEYS_FILE"]
    assert secret == "/run/secrets/cleancut_api_keys"
    assert service["secrets"] == ["cleancut_api_keys"]
    assert "cleancut_api_keys" in compose["secrets"]
    assert env["CLEANCUT_URL_FETCH_ENABLED"] == "false"
    grace = int(service["stop_grace_period"].rstrip("s"))
    assert grace > float(env["CLEANCUT_REQUEST_TIMEOUT_S"])


# --- nginx.conf ---------------------------------------------------------------------------------
def nginx_directives() -> dict[str, list[str]]:
    text = re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text())
    found: dict[str, list[str]] = {}
    for statement in re.findall(r"([a-z_0-9]+)\s+([^;{}]*);", text):
        found.setdefault(statement[0], []).append(" ".join(statement[1].split()))
    return found


def _size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def test_nginx_matches_the_services_limits() -> None:
    d = nginx_directives()
    body_limit = _size_bytes(d["client_max_body_size"][0])
    max_upload = DEFAULTS["max_upload_bytes"].default
    assert max_upload <= body_limit <= max_upload * 1.1  # the limit, plus multipart framing
    deadline = DEFAULTS["request_timeout_s"].default
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        seconds = int(d[name][0].rstrip("s"))
        assert deadline < seconds <= deadline + 10, name  # the service's 504 comes first
    assert d["proxy_request_buffering"] == ["on"]
    headers = dict(h.split(" ", 1) for h in d["proxy_set_header"])
    assert headers["X-Forwarded-For"] == "$remote_addr"  # overwritten, never appended
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert any(listen.startswith("443 ssl") for listen in d["listen"])
    assert d["ssl_protocols"] == ["TLSv1.2 TLSv1.3"]
    assert d["server_tokens"] == ["off"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("nginx-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def nginx_dir() -> Iterator[Path]:
    """nginx's working folder. Not under pytest's tmp_path: run as root, nginx's workers are
    nobody, and they must reach their temporary files."""
    folder = Path(tempfile.mkdtemp(prefix="cleancut-nginx-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nginx_config(folder: Path, cert: Path, key: Path, *, upstream: int, https: int) -> Path:
    """deploy/nginx.conf with test certificates, loopback ports and writable paths."""
    text = (DEPLOY / "nginx.conf").read_text()
    replacements = {
        "/etc/ssl/cleancut/fullchain.pem": str(cert),
        "/etc/ssl/cleancut/privkey.pem": str(key),
        "server 127.0.0.1:5000;": f"server 127.0.0.1:{upstream};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{_free_port()};",
        "listen [::]:80;": "",
        "http {": (
            "http {\n"
            f"    access_log {folder}/access.log;\n"
            + "".join(
                f"    {kind}_temp_path {folder}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
        ),
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    path = folder / "nginx.conf"
    path.write_text(text)
    return path


def _nginx_argv(config: Path, folder: Path) -> list[str]:
    return [_tool("nginx"), "-c", str(config), "-p", str(folder), "-e", f"{folder}/error.log",
            "-g", f"pid {folder}/nginx.pid; daemon off;"]  # fmt: skip


def test_nginx_accepts_the_config(nginx_dir: Path, certificate: tuple[Path, Path]) -> None:
    config = _nginx_config(nginx_dir, *certificate, upstream=5000, https=8443)
    result = subprocess.run(
        [*_nginx_argv(config, nginx_dir), "-t"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


class _Echo(http.server.BaseHTTPRequestHandler):
    """A stand-in for cleancut: answers with the headers and body size it received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", "0"))
        received = 0
        for _ in range(size // 65536 + 2):  # bounded by the declared size
            chunk = self.rfile.read(min(65536, size - received))
            if not chunk:
                break
            received += len(chunk)
        body = json.dumps({"headers": dict(self.headers), "received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy(nginx_dir: Path, certificate: tuple[Path, Path]) -> Iterator[str]:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    upstream.daemon_threads = True
    thread = threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    https = _free_port()
    config = _nginx_config(
        nginx_dir, *certificate, upstream=upstream.server_address[1], https=https
    )
    process = subprocess.Popen(
        _nginx_argv(config, nginx_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):  # up to 10 s for nginx to listen
            if process.poll() is not None:
                pytest.fail(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", https)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("nginx did not start listening")
        yield f"https://127.0.0.1:{https}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()
        thread.join(timeout=10)


def test_nginx_proxies_with_a_fresh_forwarded_for(
    proxy: str, certificate: tuple[Path, Path]
) -> None:
    body = b"x" * 2_000_000
    response = requests.post(
        proxy + "/api/remove", data=body, headers={"X-Forwarded-For": "203.0.113.9"},
        verify=str(certificate[0]), timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["received"] == len(body)
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"  # the client's value is dropped
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    assert re.fullmatch(r"[0-9a-f]{32}", seen["headers"]["X-Request-Id"])


def test_nginx_refuses_a_body_over_the_limit_with_cleancuts_json(
    proxy: str, certificate: tuple[Path, Path]
) -> None:
    too_big = _size_bytes(nginx_directives()["client_max_body_size"][0]) + 1
    response = requests.post(
        proxy + "/api/remove", data=b"x" * too_big, verify=str(certificate[0]), timeout=30
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["code"] == "file_too_large"
