# Sourced by both package builders: installs a package's man page, copyright and changelog under /usr/share in the
# staging tree. The changelog's date is the last commit's, so two builds of one commit give the same package.
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
