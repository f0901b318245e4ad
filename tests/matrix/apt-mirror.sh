#!/bin/bash
# Print the Debian mirror this machine's apt uses for the main archive, and nothing else:
#   mirror=$(bash tests/matrix/apt-mirror.sh)
# Read from /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line *.list and deb822
# *.sources; "Enabled: no" stanzas and disabled files are skipped): the first "deb" entry
# whose suite is a Debian release (bookworm, trixie, sid, ...; not -security/-updates/
# -backports).  No such entry: a clear error and exit 1, never a guessed host.
# APT_SOURCES_DIR (default /etc/apt) is for the tests of this script.
set -euo pipefail
dir=${APT_SOURCES_DIR:-/etc/apt}
release='^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldstable|stable|testing|unstable)$'
found=""
one_line() {  # deb [options] URI suite components...
    awk -v rel="$release" '
        $1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) ~ rel) { print $i; exit }
        }' "$1"
}
deb822() {  # stanzas separated by blank lines: Types, URIs, Suites, Enabled
    awk -v rel="$release" '
        function flush() {
            if (!done && types ~ /(^| )deb( |$)/ && enabled != "no") {
                n = split(suites, s, " "); for (k = 1; k <= n; k++) if (s[k] ~ rel) { split(uris, u, " "); print u[1]; done = 1; exit }
            }
            types = ""; uris = ""; suites = ""; enabled = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        tolower($1) == "types:"   { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
        tolower($1) == "uris:"    { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
        tolower($1) == "suites:"  { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
        tolower($1) == "enabled:" { sub(/^[^:]*:[ \t]*/, ""); enabled = tolower($0) }
        END { flush() }' "$1"
}
for file in "$dir/sources.list" "$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    case $file in
        *.sources) found=$(deb822 "$file") ;;
        *) found=$(one_line "$file") ;;
    esac
    [ -n "$found" ] && break
done
if [ -z "$found" ]; then
    echo "apt-mirror: no Debian mirror in $dir/sources.list or $dir/sources.list.d/ (a 'deb' entry for a Debian release such as bookworm): add one, the matrix builds its roots from the machine's own mirror" >&2
    exit 1
fi
echo "${found%/}"
