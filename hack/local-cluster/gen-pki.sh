#!/usr/bin/env bash
# Self-signed PKI and kubeconfigs for the 127.0.0.1-only single-node cluster, in $PIP_CLUSTER_DIR/pki.
# Idempotent: only missing files are created (delete pki/ to start over).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
mkdir -p "$PKI"; cd "$PKI"
umask 077

if [ ! -f ca.key ]; then
  openssl genrsa -out ca.key 2048 2>/dev/null
  openssl req -x509 -new -nodes -key ca.key -subj "/CN=pipelineinpod-local-ca" -days 3650 -out ca.crt
fi

# cert NAME SUBJECT [SANS]: a CA-signed key pair; with SANS it is a server (and client) certificate.
cert() {
  local n=$1 subj=$2 san=${3:-}
  [ -f "$n.crt" ] && [ -f "$n.key" ] && return 0
  openssl genrsa -out "$n.key" 2048 2>/dev/null
  openssl req -new -key "$n.key" -subj "$subj" -out "$n.csr"
  {
    if [ -n "$san" ]; then echo "subjectAltName=$san"; echo "extendedKeyUsage=serverAuth,clientAuth"
    else echo "extendedKeyUsage=clientAuth"; fi
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
  } > "$n.ext"
  openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$n.ext" -out "$n.crt" 2>/dev/null
  rm -f "$n.csr" "$n.ext"
}
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=admin"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
cert kubelet-serving "/CN=$NODE_NAME" "IP:127.0.0.1,DNS:$NODE_NAME,DNS:localhost"
cert kube-scheduler "/CN=system:kube-scheduler"
cert kube-controller-manager "/CN=system:kube-controller-manager"
if [ ! -f sa.key ]; then openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; fi

# kubeconfig NAME CERT: certificates embedded, so the file can be copied anywhere.
kubeconfig() {
  [ -f "$1.kubeconfig" ] && return 0
  cat > "$1.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: pipelineinpod-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < ca.crt)
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 < "$2.crt")
    client-key-data: $(base64 -w0 < "$2.key")
contexts:
- name: pipelineinpod-local
  context: {cluster: pipelineinpod-local, user: $2, namespace: default}
current-context: pipelineinpod-local
EOK
}
kubeconfig admin admin
kubeconfig kubelet kubelet
kubeconfig kube-scheduler kube-scheduler
kubeconfig kube-controller-manager kube-controller-manager
chmod 600 ./*.key ./*.kubeconfig
