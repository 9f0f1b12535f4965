#!/bin/sh
# make-secrets.sh — certificates and tokens for the Kubernetes examples.
#
#   examples/kubernetes/make-secrets.sh [-n NAMESPACE] OUTDIR
#   kubectl apply -n NAMESPACE -f OUTDIR/secrets.yaml
#
# Writes, with openssl (a private CA of your own; use cert-manager or your
# PKI in production, with the same Secret names and keys):
#
#   OUTDIR/ca.key, ca.crt          the CA (keep ca.key off the cluster)
#   OUTDIR/statemesh-tls/          tls.crt, tls.key, ca.crt — the runtimes'
#                                  certificate: server (ingress, admin) and
#                                  client (mTLS to function servers)
#   OUTDIR/greeter-tls/            tls.crt, tls.key, ca.crt — the greeter's
#   OUTDIR/statemesh-tokens/       admin.token, client.token, metrics.token as
#                                  "sha256:<hex>": the runtime keeps hashes only
#   OUTDIR/clear/                  the clear tokens and a client certificate
#                                  (mode 0600) for you and your applications:
#                                  STATEMESH_TOKEN=$(cat OUTDIR/clear/admin.token)
#   OUTDIR/secrets.yaml            the four Secrets (statemesh-tls, greeter-tls,
#                                  statemesh-tokens, statemesh-client-token)
#
# The runtime certificate names the Services of the examples in NAMESPACE,
# every node of cluster.yaml (*.statemesh-cluster...), and localhost and
# 127.0.0.1 for `kubectl port-forward`. Certificates last 365
# days; run again (and apply, then `kubectl exec … kill -HUP 1`, or roll the
# pods) to rotate: statemeshd re-reads its files on SIGHUP.
set -eu

ns=default
if [ "${1:-}" = "-n" ]; then
    [ $# -ge 2 ] || { echo "make-secrets.sh: -n needs a namespace" >&2; exit 2; }
    ns=$2
    shift 2
fi
if [ $# -ne 1 ]; then
    echo "usage: make-secrets.sh [-n NAMESPACE] OUTDIR" >&2
    exit 2
fi
out=$1
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "make-secrets.sh: $out exists and is not empty; choose a new directory" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "make-secrets.sh: openssl is not installed" >&2; exit 2; }

umask 077
mkdir -p "$out/statemesh-tls" "$out/greeter-tls" "$out/statemesh-tokens" "$out/clear"
cd "$out"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

# leaf NAME DIR SAN — a certificate for server and client use, signed by the CA.
leaf() {
    key "$2/tls.key"
    openssl req -new -key "$2/tls.key" -subj "/O=statemesh/CN=$1" -out "$2/tls.csr"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
        "$3" > "$2/tls.ext"
    openssl x509 -req -in "$2/tls.csr" -CA ca.crt -CAkey ca.key -days 365 \
        -set_serial "0x$(openssl rand -hex 8)" -extfile "$2/tls.ext" -out "$2/tls.crt" 2>/dev/null
    rm -f "$2/tls.csr" "$2/tls.ext"
    cp ca.crt "$2/ca.crt"
}

key ca.key
openssl req -x509 -new -key ca.key -days 365 -subj "/O=statemesh/CN=statemesh example CA" \
    -out ca.crt
svc() { printf 'DNS:%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local' "$1" "$1" "$ns" "$1" "$ns"; }
leaf statemesh statemesh-tls \
    "$(svc statemesh),$(svc statemesh-remote),$(svc statemesh-cluster),DNS:*.statemesh-cluster.$ns.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
leaf greeter greeter-tls "$(svc greeter)"
leaf client clear "DNS:client"
mv clear/tls.crt clear/client.crt
mv clear/tls.key clear/client.key
rm -f clear/ca.crt

for role in admin client metrics; do
    token=$(openssl rand -hex 32)
    printf '%s\n' "$token" > "clear/$role.token"
    printf 'sha256:%s\n' "$(printf %s "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)" \
        > "statemesh-tokens/$role.token"
done

b64() { base64 -w0 < "$1"; }
{
    printf '# Secrets for examples/kubernetes (make-secrets.sh, namespace %s).\n' "$ns"
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: statemesh-tls\ntype: kubernetes.io/tls\ndata:\n'
    for f in tls.crt tls.key ca.crt; do printf '  %s: %s\n' "$f" "$(b64 statemesh-tls/$f)"; done
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: greeter-tls\ntype: kubernetes.io/tls\ndata:\n'
    for f in tls.crt tls.key ca.crt; do printf '  %s: %s\n' "$f" "$(b64 greeter-tls/$f)"; done
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: statemesh-tokens\ntype: Opaque\ndata:\n'
    for r in admin client metrics; do printf '  %s.token: %s\n' "$r" "$(b64 statemesh-tokens/$r.token)"; done
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: statemesh-client-token\ntype: Opaque\ndata:\n'
    printf '  token: %s\n  ca.crt: %s\n' "$(b64 clear/client.token)" "$(b64 ca.crt)"
} > secrets.yaml
echo "make-secrets.sh: wrote $out/secrets.yaml (apply it with kubectl apply -n $ns -f $out/secrets.yaml);" \
     "clear tokens and a client certificate are in $out/clear/" >&2
