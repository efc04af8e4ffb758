#!/bin/sh
# DEVELOPMENT ONLY: a development CA and a server certificate for
# deploy/compose.yaml, in DATA_DIR/tls/ (DATA_DIR: $KETENPOORT_DATA_DIR, default
# /var/lib/ketenpoort). Never replaces an existing certificate.
#
#   tls/ca.pem, ca.key          development CA; clients trust ca.pem
#   tls/server.pem, server.key  P-256 server certificate (leaf + CA) for
#                               localhost, 127.0.0.1, ::1, ketenpoort-1, ketenpoort-2
#   operator/operator.pem, .key P-256 operator client certificate (clientAuth)
#   operator/ca.pem             a copy of the CA: what Prometheus needs to
#                               scrape the operator listener (admin.listen,
#                               admin.client_ca = tls/ca.pem), and nothing else
#
# This is the one thing the binary does not make outside `serve --demo`. The
# keys (keys/) come from `ketenpoort keys init`. In production use a
# certificate from your CA (tls.cert / tls.key) and drop this script.
set -eu
umask 077
d="${KETENPOORT_DATA_DIR:-/var/lib/ketenpoort}"
mkdir -p "$d/tls" "$d/operator"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

operator() {
    [ -e "$d/operator/operator.pem" ] && return 0
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/O=ketenpoort development/CN=operator prometheus" \
        -keyout "$tmp/operator.key" -out "$tmp/operator.csr" 2>/dev/null
    printf '%s\n' "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth" > "$tmp/op.cnf"
    openssl x509 -req -in "$tmp/operator.csr" -CA "$d/tls/ca.pem" -CAkey "$d/tls/ca.key" \
        -CAserial "$tmp/op.srl" -CAcreateserial -days 825 -extfile "$tmp/op.cnf" \
        -out "$tmp/operator.pem" 2>/dev/null
    cp "$d/tls/ca.pem" "$d/operator/ca.pem"
    mv "$tmp/operator.key" "$d/operator/operator.key"
    mv "$tmp/operator.pem" "$d/operator/operator.pem"
    echo "created $d/operator/operator.pem (operator client certificate)"
}

if [ -e "$d/tls/server.pem" ]; then
    [ -e "$d/tls/ca.key" ] && operator
    exit 0
fi

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 3650 -subj "/O=ketenpoort development/CN=ketenpoort development CA" \
    -keyout "$d/tls/ca.key" -out "$d/tls/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/O=ketenpoort development/CN=ketenpoort" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
cat > "$tmp/ext.cnf" <<'CNF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1, DNS:ketenpoort-1, DNS:ketenpoort-2
CNF
openssl x509 -req -in "$tmp/server.csr" -CA "$d/tls/ca.pem" -CAkey "$d/tls/ca.key" \
    -CAserial "$tmp/ca.srl" -CAcreateserial -days 825 -extfile "$tmp/ext.cnf" \
    -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$d/tls/ca.pem" > "$tmp/server.pem"
chmod 0644 "$d/tls/ca.pem" "$tmp/server.pem"
mv "$tmp/server.key" "$d/tls/server.key"
mv "$tmp/server.pem" "$d/tls/server.pem"
echo "created $d/tls/server.pem (development CA: $d/tls/ca.pem)"
operator
