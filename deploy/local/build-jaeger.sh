#!/usr/bin/env bash
# Builds Jaeger v2 (the OTLP receiver the trace tests export to) from the Go module proxy,
# once, into the cache beside the Kafka jars:
#   deploy/local/build-jaeger.sh [VERSION] [CACHE_DIR]  ->  CACHE_DIR/jaeger-VERSION/jaeger
# The module's go.mod has a replace directive, so `go install module@version` refuses it:
# the module source is downloaded and built as the main module instead. Without a Go
# toolchain it says so and exits 0 (the trace tests then skip with that reason).
set -euo pipefail
version=${1:-v1.75.0}
cache=${2:-${FOLDFLOW_CACHE_DIR:-$HOME/.cache/foldflow}}
out="$cache/jaeger-$version/jaeger"
[ -x "$out" ] && exit 0
if ! command -v go >/dev/null 2>&1; then
    echo "go not installed: Jaeger $version not built, the end-to-end trace test will skip"
    exit 0
fi
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9  # a second build waits for the first and then finds the binary
[ -x "$out" ] && exit 0
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
echo "building Jaeger $version from the Go module proxy (once; several minutes)"
src=$(go mod download -json "github.com/jaegertracing/jaeger@$version" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src"/. "$work"/
chmod -R u+w "$work"
(cd "$work" && go build -trimpath -o "$out.tmp" ./cmd/jaeger)
mv "$out.tmp" "$out"
echo "built $out"
