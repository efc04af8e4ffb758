#!/bin/sh
# Creates ketenpoort's key material in DATA_DIR (default /var/lib/ketenpoort,
# or $KETENPOORT_DATA_DIR) with OpenSSL. Never replaces an existing file, like
# ketenpoort itself. Run it ONCE per deployment and give every instance a copy
# of (or a read-only mount of) the same keys/: instances must not create their
# own.
#
#   init-keys.sh            keys/ only (production: then add your CA-issued
#                           tls/server.pem + tls/server.key)
#   init-keys.sh --dev-tls  also a DEVELOPMENT CA and server certificate
#                           (deploy/compose.yaml does this)
#
#   keys/token-issuer.pem, .pub.pem  Ed25519: signs / verifies `token issue` tokens
#   keys/log-signing.pem, .pub.pem   Ed25519: signs disclosure-log checkpoints
#   keys/pseudonym.key               32 random bytes (hex): keyed pseudonyms
#   keys/egress.key                  32 random bytes (hex): the egress guard's fingerprints
#   keys/phenomena.key               32 random bytes (hex): the perturbation secret of the
#                                    phenomenon tables (cell key method)
#   tls/ca.pem, ca.key               (--dev-tls) development CA; trust ca.pem
#   tls/server.pem, server.key       (--dev-tls) P-256 server certificate, leaf + CA
#
# Ed25519 keys are written as PKCS#8 v2 (with the public key), the form
# ketenpoort generates itself; `openssl genpkey` alone writes v1.
set -eu
umask 077
d="${KETENPOORT_DATA_DIR:-/var/lib/ketenpoort}"
mkdir -p "$d/keys"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

hex() { od -An -v -tx1 | tr -d ' \n'; }

ed25519() { # NAME
    [ -e "$d/keys/$1.pem" ] && return 0
    openssl genpkey -algorithm ED25519 -out "$tmp/v1.pem"
    seed="$(openssl pkey -in "$tmp/v1.pem" -outform DER | hex | tail -c 64)"
    pub="$(openssl pkey -in "$tmp/v1.pem" -pubout -outform DER | hex | tail -c 64)"
    cat > "$tmp/v2.cnf" <<EOF
asn1 = SEQUENCE:key
[key]
version = INTEGER:1
algorithm = SEQUENCE:alg
private = FORMAT:HEX,OCTETSTRING:0420$seed
public = IMPLICIT:1,FORMAT:HEX,BITSTRING:$pub
[alg]
oid = OID:1.3.101.112
EOF
    openssl asn1parse -genconf "$tmp/v2.cnf" -noout -out "$tmp/v2.der"
    { echo "-----BEGIN PRIVATE KEY-----"; openssl base64 -in "$tmp/v2.der"; echo "-----END PRIVATE KEY-----"; } > "$tmp/v2.pem"
    openssl pkey -in "$tmp/v1.pem" -pubout -out "$d/keys/$1.pub.pem"
    chmod 0644 "$d/keys/$1.pub.pem"
    mv "$tmp/v2.pem" "$d/keys/$1.pem"
    rm -f "$tmp/v1.pem"
    echo "created $d/keys/$1.pem"
}

secret() { # NAME
    [ -e "$d/keys/$1.key" ] && return 0
    openssl rand -hex 32 | tr -d '\n' > "$tmp/$1.key"
    mv "$tmp/$1.key" "$d/keys/$1.key"
    echo "created $d/keys/$1.key"
}

ed25519 token-issuer
ed25519 log-signing
secret pseudonym
secret egress
secret phenomena

[ "${1:-}" = "--dev-tls" ] || exit 0
mkdir -p "$d/tls"
[ -e "$d/tls/server.pem" ] && exit 0
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 3650 -subj "/O=ketenpoort development/CN=ketenpoort development CA" \
    -keyout "$d/tls/ca.key" -out "$d/tls/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/O=ketenpoort development/CN=ketenpoort" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
cat > "$tmp/ext.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1, DNS:ketenpoort-1, DNS:ketenpoort-2
EOF
openssl x509 -req -in "$tmp/server.csr" -CA "$d/tls/ca.pem" -CAkey "$d/tls/ca.key" \
    -CAserial "$tmp/ca.srl" -CAcreateserial -days 825 -extfile "$tmp/ext.cnf" \
    -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$d/tls/ca.pem" > "$tmp/server.pem"
chmod 0644 "$d/tls/ca.pem" "$tmp/server.pem"
mv "$tmp/server.key" "$d/tls/server.key"
mv "$tmp/server.pem" "$d/tls/server.pem"
echo "created $d/tls/server.pem (development CA: $d/tls/ca.pem)"
