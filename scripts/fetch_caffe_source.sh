#!/usr/bin/env bash
# Downloads the pinned Caffe source (Debian's orig tarball of BVLC master at
# 99bd997) into DEST_DIR through apt, without touching the machine's apt
# sources: a private source list for Debian 11's deb-src, on the same mirror
# the machine already uses. Prints the tarball's path.
#   usage: scripts/fetch_caffe_source.sh DEST_DIR
set -euo pipefail

dest=${1:?usage: $0 DEST_DIR}
tarball_name="caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
sha256="e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c"
mkdir -p "$dest"
tarball="$dest/$tarball_name"

if [ -f "$tarball" ] && echo "$sha256  $tarball" | sha256sum --quiet -c - 2>/dev/null; then
    echo "$tarball"
    exit 0
fi

mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $0 ~ /debian/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
    # Ubuntu machines have no Debian mirror in their sources: use Debian's own.
    mirror="http://deb.debian.org/debian"
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "error: $keyring missing; apt-get install debian-archive-keyring" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
echo "deb-src [signed-by=$keyring] $mirror bullseye main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root -q)
apt-get "${apt_opts[@]}" update >&2
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only caffe=1.0.0+git20180821.99bd997-8 >&2)
echo "$sha256  $work/$tarball_name" | sha256sum --quiet -c - \
    || { echo "error: downloaded $tarball_name fails its sha256 check" >&2; exit 1; }
mv "$work/$tarball_name" "$tarball"
echo "$tarball"
