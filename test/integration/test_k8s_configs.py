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
    `ldd build/statemeshd` needs (Dockerfile.runtime);
  - the security pieces: make-secrets.sh writes the Secrets every secret
    volume names (with the keys the configs read), the configs check with
    those files at their mount paths, the sidecar shape's config really
    serves TLS with the hashed tokens (a client with the clear token and the
    CA calls the greeter; no token, or the client token on admin calls, is
    refused), and the NetworkPolicies admit what the pods need and no more.
"""

import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import REPO, binary, free_port

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


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    """make-secrets.sh's output: DIR/<secret name>/<key>, DIR/clear/, DIR/secrets.yaml."""
    out = tmp_path_factory.mktemp("k8s") / "secrets"
    r = subprocess.run([str(K8S / "make-secrets.sh"), "-n", "default", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def _secret_mounts(manifest):
    """{mountPath: secretName} of the statemeshd container of `manifest`."""
    _, pod = _runtime_pod(manifests()[manifest])
    (rt,) = [c for c in pod["containers"] if c["name"] == "statemeshd"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
            for m in rt["volumeMounts"] if "secret" in volumes.get(m["name"], {})}


def materialize(manifest, text, secrets):
    """The config with each secret volume's mount path replaced by the
    directory make-secrets.sh wrote that Secret's keys into."""
    for mount, secret in _secret_mounts(manifest).items():
        assert (secrets / secret).is_dir(), "make-secrets.sh writes no Secret %s" % secret
        text = text.replace(mount + "/", "%s/" % (secrets / secret))
    return text


def check_config(path):
    return subprocess.run([str(binary("statemeshd")), "--check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_examples_hold_every_shape():
    assert {m for m, *_ in CONFIGS} == {"sidecar.yaml", "remote.yaml", "cluster.yaml"}, CONFIGS
    texts = {m: t for m, _, _, t in CONFIGS}
    assert re.search(r'mode = "sidecar";\s*\n\s*target = "unix:', texts["sidecar.yaml"])
    assert 'mode = "remote"' in texts["remote.yaml"]
    assert 'target = "dns:///greeter.${POD_NAMESPACE:-default}.svc.cluster.local:7000"' in \
        texts["remote.yaml"]


@pytest.mark.parametrize("manifest,cm,key,text", CONFIGS,
                         ids=["%s:%s/%s" % (m, c, k) for m, c, k, _ in CONFIGS])
def test_configmap_config_passes_check_config(tmp_path, secrets, manifest, cm, key, text):
    text = materialize(manifest, text, secrets)
    assert "/etc/statemesh/tls" not in text and "/etc/statemesh/tokens" not in text
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
def test_broken_copy_fails_with_file_and_line(tmp_path, secrets, manifest, cm, key, text):
    """Two independent mistakes in a copy: both reported, each as FILE:LINE."""
    text = materialize(manifest, text, secrets)
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


@pytest.mark.parametrize("manifest", ["sidecar.yaml", "remote.yaml", "cluster.yaml"])
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
    if "cluster = {" in text:         # one node per pod; the first assignment waits for all
        n = int(re.search(r"initial_nodes = (\d+);", text).group(1))
        assert sts["spec"]["replicas"] == n and sts["spec"]["podManagementPolicy"] == "Parallel"
    else:
        assert sts["spec"]["replicas"] == 1

    # The ingress listens on the pod IP, on the port the probes and the Service use.
    host, port = _setting(text, "ingress").rsplit(":", 1)
    assert host == "0.0.0.0"
    port = int(port)
    assert port in [p["containerPort"] for p in rt["ports"]]
    assert pod["terminationGracePeriodSeconds"] >= 10      # drain 5 s + close 3 s

    # TLS on the ingress, tokens, admin calls on loopback only.
    assert re.search(r"\btls = \{", text) and "require_client_cert" in text
    assert 'role = "admin"' in text and 'role = "client"' in text
    assert _setting(text, "admin").startswith("127.0.0.1:")
    for mount in _secret_mounts(manifest):
        (vol,) = [v for v in pod["volumes"]
                  if v["name"] in [m["name"] for m in rt["volumeMounts"] if m["mountPath"] == mount]]
        assert vol["secret"]["defaultMode"] & 0o007 == 0, "%s is world-readable" % mount

    # HTTP probes on the metrics port (the kubelet's gRPC probes speak no TLS).
    probes = {p: rt[p]["httpGet"] for p in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert all(g["port"] == "metrics" for g in probes.values()), probes
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["startupProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"

    # Metrics on the pod IP, on the named port the scrape annotations give.
    host, mport = _setting(text, "metrics").rsplit(":", 1)
    assert host == "0.0.0.0"
    assert {"name": "metrics", "containerPort": int(mport)} in rt["ports"]
    notes = sts["spec"]["template"]["metadata"].get("annotations", {})
    assert notes.get("prometheus.io/scrape") == "true"
    assert notes.get("prometheus.io/port") == mport
    assert notes.get("prometheus.io/path") == "/metrics"
    assert "limits" in rt["resources"] and "requests" in rt["resources"]


@pytest.mark.parametrize("manifest", ["sidecar.yaml", "cluster.yaml"])
def test_sidecar_socket_is_shared_through_an_emptydir(manifest):
    docs = manifests()[manifest]
    _, pod = _runtime_pod(docs)
    text = [t for m, _, _, t in CONFIGS if m == manifest][0]
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
    # mTLS both ways: the greeter requires a client certificate of the CA and
    # the runtime's endpoint presents one.
    assert "--require-client-cert" in fn["args"]
    mounts = {m["mountPath"]: m["name"] for m in fn["volumeMounts"]}
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    for flag in ("--tls-cert", "--tls-key", "--tls-ca"):
        path = Path(fn["args"][fn["args"].index(flag) + 1])
        assert vols[mounts[str(path.parent)]]["secret"]["secretName"] == "greeter-tls"
    ep = text[text.index("endpoints"):]
    assert re.search(r"tls = \{[^}]*ca = [^}]*cert = [^}]*key = ", ep), ep


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


# ---------------------------------------------------------------------------
# Secrets, the secured config for real, NetworkPolicies
# ---------------------------------------------------------------------------


def test_make_secrets_writes_every_secret_the_manifests_mount(secrets):
    with open(secrets / "secrets.yaml") as f:
        made = {d["metadata"]["name"]: d for d in yaml.safe_load_all(f) if d}
    wanted = set()
    for docs in manifests().values():
        for d in docs:
            spec = d.get("spec", {}).get("template", {}).get("spec", {})
            for v in spec.get("volumes", []):
                if "secret" in v:
                    wanted.add(v["secret"]["secretName"])
    assert wanted == {"statemesh-tls", "statemesh-tokens", "greeter-tls"}, wanted
    assert wanted <= set(made), made.keys()
    for name in wanted:
        assert set(made[name]["data"]) == {p.name for p in (secrets / name).iterdir()}, name
    # Hashes only in the runtime's Secret; the clear tokens stay with the operator.
    for role in ("admin", "client", "metrics"):
        assert re.fullmatch(r"sha256:[0-9a-f]{64}\n",
                            (secrets / "statemesh-tokens" / (role + ".token")).read_text())
        assert oct((secrets / "clear" / (role + ".token")).stat().st_mode & 0o777) == "0o600"
    # A second run never overwrites.
    r = subprocess.run([str(K8S / "make-secrets.sh"), str(secrets)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "not empty" in r.stderr


def test_sidecar_config_serves_tls_with_hashed_tokens(sandbox, secrets):
    """The sidecar shape's config, run as is but for paths and ports: TLS with
    the Secret's certificate (dialled as localhost, as kubectl port-forward
    does), the clear tokens against their hashes, admin on its own listener."""
    import grpc
    import statemesh
    from statemesh import errors as sm_errors
    (text,) = [t for m, _, _, t in CONFIGS if m == "sidecar.yaml"]
    text = materialize("sidecar.yaml", text, secrets)
    sock = _setting(text, "target")[len("unix:"):]
    fn = sandbox.greeter(listen="unix:%s" % (sandbox.workdir / "greeter.sock"))
    port, admin, metrics = free_port(), free_port(), free_port()
    text = (text.replace(_setting(text, "data_dir"), str(sandbox.workdir / "data"))
                .replace('"0.0.0.0:7070"', '"127.0.0.1:%d"' % port)
                .replace('"127.0.0.1:7071"', '"127.0.0.1:%d"' % admin)
                .replace('"0.0.0.0:9464"', '"127.0.0.1:%d"' % metrics)
                .replace(sock, str(sandbox.workdir / "greeter.sock")))
    rt = sandbox.runtime(config_text=text, ingress="127.0.0.1:%d" % port)
    ca = str(secrets / "ca.crt")
    client_token = (secrets / "clear" / "client.token").read_text().strip()
    admin_token = (secrets / "clear" / "admin.token").read_text().strip()
    with statemesh.Client("localhost:%d" % port, tls_ca=ca, token=client_token, timeout=10) as c:
        assert c.call("example/user", "alice", "hi") == "Hello alice, you are visitor #1"
    with statemesh.Client("localhost:%d" % port, tls_ca=ca, timeout=10) as anon:
        with pytest.raises(sm_errors.StatemeshError) as e:
            anon.call("example/user", "alice", "hi")
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with statemesh.Client("localhost:%d" % admin, tls_ca=ca, token=client_token, timeout=10) as a:
        with pytest.raises(sm_errors.StatemeshError) as e:
            a.state("example/user", "alice")
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    with statemesh.Client("localhost:%d" % admin, tls_ca=ca, token=admin_token, timeout=10) as a:
        assert a.state("example/user", "alice")
    with socket.create_connection(("127.0.0.1", metrics), timeout=10) as s:
        s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
        assert b"200" in s.recv(100).split(b"\r\n")[0]
    rt.stop()


def _policies(manifest):
    return {d["metadata"]["name"]: d for d in _by_kind(manifests()[manifest], "NetworkPolicy")}


@pytest.mark.parametrize("manifest", ["sidecar.yaml", "remote.yaml", "cluster.yaml"])
def test_network_policy_admits_clients_and_prometheus_only(manifest):
    docs = manifests()[manifest]
    sts, pod = _runtime_pod(docs)
    labels = sts["spec"]["template"]["metadata"]["labels"]
    pols = [p for p in _policies(manifest).values()
            if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    assert len(pols) == 1, pols
    spec = pols[0]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    (rt,) = [c for c in pod["containers"] if c["name"] == "statemeshd"]
    ports = {p["name"]: p["containerPort"] for p in rt["ports"]}
    admitted = {p["port"]: rule["from"] for rule in spec["ingress"] for p in rule["ports"]}
    assert set(admitted) == {ports["ingress"], ports["metrics"]}     # never the admin port
    clients = [{"podSelector": {"matchLabels": {"statemesh.io/client": "true"}}}]
    if manifest == "cluster.yaml":      # the other nodes too: forwarding and Peer
        clients.append({"podSelector": {"matchLabels": labels}})
    assert admitted[ports["ingress"]] == clients
    assert "namespaceSelector" in admitted[ports["metrics"]][0]
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
    if manifest == "sidecar.yaml":
        assert spec["egress"] == []                       # a unix socket only
    elif manifest == "cluster.yaml":
        assert egress_ports == {7070, 2379, 53}           # the nodes, etcd, DNS
        etcd = _policies(manifest)["etcd"]["spec"]
        assert {"podSelector": {"matchLabels": labels}} in etcd["ingress"][0]["from"]
        assert [p["port"] for p in etcd["ingress"][0]["ports"]] == [2379]
    else:
        assert egress_ports == {7000, 53}
        greeter = _policies(manifest)["greeter"]["spec"]
        assert greeter["ingress"] == [{"from": [{"podSelector": {"matchLabels": labels}}],
                                       "ports": [{"protocol": "TCP", "port": 7000}]}]
        assert greeter["egress"] == []


def test_cluster_nodes_reach_each_other_by_stable_names_over_tls(secrets):
    """cluster.yaml: node_id is the pod's name, advertise its DNS name on the
    headless Service, etcd's endpoints the etcd StatefulSet's pods, and the
    runtime certificate names every node; its identity has the peer role."""
    docs = manifests()["cluster.yaml"]
    sts, pod = _runtime_pod(docs)
    (text,) = [t for m, _, _, t in CONFIGS if m == "cluster.yaml"]
    (rt,) = [c for c in pod["containers"] if c["name"] == "statemeshd"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in rt["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert _setting(text, "node_id") == "${POD_NAME:-%s-0}" % sts["metadata"]["name"]
    svc = sts["spec"]["serviceName"]
    (headless,) = [s for s in _by_kind(docs, "Service") if s["metadata"]["name"] == svc]
    assert headless["spec"]["clusterIP"] == "None"
    assert _setting(text, "advertise") == (
        "${POD_NAME:-%s-0}.%s.${POD_NAMESPACE:-default}.svc.cluster.local:7070"
        % (sts["metadata"]["name"], svc))
    (etcd,) = [s for s in _by_kind(docs, "StatefulSet") if s["metadata"]["name"] == "etcd"]
    urls = re.findall(r'"(http://[^"]+)"', text[text.index("etcd = ["):])
    assert urls == ["http://etcd-%d.etcd.${POD_NAMESPACE:-default}.svc.cluster.local:2379" % i
                    for i in range(etcd["spec"]["replicas"])]
    assert re.search(r'identity = "statemesh"; role = "peer";', text)
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                          str(secrets / "statemesh-tls" / "tls.crt")],
                         capture_output=True, text=True, check=True).stdout
    assert "DNS:statemesh," in san and "DNS:*.%s.default.svc.cluster.local" % svc in san
