#!/bin/sh
# Make a python:3.11-slim stand-in from Debian's own packages, for a machine that
# reaches Debian's archive and PyPI but no image registry:
#
#   sudo deploy/docker/local-base.sh [TAG]      # default TAG: localhost/scatter-base:bookworm
#   podman build --build-arg BASE_IMAGE=localhost/scatter-base:bookworm ...
#
# Debian 12's python3 is 3.11. Certificates under /usr/local/share/ca-certificates
# (a TLS-inspecting proxy's CA, say) are trusted inside too, so pip works behind it.
# Needs root, debootstrap and podman.
set -eu
tag=${1:-localhost/scatter-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates
fi
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
tar -C "$rootfs" -c . | podman import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$tag"
