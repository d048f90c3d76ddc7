#!/usr/bin/env bash
# Screenshot of chapter 11's explorers for the README, in headless Chromium (optional Debian package `chromium`).
# No widget JavaScript can be had offline, so the explorers' saved state (controls with their values and their
# outputs) is rendered as static HTML by soundloc.explore.static_notebook, then photographed.
# Usage: bash tools/widget_screenshot.sh [OUT.png]   (after `make book`, or `.venv/bin/python -m soundloc.runner 11`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-figures/11_widget.png}"
nb="${SOUNDLOC_DATA:-data}/executed/11_teaching.ipynb"
[ -f "$nb" ] || { echo "widget_screenshot: $nb missing: run chapter 11 first" >&2; exit 2; }
command -v chromium >/dev/null || { echo "widget_screenshot: needs chromium (apt-get install chromium)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -c "import nbformat, sys; from soundloc.explore import static_notebook; nbformat.write(static_notebook(sys.argv[1], widgets_only=True), sys.argv[2])" "$nb" "$tmp/widgets.ipynb"
.venv/bin/jupyter nbconvert --to html --no-input "$tmp/widgets.ipynb" --output-dir "$tmp" >/dev/null 2>&1
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,680 --screenshot="$out" "file://$tmp/widgets.html" 2>/dev/null
echo "wrote $out"
