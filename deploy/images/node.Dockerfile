# syntax=docker/dockerfile:1
# The FlavioDB node image, for users with Docker or BuildKit:
#   docker build -f deploy/images/node.Dockerfile -t flaviodb/flavio:0.1.0 .
# (run from the repository root). Our CI machines cannot pull images, so CI
# builds the same layout from a host-built binary: deploy/images/build-local.sh.
#
# No HEALTHCHECK: Kubernetes ignores it, and probes run `flavio health`,
# which asks the node's gRPC health service (exit 0 when SERVING).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# protoc comes vendored (protoc-bin-vendored), so the builder needs nothing
# beyond the Rust image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flavio-node --bin flavio \
 && install -D -s target/release/flavio /out/usr/local/bin/flavio \
 && mkdir -p /out/var/lib/flavio

# distroless/cc: glibc, libgcc and CA certificates, no shell, a `nonroot`
# user (65532). The binary links glibc dynamically, so `static` would not do.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/flavio /usr/local/bin/flavio
# The data directory belongs to the runtime user so the node can write it
# with a read-only root filesystem (a volume or PVC is mounted here).
COPY --from=build --chown=65532:65532 /out/var/lib/flavio /var/lib/flavio
USER 65532:65532
# HOME is the data directory: a standalone node without FLAVIO_COOKIE_FILE
# creates its cookie there (~/.flavio.cookie), on the writable volume, and
# `docker exec ... flavio ping` finds the same cookie.
ENV HOME=/var/lib/flavio \
    FLAVIO_DATA_DIR=/var/lib/flavio \
    FLAVIO_LISTEN=0.0.0.0:10017 \
    FLAVIO_LOG_FORMAT=json
VOLUME ["/var/lib/flavio"]
EXPOSE 10017
ENTRYPOINT ["/usr/local/bin/flavio", "serve"]
