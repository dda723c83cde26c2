#!/bin/sh
# Builds the dashboard's assets into web/dist, which is committed: a fresh
# clone builds `yard` (CMake embeds web/dist/*) without npm or Node.js. Run
# it after editing web/src or web/package.json:  sh web/build.sh
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund >/dev/null
rm -rf dist
mkdir -p dist
cp src/index.html src/app.js src/app.css dist/
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css dist/
# uPlot's license travels with its code.
cp node_modules/uplot/LICENSE dist/uPlot.LICENSE.txt
node --check dist/app.js
echo "web/dist: $(ls dist | tr '\n' ' ')"
