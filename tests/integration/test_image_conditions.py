"""A worker under the Docker image's conditions, without Docker: the files deploy/Dockerfile copies,
installed by root without -e into a fresh venv, run by an unprivileged user whose HOME does not
exist from a root-owned working directory, with the image's environment. It must get to /readyz
and screen an upload, and write nothing outside the temp directory.

Those conditions once stopped every container: numba could not cache the index code anywhere
("no locator available" at import) and Faust could not create its data directory in the working
directory. The venv reuses the test venv's installed dependencies through a .pth file (the
image's pins are the same, see deploy/constraints.txt), so only the project itself is built.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.adapters.broker import free_port
from tests.imagegen import encode, synthetic_image
from tests.integration.harness import REPO, KafkaIO, Topics, http_get, wait_until
from tests.opsfiles import DOCKERFILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The image's user has no home; this path must never be created.
HOME = "/nonexistent"


def dockerfile_instructions(keyword: str) -> list[list[str]]:
    """The arguments of every ``keyword`` instruction (continuation lines joined)."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        line.split()[1:]
        for line in joined.splitlines()
        if line.split() and line.split()[0] == keyword
    ]


def dockerfile_env() -> dict[str, str]:
    """Every ``ENV key=value ...`` of the Dockerfile, in order (later ones win)."""
    return dict(pair.split("=", 1) for args in dockerfile_instructions("ENV") for pair in args)


def copy_like_the_image(destination: Path) -> None:
    """Copy what the Dockerfile's COPY lines copy, from the repository to ``destination``
    (standing in for its WORKDIR)."""
    for *sources, target in dockerfile_instructions("COPY"):
        for source in sources:
            src = REPO / source
            dst = destination / target
            if target.endswith("/") or len(sources) > 1:
                dst = dst / src.name
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)


def as_user(user: pwd.struct_passwd) -> dict[str, object]:
    """Popen arguments that run the child as ``user`` with no supplementary groups."""
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def runs_as(user: pwd.struct_passwd, python: str) -> bool:
    """Can ``user`` run ``python``, and can that interpreter start itself again (the hashing
    pool's forkserver does)? An interpreter under a private home fails the second step."""
    check = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True)"
    try:
        done = subprocess.run(
            [python, "-c", check],
            env={"PATH": "/usr/bin:/bin", "HOME": HOME},
            cwd="/",
            capture_output=True,
            timeout=60,
            **as_user(user),  # type: ignore[arg-type]
        )
    except PermissionError:
        return False
    return done.returncode == 0


def interpreter_for(user: pwd.struct_passwd) -> str:
    """A Python of this minor version that ``user`` can run: this venv's base interpreter, else
    the system's (the test venv's compiled packages need the same minor version)."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.base_prefix) / "bin" / name, Path("/usr/bin") / name]
    for candidate in candidates:
        if candidate.exists() and runs_as(user, str(candidate)):
            return str(candidate)
    pytest.skip(f"no {name} that user {user.pw_name} can run (tried {candidates})")


@pytest.fixture(scope="module")
def unprivileged() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root to install as root and run the worker as another user (CI is)")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run the worker as")


@pytest.fixture(scope="module")
def image_root(unprivileged: pwd.struct_passwd) -> Iterator[Path]:
    """A root-owned tree readable by everyone: the source, the venv and the app directory (the
    working directory)."""
    root = Path(tempfile.mkdtemp(prefix="image-conditions-"))
    try:
        root.chmod(0o755)  # mkdtemp makes it private; the user must read the venv in it
        (root / "app").mkdir(mode=0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def user_temp_dir(image_root: Path, name: str, user: pwd.struct_passwd) -> Path:
    """A private directory of ``user``: the only place its processes can write."""
    path = image_root / name
    path.mkdir(mode=0o700)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


@pytest.fixture(scope="module")
def image_venv(image_root: Path, unprivileged: pwd.struct_passwd) -> Path:
    """A fresh venv with the project installed by root, not editable; returns its bin dir."""
    python = interpreter_for(unprivileged)
    source = image_root / "src"
    copy_like_the_image(source)
    venv = image_root / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # The test venv's dependencies (and pip), after the venv's own site-packages. A plain path
    # line: the test venv's editable install (a .pth there) is not processed, so `pipeline`
    # can only come from the install below.
    (purelib / "test-venv-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # As the image does (`pip install .`, build isolation included), minus the dependencies.
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
        check=True,
        timeout=300,
    )
    installed = purelib / "pipeline"
    assert installed.is_dir()
    assert not installed.is_symlink()  # not editable: a copy, owned by root, not writable
    assert installed.stat().st_uid == 0
    assert not installed.stat().st_mode & stat.S_IWOTH
    return venv / "bin"


def image_environment(temp_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of the image's worker: its ENV lines, HOME, the user's temp directory."""
    env = dockerfile_env()
    # The worker must start without numba's cache directory too (a bare `docker run -e`, a
    # platform that drops the image's ENV): the audit's failure. The cache is checked apart.
    del env["NUMBA_CACHE_DIR"]
    return {
        **env,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": HOME,
        "LANG": "C.UTF-8",
        # The image's /tmp; a private one here so the test leaves nothing behind.
        "TMPDIR": str(temp_dir),
        **extra,
    }


