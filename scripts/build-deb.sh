#!/usr/bin/env bash
# Builds the Debian package libfcgi0-rs (README, "Debian package"):
#   target/debian/libfcgi0-rs_<version>-<revision>_<arch>.deb
# and its debugging symbols, as Debian builds them (libfcgi0-rs-dbgsym):
#   target/debian/libfcgi0-rs-dbgsym_<version>-<revision>_<arch>.deb
# from the layout `make install` gives (PREFIX=/usr, LIBDIR the multiarch
# folder), so the package holds exactly the files and links the Makefile
# installs (tests/install.rs): the runtime part of it, libfcgi.so.0.0.0
# and its libfcgi.so.0 link. Maintainer scripts and metadata come from
# packaging/deb/; Depends from dpkg-shlibdeps.
#
# Needs dpkg-dev (dpkg-architecture, dpkg-shlibdeps) and binutils (strip).
# Settings (environment): DEB_REVISION (default 1), DEB_MAINTAINER,
# DEB_OUT_DIR (default target/debian), SOURCE_DATE_EPOCH (default: the
# last commit's time; file times and the changelog date, so packaging the
# same build twice gives the same bytes).
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=libfcgi0-rs
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
LIBDIR=/usr/lib/$MULTIARCH
# Where Debian's libfcgi.so.0.0.0 and libfcgi.so.0 go while ours is
# installed: a folder ldconfig does not scan (packaging/deb/preinst.in).
DIVERT_DIR=$LIBDIR/libfcgi0ldbl
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB_VERSION="$VERSION-${DEB_REVISION:-1}"
MAINTAINER=${DEB_MAINTAINER:-"fcgi maintainers <maintainers@users.noreply.r-seed-28219381.example>"}
# Not exported before the build: the cc crate reruns build.rs when
# SOURCE_DATE_EPOCH changes, which would relink the library.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2> /dev/null || date +%s)}
OUT=${DEB_OUT_DIR:-target/debian}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEB="$OUT/${PKG}_${DEB_VERSION}_${ARCH}.deb"

# dpkg-shlibdeps wants a debian/control and the package's files under
# debian/<package>, as in a source package: build/ is laid out that way.
work="$OUT/build"
rm -rf "$work"
inst="$work/install"
stage="$work/debian/$PKG"
mkdir -p "$inst" "$stage/DEBIAN" "$stage$LIBDIR" "$stage/usr/share/doc/$PKG"

make --no-print-directory install DESTDIR="$inst" PREFIX=/usr LIBDIR="$LIBDIR"

# The runtime files of the installed layout: the library and its SONAME
# link (libfcgi.so, libfcgi.a, the headers and fcgi.pc are development
# files, which Debian's libfcgi-dev provides; fcgi-client stays out of a
# library package).
cp "$inst$LIBDIR/libfcgi.so.0.0.0" "$stage$LIBDIR/"
cp -P "$inst$LIBDIR/libfcgi.so.0" "$stage$LIBDIR/"
[ "$(readlink "$stage$LIBDIR/libfcgi.so.0")" = libfcgi.so.0.0.0 ]
lib="$stage$LIBDIR/libfcgi.so.0.0.0"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != libfcgi.so.0 ]; then
    echo "build-deb: $lib has SONAME '$soname', not libfcgi.so.0" >&2
    exit 1
