#!/usr/bin/env bash
# Installs every Debian package statemesh needs to build, test and run.
# Idempotent: installs only what is missing; safe to run repeatedly.
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  protobuf-compiler-grpc
  libleveldb-dev libsnappy-dev libconfig-dev libcmocka-dev libxxhash-dev
  libmicrohttpd-dev   # runtime.metrics: /metrics, /healthz, /readyz (runtime/metrics.h)
  libssl-dev openssl  # runtime/auth.c (SHA-256), runtime/tls.c (PEM checks); test_tls.py makes certificates
  python3 python3-grpcio python3-protobuf python3-pytest python3-yaml
  python3-setuptools python3-wheel python3-pip python3-venv
  valgrind
  etcd-server etcd-client   # test_etcd_client.py runs its own 3-member etcd (no service)
  clang libclang-rt-14-dev   # libFuzzer + sanitizer runtimes: make fuzz, make test
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

# etcd-server's postinst cannot start its service in a container; that is fine:
# the tests start their own members.
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
