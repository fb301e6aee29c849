# syntax=docker/dockerfile:1
# The FlavioDB operator image, for users with Docker or BuildKit:
#   docker build -f deploy/images/operator.Dockerfile -t flaviodb/flavio-operator:0.1.0 .
# (run from the repository root). Probes use its HTTP /healthz (no HEALTHCHECK).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flavio-operator --bin flavio-operator \
 && install -D -s target/release/flavio-operator /out/usr/local/bin/flavio-operator

# distroless/cc: glibc and CA certificates, non-root (65532), no shell. The
# operator writes nothing to disk, so a read-only root filesystem is fine.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/flavio-operator /usr/local/bin/flavio-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flavio-operator", "run"]
