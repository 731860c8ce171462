"""Issue 4, section 6: the service runs as an unprivileged user with the code and the model
directory read-only, and writes nothing at run time outside its temporary directory
(``CLEANCUT_TMP_DIR``): uploads stay in memory, numba's cache goes to the temporary directory.

Needs root (to create the user and run the server as it); skipped otherwise.
"""

from __future__ import annotations

import io
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.server.conftest import free_port, has_transparency, open_image

USER = "cleancut-test"
REPO = Path(__file__).resolve().parents[2]
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: creates a user and runs the service as it",
)


@pytest.fixture(scope="session")
def test_user() -> Iterator[pwd.struct_passwd]:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("useradd is needed to create the unprivileged user")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        entry = pwd.getpwnam(USER)
    # The interpreter may live under a directory others cannot enter (pyenv in /root): let
    # them pass through (o+x, no listing) while the test runs, then put the modes back.
    changed: list[tuple[Path, int]] = []
    for path in [Path(sys.base_prefix), Path(sys.prefix), REPO]:
        for folder in [*reversed(path.parents), path]:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                changed.append((folder, stat.S_IMODE(mode)))
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield entry
    finally:
        for folder, mode in reversed(changed):
            folder.chmod(mode)


def _files(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")} if root.exists() else {}


def _owned_by(uid: int, roots: tuple[str, ...], skip: Path) -> list[str]:
    found = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            if Path(folder) == skip or skip in Path(folder).parents:
                dirs[:] = []
                continue
            for name in [*dirs, *names]:
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_uid == uid and Path(path) != skip:
                        found.append(path)
                except OSError:
                    pass
    return found


def _big_png(photo: bytes) -> bytes:
    """A PNG over 1 MB (Starlette would spool it to a temporary file)."""
    im = Image.open(io.BytesIO(photo)).convert("RGB").resize((1400, 1400))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    data = buf.getvalue()
    assert len(data) > 1_100_000
    return data


def test_runs_read_only_as_an_unprivileged_user_and_writes_only_its_temp_dir(
        test_user: pwd.struct_passwd, model_dir: Path, photo: bytes) -> None:
    base = Path(tempfile.mkdtemp(prefix="cleancut-ro-", dir="/tmp"))
    try:
        base.chmod(0o755)
        models = base / "models"  # root-owned, read-only for the service
        models.mkdir(mode=0o755)
        for name in ("u2netp.onnx", "u2netp.json"):
            if (model_dir / name).exists():
                shutil.copy(model_dir / name, models / name)
                (models / name).chmod(0o644)
        home, tmp = base / "home", base / "tmp"  # the user's own
        for folder in (home, tmp):
            folder.mkdir(mode=0o700)
            os.chown(folder, test_user.pw_uid, test_user.pw_gid)
        before = _files(models)

        port = free_port()
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "CLEANCUT_MODEL_DIR": str(models), "CLEANCUT_TMP_DIR": str(tmp),
            "CLEANCUT_HOST": "127.0.0.1", "CLEANCUT_PORT": str(port),
            "CLEANCUT_MODELS": "u2netp", "CLEANCUT_DEFAULT_MODEL": "u2netp",
            "CLEANCUT_WORKERS": "1",
            "CLEANCUT_REQUEST_TIMEOUT_S": "600",  # matting may compile its kernels first
        }
        log = base / "server.log"
        with open(log, "wb") as out:  # as the user itself (not via runuser), so that SIGTERM
            process = subprocess.Popen(  # reaches the server and its exit status is ours
                [sys.executable, "-m", "cleancut.server"], env=env, cwd=home,
                user=test_user.pw_uid, group=test_user.pw_gid, extra_groups=[],
                stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(900):  # bounded: 3 minutes
                assert process.poll() is None, log.read_text()
                try:
                    if requests.get(url + "/readyz", timeout=5).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
            else:
                pytest.fail(f"not ready:\n{log.read_text()}")

            big = _big_png(photo)
            response = requests.post(url + "/api/remove", files={"file": ("big.png", big)},
                                     timeout=600)
            assert response.status_code == 200, response.text
            assert has_transparency(open_image(response.content))
            matted = requests.post(url + "/api/remove", files={"file": photo},
                                   data={"alpha_matting": "true"}, timeout=600)
            assert matted.status_code == 200, matted.text
            compat = requests.post(url + "/v1.0/removebg", files={"image_file": big},
                                   data={"size": "full"}, timeout=600)
            assert compat.status_code == 200, compat.text
            assert requests.get(url + "/metrics", timeout=30).status_code == 200
        finally:
            process.terminate()
            code = process.wait(timeout=120)
        assert code == 0, log.read_text()
        assert "Traceback" not in log.read_text()

        assert _files(models) == before
        assert list(home.iterdir()) == []  # no ~/.cache, nothing
        # Everything the service created is owned by its user: look wherever it could write,
        # and in the code (the repository is shared with other work, so not by modification
        # time), the interpreter and the virtual environment.
        places = (*WORLD_WRITABLE, str(REPO / "src"), sys.prefix, sys.base_prefix)
        stray = [f for f in _owned_by(test_user.pw_uid, places, skip=tmp) if Path(f) != home]
        assert stray == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
