#!/bin/sh
# Fetches the dashboard's one dependency (uPlot) into web/dist, which is
# committed: a fresh clone builds `yard` (CMake embeds web/src/* and
# web/dist/*) without npm or Node.js. Run it after changing web/package.json:
#   sh web/build.sh
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund >/dev/null
rm -rf dist
mkdir -p dist
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css dist/
# uPlot's license travels with its code.
cp node_modules/uplot/LICENSE dist/uPlot.LICENSE.txt
node --check src/app.js
echo "web/dist: $(ls dist | tr '\n' ' ')"
