"""
Install and packaging: `make install PREFIX=DIR [DESTDIR=STAGE]`, building
out-of-tree programs against the installed SDK with nothing but
`pkg-config --cflags --libs statemesh`, and `make dist` (the Python wheel).

One install into a temp prefix is shared by the tests of this file. The
out-of-tree sources live in test/install/ (a function server, an ingress
client, an embedded module); they are compiled outside the tree with only the
flags pkg-config gives (plus -fsanitize when the tree is an ASan build: the
installed library then needs the sanitizer runtime first), and run against the
*installed* statemeshd with LD_LIBRARY_PATH pointing at the temp prefix (a
non-system prefix).
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from harness import BUILD, PYTHON, REPO, endpoint, scaled

pytestmark = pytest.mark.needs("statemeshd", "statemesh", "libstatemesh.so", "libstatemesh.a")

VERSION = (REPO / "VERSION").read_text().strip()
MAJOR = VERSION.split(".")[0]
SRC = REPO / "test" / "install"
TMP_PARENT = os.environ.get("STATEMESH_TMP", "/tmp")


def _asan_build() -> bool:
    with open(BUILD / "statemeshd", "rb") as f:
        return b"__asan_init" in f.read()


def make(*args, timeout=300):
    """Runs make in the tree with the flags the tree was built with (so an
    install never rebuilds an ASan build without ASan), checked."""
    argv = ["make", "-C", str(REPO), "--no-print-directory"]
    if BUILD != (REPO / "build").resolve():
        argv.append("B=%s" % BUILD)
    if _asan_build():
        argv.append("SANITIZE=1")
    p = subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=scaled(timeout))
    assert p.returncode == 0, "make %s failed:\n%s" % (" ".join(args), p.stdout[-4000:])
    return p.stdout


def pkg_config(prefix: Path, *args) -> list:
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    p = subprocess.run(["pkg-config"] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return shlex.split(p.stdout)


def compile_c(prefix: Path, src: str, out: Path, pkg_args=("--cflags", "--libs"), extra=()):
    san = ["-fsanitize=address,undefined"] if _asan_build() else []
    copy = out.parent / src                  # compiled away from the tree
    shutil.copy(SRC / src, copy)
    argv = (["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"] + san + list(extra) +
            [copy.name, "-o", out.name] + pkg_config(prefix, *pkg_args, "statemesh"))
    # Out of tree: no include path or library of the source tree may leak in.
    assert not any(str(REPO) in a for a in argv), argv
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=scaled(120), cwd=str(out.parent))
    assert p.returncode == 0, "%s\n%s" % (" ".join(argv), p.stdout)
    return out


def readelf_dynamic(path: Path) -> str:
    return subprocess.run(["readelf", "-d", str(path)], stdout=subprocess.PIPE, text=True,
                          check=True, timeout=30).stdout


@pytest.fixture(scope="module")
def installed():
    """make install PREFIX=<tmp>/usr, the out-of-tree programs built against
    it: (prefix, work dir, {name: path}, env with LD_LIBRARY_PATH)."""
    top = Path(tempfile.mkdtemp(prefix="sm-inst-", dir=TMP_PARENT))
    try:
        prefix = top / "usr"
        make("install", "PREFIX=%s" % prefix)
        work = top / "oot"
        work.mkdir()
        progs = {
            "counter_server": compile_c(prefix, "counter_server.c", work / "counter_server"),
            "call_client": compile_c(prefix, "call_client.c", work / "call_client"),
            "module": compile_c(prefix, "embedded_module.c", work / "liboot.so",
                                pkg_args=("--cflags",), extra=("-shared", "-fPIC")),
        }
        env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
        yield prefix, work, progs, env
    finally:
        if not os.environ.get("STATEMESH_KEEP_TMP"):
            shutil.rmtree(top, ignore_errors=True)


def call(client: Path, env: dict, ingress: str, type_: str, id_: str, n: int) -> str:
    p = subprocess.run([str(client), ingress, type_, id_, str(n)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=scaled(30))
    assert p.returncode == 0, (p.stdout, p.stderr)
    return p.stdout.strip()


# ---------------------------------------------------------------------------
# make install
# ---------------------------------------------------------------------------


def test_install_layout_soname_and_links(installed):
    prefix, _, _, _ = installed
    lib = prefix / "lib"
    real = lib / ("libstatemesh.so." + VERSION)
    assert real.is_file() and not real.is_symlink()
    assert os.readlink(lib / ("libstatemesh.so." + MAJOR)) == real.name
    assert os.readlink(lib / "libstatemesh.so") == "libstatemesh.so." + MAJOR
    assert "Library soname: [libstatemesh.so.%s]" % MAJOR in readelf_dynamic(real)
    assert (lib / "libstatemesh.a").is_file()
    for h in ("function.h", "invoke.h", "client.h", "value.h", "json.h", "version.h",
              "v1/function.pb-c.h", "v1/types.pb-c.h"):
        assert (prefix / "include" / "statemesh" / h).is_file(), h
    assert '#define SM_VERSION "%s"' % VERSION in \
        (prefix / "include" / "statemesh" / "version.h").read_text()
    for exe in ("statemeshd", "statemesh"):
        assert os.access(prefix / "bin" / exe, os.X_OK), exe


def test_installed_binaries_report_the_tree_version(installed):
    prefix, _, _, _ = installed
    for exe in ("statemeshd", "statemesh"):
        p = subprocess.run([str(prefix / "bin" / exe), "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=scaled(10))
        assert p.returncode == 0, p.stderr
        assert p.stdout == "%s %s\n" % (exe, VERSION)


def test_pc_file_is_written_for_the_install_prefix(installed):
    prefix, _, _, _ = installed
    pc = (prefix / "lib" / "pkgconfig" / "statemesh.pc").read_text()
    assert "prefix=%s\n" % prefix in pc
    assert pkg_config(prefix, "--modversion", "statemesh") == [VERSION]
    cflags = pkg_config(prefix, "--cflags", "statemesh")
    assert "-I%s" % (prefix / "include") in cflags
    libs = pkg_config(prefix, "--libs", "statemesh")
    assert "-L%s" % (prefix / "lib") in libs and "-lstatemesh" in libs
    assert "-lprotobuf-c" in libs     # the public headers include protobuf-c's
    static = pkg_config(prefix, "--static", "--libs", "statemesh")
    assert "-lgrpc" in static and "-lm" in static


def test_destdir_stages_under_destdir_for_prefix():
    top = Path(tempfile.mkdtemp(prefix="sm-dest-", dir=TMP_PARENT))
    try:
        target = "/opt/statemesh-test-%d" % os.getpid()
        make("install", "PREFIX=%s" % target, "DESTDIR=%s" % top)
        staged = top / target.lstrip("/")
        assert not Path(target).exists()
        pc = (staged / "lib" / "pkgconfig" / "statemesh.pc").read_text()
        assert "prefix=%s\n" % target in pc and str(top) not in pc
        assert os.readlink(staged / "lib" / "libstatemesh.so") == "libstatemesh.so." + MAJOR
        assert (staged / "lib" / ("libstatemesh.so." + VERSION)).is_file()
        assert (staged / "bin" / "statemeshd").is_file()
        assert (staged / "include" / "statemesh" / "v1" / "function.pb-c.h").is_file()
        make("uninstall", "PREFIX=%s" % target, "DESTDIR=%s" % top)
        left = [p for p in top.rglob("*") if not p.is_dir()]
        assert left == [], left
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---------------------------------------------------------------------------
# out-of-tree programs against the installed runtime
# ---------------------------------------------------------------------------


def test_out_of_tree_server_and_client(installed, sandbox):
    prefix, _, progs, env = installed
    for exe in ("counter_server", "call_client"):
        dyn = readelf_dynamic(progs[exe])
        assert "Shared library: [libstatemesh.so.%s]" % MAJOR in dyn, exe
    # The installed library is what they need: without LD_LIBRARY_PATH the
    # loader does not find it in a non-system prefix.
    bare = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    p = subprocess.run([str(progs["call_client"])], env=bare, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=scaled(10))
    assert p.returncode != 0 and "libstatemesh.so.%s" % MAJOR in p.stderr

    fn = sandbox.server([progs["counter_server"], "{listen}"], name="oot", env=env)
    rt = sandbox.runtime(endpoints=[endpoint("oot/*", fn)],
                         binary_path=prefix / "bin" / "statemeshd")
    cc = progs["call_client"]
    assert call(cc, env, rt.ingress, "oot/counter", "alice", 5) == \
        "alice has 5 (sdk %s)" % VERSION
    assert call(cc, env, rt.ingress, "oot/counter", "alice", 2) == \
        "alice has 7 (sdk %s)" % VERSION
    assert call(cc, env, rt.ingress, "oot/counter", "bob", -1) == "bob has -1 (sdk %s)" % VERSION
    assert rt.client().int_state("oot/counter", "alice", "n") == 7


def test_out_of_tree_embedded_module(installed, sandbox):
    prefix, _, progs, env = installed
    module = progs["module"]
    # Headers only: the SDK's symbols stay undefined, statemeshd provides them.
    assert "libstatemesh" not in readelf_dynamic(module)
    rt = sandbox.runtime(endpoints=[{"functions": "oot/*", "mode": "embedded",
                                     "library": str(module)}],
                         binary_path=prefix / "bin" / "statemeshd")
    assert rt.log_lines("event=endpoint.up mode=embedded")
    cc = progs["call_client"]
    assert call(cc, env, rt.ingress, "oot/embedded", "carol", 3) == \
        "embedded carol #3 (sdk %s)" % VERSION
    assert call(cc, env, rt.ingress, "oot/embedded", "carol", 4) == \
        "embedded carol #7 (sdk %s)" % VERSION


# ---------------------------------------------------------------------------
# make dist: the Python SDK's wheel, installed offline into a venv
# ---------------------------------------------------------------------------


@pytest.mark.time_limit(240)
def test_wheel_installs_offline_into_system_site_venv():
    make("dist", timeout=240)
    wheel = BUILD / "dist" / ("statemesh-%s-py3-none-any.whl" % VERSION)
    assert wheel.is_file()
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("statemesh/__init__.py", "statemesh/_version.py",
                   "statemesh/v1/function_pb2.py", "statemesh/v1/ingress_pb2_grpc.py"):
        assert member in names, member
    assert not any(n.startswith(("tests/", "statemesh/tests")) for n in names)

    top = Path(tempfile.mkdtemp(prefix="sm-venv-", dir=TMP_PARENT))
    try:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_INDEX_URL")}
        env["PIP_NO_INDEX"] = "1"             # offline: no registry is asked
        venv = top / ".venv"

        def run(*argv, timeout=120):
            p = subprocess.run([str(a) for a in argv], env=env, cwd=str(top),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=scaled(timeout))
            assert p.returncode == 0, "%s\n%s" % (" ".join(map(str, argv)), p.stdout)
            return p.stdout

        run(PYTHON, "-m", "venv", "--system-site-packages", venv)
        # The commands of docs/install.md; grpcio and protobuf come from Debian.
        run(venv / "bin" / "pip", "install", "--no-index", "--no-build-isolation", wheel)
        out = run(venv / "bin" / "python", "-c",
                  "import statemesh, statemesh.v1.function_pb2 as f; "
                  "print(statemesh.__version__); print(statemesh.SDK_NAME); "
                  "print(statemesh.__file__); print(f.__name__)")
        version, sdk_name, path, _ = out.split("\n")[:4]
        assert version == VERSION
        assert sdk_name == "statemesh-python/" + VERSION
        assert Path(path).resolve().is_relative_to(venv.resolve()), path
        assert re.search(r"^statemesh\s+%s\b" % re.escape(VERSION),
                         run(venv / "bin" / "pip", "list"), re.M)
    finally:
        shutil.rmtree(top, ignore_errors=True)