fi
# As dh_strip does for a shared library: the debugging information (the
# release profile keeps line tables) goes to the -dbgsym package, in the
# file gdb and addr2line look up by the library's build ID.
build_id=$(readelf -n "$lib" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
if [ "${#build_id}" -lt 3 ]; then
    echo "build-deb: $lib has no GNU build ID" >&2
    exit 1
fi
dbg_stage="$work/debian/$PKG-dbgsym"
debug_file="/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug"
mkdir -p "$dbg_stage/DEBIAN" "$(dirname "$dbg_stage$debug_file")" "$dbg_stage/usr/share/doc"
objcopy --only-keep-debug --compress-debug-sections "$lib" "$dbg_stage$debug_file"
chmod 644 "$dbg_stage$debug_file"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$lib"
objcopy --add-gnu-debuglink="$dbg_stage$debug_file" "$lib"
chmod 644 "$lib"
ln -s "$PKG" "$dbg_stage/usr/share/doc/$PKG-dbgsym"

doc="$stage/usr/share/doc/$PKG"
cp packaging/deb/copyright "$doc/copyright"
mkdir -p "$stage/usr/share/lintian/overrides"
cp packaging/deb/lintian-overrides "$stage/usr/share/lintian/overrides/$PKG"
gzip -9n < CHANGELOG.md > "$doc/changelog.gz"
{
    echo "fcgi ($DEB_VERSION) unstable; urgency=medium"
    echo
    echo "  * fcgi $VERSION packaged by scripts/build-deb.sh from the layout of"
    echo "    \`make install\`; changes of the library: changelog.gz."
    echo
    echo " -- $MAINTAINER  $(LC_ALL=C date -u -R -d "@$epoch")"
} | gzip -9n > "$doc/changelog.Debian.gz"

fill() {
    sed -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@DIVERT_DIR@|$DIVERT_DIR|g" \
        -e "s|@DEB_VERSION@|$DEB_VERSION|g" -e "s|@ARCH@|$ARCH|g" \
        -e "s|@MAINTAINER@|$MAINTAINER|g" -e "s|@DEPENDS@|${DEPENDS:-}|g" \
        -e "s|@INSTALLED_SIZE@|${INSTALLED_SIZE:-}|g" -e "s|@BUILD_ID@|${BUILD_ID:-}|g" "$1"
}
fill packaging/deb/preinst.in > "$stage/DEBIAN/preinst"
fill packaging/deb/postrm.in > "$stage/DEBIAN/postrm"
chmod 755 "$stage/DEBIAN/preinst" "$stage/DEBIAN/postrm"
cp packaging/deb/triggers "$stage/DEBIAN/triggers"
fill packaging/deb/shlibs.in > "$stage/DEBIAN/shlibs"
chmod 644 "$stage/DEBIAN/triggers" "$stage/DEBIAN/shlibs"

# Depends: the versions of libc6 and libgcc-s1 (Rust's unwinder) whose
# symbols the library uses, from their symbols files.
printf 'Source: fcgi\n\nPackage: %s\nArchitecture: any\n' "$PKG" > "$work/debian/control"
DEPENDS=$(cd "$work" && dpkg-shlibdeps -O -e"debian/$PKG$LIBDIR/libfcgi.so.0.0.0" \
    | sed -n 's/^shlibs:Depends=//p')
if [ -z "$DEPENDS" ]; then
    echo "build-deb: dpkg-shlibdeps found no dependencies" >&2
    exit 1
fi
# Writes control (from template $2) and md5sums into package tree $1 and
# builds it into $3.
build_package() {
    local tree=$1 template=$2 deb=$3
    INSTALLED_SIZE=$(du -sk --apparent-size "$tree/usr" | cut -f1)
    fill "$template" > "$tree/DEBIAN/control"
    (cd "$tree" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) \
        > "$tree/DEBIAN/md5sums"
    chmod 644 "$tree/DEBIAN/control" "$tree/DEBIAN/md5sums"
    find "$tree" -type d -exec chmod 755 {} +
    find "$tree" -exec touch -h -d "@$epoch" {} +
    rm -f "$deb"
    SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$tree" "$deb" > /dev/null
}
DBGSYM_DEB="$OUT/${PKG}-dbgsym_${DEB_VERSION}_${ARCH}.deb"
BUILD_ID=$build_id
build_package "$dbg_stage" packaging/deb/control-dbgsym.in "$DBGSYM_DEB"
build_package "$stage" packaging/deb/control.in "$DEB"
# The last line is the library's package (scripts/ci-deb.sh reads it).
echo "$DBGSYM_DEB"
echo "$DEB"
