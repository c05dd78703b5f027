#!/usr/bin/env bash
# demo_text: the sections of `make demo` are numbered 1, 2, 3, ... in the
# order demo.sh runs demo/*.sql, one numbered heading per section (issue
# 17.6: the demo printed 1, unnumbered ones, then 5). The demo's output
# itself is not compared: it depends on the data set.
set -euo pipefail
n=0
bad=0
for f in "$TOP"/demo/*.sql; do
    while IFS= read -r h; do
        n=$((n + 1))
        num=$(sed -E "s/^.*'=+ ([0-9]+)\. .*/\1/" <<<"$h")
        if [ "$num" != "$n" ]; then
            echo "$(basename "$f"): section $n is headed: $h"; bad=1
        fi
    done < <(grep -E "^\\\\echo '=+ " "$f")
done
[ "$n" -gt 0 ] || { echo "no section heading in demo/*.sql"; exit 1; }
[ "$bad" = 0 ] || exit 1
echo "the demo's $n sections are numbered in order"