def test_worker_starts_and_screens_under_the_image_conditions(
    image_venv: Path,
    image_root: Path,
    unprivileged: pwd.struct_passwd,
    topics: Topics,
    kafka: KafkaIO,
) -> None:
    web_port = free_port()
    temp_dir = user_temp_dir(image_root, "worker-tmp", unprivileged)
    env = image_environment(
        temp_dir,
        **topics.env,
        PIPELINE_WEB_HOST="127.0.0.1",  # the image's 0.0.0.0 would expose the test worker
        PIPELINE_WEB_PORT=str(web_port),
        PIPELINE_HASH_PROCESSES="1",
        PIPELINE_SESSION_TIMEOUT_SECONDS="6",
        PIPELINE_BROKER_FETCH_MAX_WAIT_MS="50",  # tansu holds fetches (see config.py)
    )
    log_path = image_root / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [image_venv / "pipeline", "worker"],  # the image's ENTRYPOINT and CMD
            env=env,
            cwd=image_root / "app",
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user(unprivileged),  # type: ignore[arg-type]
        )

    def ready() -> bool:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited with {worker.returncode}:\n{log_path.read_text()}")
        try:
            return http_get(f"http://127.0.0.1:{web_port}/readyz", timeout=1)[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, 90, what="/readyz of the worker under the image's conditions")
        kafka.upload("image-conditions", encode(synthetic_image(3)))
        verdict = kafka.verdicts_for({"image-conditions"})["image-conditions"]
        assert verdict["action"] == "allow", verdict
    except BaseException:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
    assert worker.returncode == 0, log_path.read_text(errors="replace")[-4000:]
    assert list((image_root / "app").iterdir()) == [], "the worker wrote into its working dir"
    assert not Path(HOME).exists()
    # Faust's data directory went to the temp directory, and stayed empty of state.
    written = sorted(p.relative_to(temp_dir) for p in temp_dir.rglob("*"))
    data_dir = Path(f"upload-screening-faust-{unprivileged.pw_uid}")
    assert data_dir in written
    assert all(p == data_dir or data_dir in p.parents for p in written), written
    assert not [p for p in written if (temp_dir / p).is_file()], written


def test_numba_keeps_its_cache_in_the_images_cache_dir(
    image_venv: Path, image_root: Path, unprivileged: pwd.struct_passwd
) -> None:
    """With the image's NUMBA_CACHE_DIR (moved into the user's temp directory here) the compiled
    index code is cached there, so a restarted container does not compile it again."""
    temp_dir = user_temp_dir(image_root, "numba-tmp", unprivileged)
    cache_dir = temp_dir / Path(dockerfile_env()["NUMBA_CACHE_DIR"]).name
    env = image_environment(temp_dir, NUMBA_CACHE_DIR=str(cache_dir))
    code = (
        "import numpy as np; from pipeline.core.index.bktree import BKTree; "
        "t = BKTree(); t.add([1, 2], [0, 3]); print(t.search(1, 1))"
    )
    done = subprocess.run(
        [image_venv / "python", "-c", code],
        env=env,
        cwd=image_root / "app",
        capture_output=True,
        text=True,
        timeout=120,
        **as_user(unprivileged),  # type: ignore[arg-type]
    )
    assert done.returncode == 0, done.stderr
    cached = {p.suffix for p in cache_dir.rglob("*")}
    assert {".nbi", ".nbc"} <= cached, sorted(cache_dir.rglob("*"))
