#!/bin/sh
# Installs the Debian packages cge builds and tests with, but only those that are missing.
# Quiet when everything is present. Usage: scripts/deps.sh [extra-package ...]
set -eu
PKGS="cmake make gcc clang libclang-rt-14-dev pkg-config
libdnnl-dev libcjson-dev libutf8proc-dev libpcre2-dev
libpng-dev libjpeg-dev libwebp-dev libsndfile1-dev libsamplerate0-dev libfftw3-dev
libxxhash-dev liblmdb-dev libzip-dev zlib1g-dev lcov python3 python3-numpy
libmicrohttpd-dev libcurl4-openssl-dev libssl-dev curl wrk
libhiredis-dev redis-server chromium fonts-liberation $*"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
