#!/usr/bin/env bash
# Vendor the book's JavaScript from the npm registry, so no page loads anything from a CDN.
#
#   book/_vendor/fetch.sh OUT_DIR
#
# Packs MathJax 3.2.2, require.js 2.3.4 and @jupyter-widgets/html-manager 1.0.6 (the version
# ipywidgets 8.1 and myst-nb 1.4 expect) with `npm pack` and unpacks what the pages load into
# OUT_DIR, which _config.yml copies verbatim into the HTML via `html_extra_path`:
#   OUT_DIR/mathjax/tex-chtml.js (+ fonts and lazily loaded components)
#   OUT_DIR/requirejs/require.js
#   OUT_DIR/html-manager/: all of html-manager's dist/ (embed-amd.js, its chunks and icon fonts)
#   and widgets-offline.js, which points require.js at it, and widgets-a11y.js (names, alt
#   text and live regions for the widgets' controls)
# and axe-core 4.11.4 for tests/test_book_a11y.py into OUT_DIR/.axe/axe.min.js: a dot folder,
# which Sphinx's exclude_patterns keep out of the book (readers never load it).
# Source maps and MathJax bundles the book does not use are dropped to keep the copy small.
set -euo pipefail
out=${1:?usage: fetch.sh OUT_DIR}
packages=(mathjax@3.2.2 requirejs@2.3.4 @jupyter-widgets/html-manager@1.0.6 axe-core@4.11.4)
stamp="$out/.fetched"
ours=("$(dirname "$0")"/widgets-*.js)  # the book's own scripts, copied beside the widget manager
up_to_date() {
  [[ -f $stamp && $(cat "$stamp") == "${packages[*]}" ]] || return 1
  local f
  for f in "${ours[@]}"; do [[ $f -nt $stamp ]] && return 1; done
  return 0
}
if up_to_date; then
  exit 0  # already vendored at these versions, and our scripts unchanged since
fi
if ! command -v npm >/dev/null; then
  # A clean CI machine runs as root with Debian's apt: install the npm client like chromium.
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq npm >/dev/null
  else
    echo "fetch.sh: npm is needed to vendor the book's JavaScript (apt-get install -y npm)" >&2
    exit 1
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${packages[@]}" >/dev/null)
for tgz in "$work"/*.tgz; do
  name=$(basename "$tgz" .tgz)
  mkdir -p "$work/$name" && tar xzf "$tgz" -C "$work/$name"
done
rm -rf "$out" && mkdir -p "$out/mathjax" "$out/requirejs" "$out/html-manager" "$out/.axe"
mj="$work/mathjax-3.2.2/package/es5"
cp "$mj/tex-chtml.js" "$out/mathjax/"
cp -r "$mj/input" "$mj/output" "$mj/a11y" "$mj/ui" "$mj/sre" "$mj/adaptors" "$out/mathjax/"
cp "$work/mathjax-3.2.2/package/LICENSE" "$out/mathjax/"
cp "$work/requirejs-2.3.4/package/require.js" "$out/requirejs/"
cp -r "$work/jupyter-widgets-html-manager-1.0.6/package/dist/." "$out/html-manager/"
cp "$work/jupyter-widgets-html-manager-1.0.6/package/LICENSE" "$out/html-manager/"
cp "${ours[@]}" "$out/html-manager/"
cp "$work/axe-core-4.11.4/package/axe.min.js" "$work/axe-core-4.11.4/package/LICENSE" "$out/.axe/"
find "$out" -name '*.map' -delete
echo "${packages[*]}" > "$stamp"
echo "vendored ${packages[*]} into $out"
