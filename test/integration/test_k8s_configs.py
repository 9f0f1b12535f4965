"""
The Kubernetes examples (examples/kubernetes/) without a cluster.

Neither Kubernetes nor Docker runs here, so this checks what can be checked
offline, against the real binary:

  - every statemesh config embedded in a ConfigMap (data keys ending in
    .conf) passes `statemeshd --check-config` (which resolves no name and
    dials nothing), and a deliberately broken copy fails with FILE:LINE;
  - the manifests agree with their configs: the config file the container is
    told to read is the ConfigMap key mounted there, data_dir is the
    PersistentVolumeClaim's mount, the ingress port is the containerPort and
    the gRPC probes' port, a sidecar's unix socket lives on an emptyDir that
    both containers mount, a remote target names a headless Service and its
    port;
  - the runtime image's package list covers every shared library that
    `ldd build/statemeshd` needs (Dockerfile.runtime).
"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO, binary

K8S = REPO / "examples" / "kubernetes"
pytestmark = pytest.mark.needs("statemeshd")


def manifests():
    """{file name: [documents]} for every examples/kubernetes/*.yaml."""
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        with open(path) as f:
            out[path.name] = [d for d in yaml.safe_load_all(f) if d]
    return out


def embedded_configs():
    """[(manifest, configmap name, key, text)] for every *.conf ConfigMap key."""
    found = []
    for name, docs in manifests().items():
        for d in docs:
            if d.get("kind") != "ConfigMap":
                continue
            for key, text in (d.get("data") or {}).items():
                if key.endswith(".conf"):
                    found.append((name, d["metadata"]["name"], key, text))
    return found


CONFIGS = embedded_configs()


def check_config(path):
    return subprocess.run([str(binary("statemeshd")), "--check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_examples_hold_both_shapes():
    assert {m for m, *_ in CONFIGS} == {"sidecar.yaml", "remote.yaml"}, CONFIGS
    texts = {m: t for m, _, _, t in CONFIGS}
    assert re.search(r'mode = "sidecar";\s*\n\s*target = "unix:', texts["sidecar.yaml"])
    assert 'mode = "remote"' in texts["remote.yaml"]
    assert 'target = "dns:///greeter.${POD_NAMESPACE:-default}.svc.cluster.local:7000"' in \
        texts["remote.yaml"]


@pytest.mark.parametrize("manifest,cm,key,text", CONFIGS,
                         ids=["%s:%s/%s" % (m, c, k) for m, c, k, _ in CONFIGS])
def test_configmap_config_passes_check_config(tmp_path, manifest, cm, key, text):
    path = tmp_path / key
    path.write_text(text)
    p = check_config(path)
    assert p.returncode == 0, "%s %s/%s:\n%s" % (manifest, cm, key, p.stderr)
    assert p.stdout.startswith("%s: ok (" % path), p.stdout
    assert p.stderr == ""


def _line_of(text, needle):
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError("%r not in config" % needle)


@pytest.mark.parametrize("manifest,cm,key,text", CONFIGS,
                         ids=["%s:%s/%s" % (m, c, k) for m, c, k, _ in CONFIGS])
def test_broken_copy_fails_with_file_and_line(tmp_path, manifest, cm, key, text):
    """Two independent mistakes in a copy: both reported, each as FILE:LINE."""
    broken = text.replace("max_batch = 100;", "max_batch = 0;", 1)
    assert broken != text
    broken = broken.replace("runtime = {", 'runtime = {\n  log_levle = "debug";', 1)
    path = tmp_path / ("broken-" + key)
    path.write_text(broken)
    p = check_config(path)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2, p.stderr
    assert "%s:%d: runtime.log_levle: unknown setting" % (path, _line_of(broken, "log_levle")) \
        in p.stderr, p.stderr
    assert ("%s:%d: endpoints[0].max_batch: 0 is out of range; must be 1..100000"
            % (path, _line_of(broken, "max_batch = 0"))) in p.stderr, p.stderr


# ---------------------------------------------------------------------------
# manifests and configs agree
# ---------------------------------------------------------------------------


def _setting(text, name):
    m = re.search(r'^\s*%s\s*=\s*"([^"]*)"' % re.escape(name), text, re.M)
    assert m, "%s not in config" % name
    return m.group(1)


def _by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def _runtime_pod(docs):
    (sts,) = [s for s in _by_kind(docs, "StatefulSet")
              if any(c["name"] == "statemeshd" for c in s["spec"]["template"]["spec"]["containers"])]
    return sts, sts["spec"]["template"]["spec"]


def _mount_path(container, volume):
    paths = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] == volume]
    assert paths, "%s does not mount %s" % (container["name"], volume)
    return paths[0]


@pytest.mark.parametrize("manifest", ["sidecar.yaml", "remote.yaml"])
def test_runtime_pod_matches_its_config(manifest):
    docs = manifests()[manifest]
    sts, pod = _runtime_pod(docs)
    (rt,) = [c for c in pod["containers"] if c["name"] == "statemeshd"]
    volumes = {v["name"]: v for v in pod["volumes"]}

    # -c FILE is a key of the ConfigMap mounted at FILE's directory.
    args = rt["args"]
    conf_path = Path(args[args.index("-c") + 1])
    cfg_volume = [m for m in rt["volumeMounts"] if m["mountPath"] == str(conf_path.parent)]
    assert cfg_volume, "nothing mounted at %s" % conf_path.parent
    cm_name = volumes[cfg_volume[0]["name"]]["configMap"]["name"]
    (cm,) = [d for d in _by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name]
    text = cm["data"][conf_path.name]

    # data_dir is the PersistentVolumeClaim's mount (one per replica).
    claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    data_mounts = [m["mountPath"] for m in rt["volumeMounts"] if m["name"] in claims]
    assert _setting(text, "data_dir") in data_mounts
    assert sts["spec"]["replicas"] == 1

    # The ingress listens on the pod IP, on the port the probes and the Service use.
    host, port = _setting(text, "ingress").rsplit(":", 1)
    assert host == "0.0.0.0"
    port = int(port)
    assert port in [p["containerPort"] for p in rt["ports"]]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert rt[probe]["grpc"]["port"] == port, probe
    assert rt["readinessProbe"]["grpc"].get("service", "") in ("", "statemesh.v1.Ingress")
    assert pod["terminationGracePeriodSeconds"] >= 10      # drain 5 s + close 3 s

    # Metrics on the pod IP, on the named port the scrape annotations give.
    host, mport = _setting(text, "metrics").rsplit(":", 1)
    assert host == "0.0.0.0"
    assert {"name": "metrics", "containerPort": int(mport)} in rt["ports"]
    notes = sts["spec"]["template"]["metadata"].get("annotations", {})
    assert notes.get("prometheus.io/scrape") == "true"
    assert notes.get("prometheus.io/port") == mport
    assert notes.get("prometheus.io/path") == "/metrics"
    assert "limits" in rt["resources"] and "requests" in rt["resources"]


def test_sidecar_socket_is_shared_through_an_emptydir():
    docs = manifests()["sidecar.yaml"]
    _, pod = _runtime_pod(docs)
    text = [t for m, _, _, t in CONFIGS if m == "sidecar.yaml"][0]
    sock = Path(_setting(text, "target")[len("unix:"):])
    (rt,) = [c for c in pod["containers"] if c["name"] == "statemeshd"]
    fns = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] != "statemeshd"]
    assert len(fns) == 1
    fn = fns[0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    shared = [m["name"] for m in rt["volumeMounts"] if m["mountPath"] == str(sock.parent)]
    assert shared and "emptyDir" in volumes[shared[0]]
    assert _mount_path(fn, shared[0]) == str(sock.parent)
    assert "unix:%s" % sock in fn["args"]
    if fn in pod.get("initContainers", []):
        assert fn.get("restartPolicy") == "Always"           # a native sidecar


def test_remote_target_is_a_headless_service():
    docs = manifests()["remote.yaml"]
    text = [t for m, _, _, t in CONFIGS if m == "remote.yaml"][0]
    target = _setting(text, "target")
    m = re.fullmatch(r"dns:///([a-z0-9-]+)\.\$\{POD_NAMESPACE:-default\}\.svc\.cluster\.local:(\d+)",
                     target)
    assert m, target                  # the pod's own namespace, not a hard-coded one
    svc_name, port = m.group(1), int(m.group(2))
    (svc,) = [s for s in _by_kind(docs, "Service") if s["metadata"]["name"] == svc_name]
    assert svc["spec"]["clusterIP"] == "None"
    assert port in [p["port"] for p in svc["spec"]["ports"]]
    (dep,) = [d for d in _by_kind(docs, "Deployment") if d["metadata"]["name"] == svc_name]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (sts,) = [d for d in _by_kind(docs, "StatefulSet") if d["metadata"]["name"] == "statemesh-remote"]
    (rt,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in rt.get("env", [])}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    (fn,) = dep["spec"]["template"]["spec"]["containers"]
    assert "0.0.0.0:%d" % port in fn["args"]
    assert dep["spec"]["replicas"] >= 2


# ---------------------------------------------------------------------------
# the runtime image has every shared library statemeshd needs
# ---------------------------------------------------------------------------

# Always present in debian:12-slim (essential packages and apt's own deps).
SLIM_BASE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0",
             "libcrypt1", "libselinux1", "libpcre2-8-0", "libsystemd0", "libgcrypt20",
             "libgpg-error0", "libcap2", "liblz4-1", "debconf", "libudev1"}


def _owner(path):
    """The Debian package that ships `path` (usrmerge: try without /usr)."""
    for p in (path, re.sub(r"^/usr", "", path)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def _closure(pkgs):
    """Installed packages reachable through Depends/Pre-Depends (first alternatives)."""
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", p],
                           capture_output=True, text=True)
        for dep in r.stdout.split(","):
            name = dep.split("|")[0].strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    return seen


def test_runtime_image_has_statemeshd_libraries():
    text = (K8S / "Dockerfile.runtime").read_text()
    stage = text[text.rindex("FROM debian:12-slim"):]
    m = re.search(r"apt-get install -y --no-install-recommends \\\s*\n\s*([^\n&]+)", stage)
    assert m, "no apt-get install line in the runtime stage"
    listed = m.group(1).split()
    ldd = subprocess.run(["ldd", str(binary("statemeshd"))], capture_output=True, text=True,
                         check=True).stdout
    libs = re.findall(r"=> (/\S+)", ldd)
    assert libs
    have = _closure(listed) | SLIM_BASE
    missing = {}
    for lib in libs:
        if re.search(r"/lib(asan|ubsan|lsan)\.", lib):
            continue                        # a SANITIZE=1 build; the image is not one
        owner = _owner(str(Path(lib).resolve())) or _owner(lib)
        assert owner, "no Debian package ships %s" % lib
        if owner not in have:
            missing[lib] = owner
    assert not missing, "Dockerfile.runtime lacks packages for: %s" % missing
