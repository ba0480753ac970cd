#!/usr/bin/env bash
# A self-signed TLS pair for the SIP edge's demo (kamailio's tls module): DIR/edge.crt and DIR/edge.key
# (EC P-256, CN assistant-edge, SAN 127.0.0.1 / localhost / the host name, 825 days). Kept when both exist.
# An optional second argument adds that IP to the SAN (edge.public_host, when it is not 127.0.0.1).
# Production: point edge.tls_cert_file / edge.tls_key_file (ASSISTANT_EDGE_TLS_CERT_FILE, ...) at your own.
set -euo pipefail
DIR=${1:?usage: make-edge-cert.sh DIR [PUBLIC_IP]}
EXTRA=${2:+,IP:$2}
[ -s "$DIR/edge.crt" ] && [ -s "$DIR/edge.key" ] && exit 0
mkdir -p "$DIR"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=assistant-edge" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$(hostname)$EXTRA" \
  -keyout "$DIR/edge.key.tmp" -out "$DIR/edge.crt.tmp" 2>/dev/null
mv "$DIR/edge.key.tmp" "$DIR/edge.key"
chmod 644 "$DIR/edge.crt.tmp" && mv "$DIR/edge.crt.tmp" "$DIR/edge.crt"
