#!/usr/bin/env bash
# Regenerates exporters/src/perfetto/protos.rs from the vendored Perfetto protos in
# exporters/perfetto-protos/ (protox + prost-build: no protoc needed). Run after editing them.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/perfetto-gen}" \
  cargo run -q --manifest-path exporters/perfetto-protos/gen/Cargo.toml
rustfmt --edition 2021 exporters/src/perfetto/protos.rs
