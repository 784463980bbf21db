# Sourced by both package builders (flinch-agent and flinch): the steps their packages share.

# Installs a package's man page, copyright and changelog under /usr/share in the staging tree. The changelog's date is
# the last commit's, so two builds of one commit give the same package.
# Usage: package_docs ROOT PACKAGE VERSION MANPAGE
package_docs() {
  local root=$1 package=$2 version=$3 manpage=$4
  local doc="$root/usr/share/doc/$package" man="$root/usr/share/man/man1/$(basename "$manpage").gz"
  install -d -m 0755 "$doc" "$root/usr/share/man/man1"
  install -m 0644 packaging/deb/copyright "$doc/copyright"
  gzip -9n -c "$manpage" > "$man"
  {
    echo "flinch ($version) unstable; urgency=medium"
    echo
    echo "  * Packaged from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    echo " -- flinch developers <flinch@lists.example.org>  $(git log -1 --format=%cD 2>/dev/null || date -R)"
  } | gzip -9n -c > "$doc/changelog.gz"
  chmod 0644 "$man" "$doc/changelog.gz"
}

# Writes DEBIAN/md5sums for the staging tree (whose DEBIAN/control is written) and builds the .deb from it with xz at
# the given level, owned by root.
# Usage: package_build ROOT DEB XZ_LEVEL INSTALLED_KIB
package_build() {
  local root=$1 deb=$2 level=$3 installed_kib=$4
  (cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
  dpkg-deb --root-owner-group -Zxz "-z$level" --build "$root" "$deb" >/dev/null
  echo "$deb $(stat -c %s "$deb") bytes (installed $installed_kib KiB)"
}
