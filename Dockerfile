# syntax=docker/dockerfile:1
# Hashgrid: builds the `api` and `workers` binaries into one small runtime image.
# Requires BuildKit (default in current Docker) for the cache mounts.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# The whole workspace is needed: every member's manifest for --locked, and
# migrations/ is embedded into the binaries at compile time.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api -p workers \
    && mkdir -p /out \
    && cp target/release/api target/release/workers /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /app --shell /usr/sbin/nologin hashgrid
COPY --from=builder /out/api /out/workers /usr/local/bin/
# Working directory is writable by the service user (dev mail goes to var/mail).
WORKDIR /app
USER hashgrid
ENV BIND_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
# No HEALTHCHECK: the slim image has no curl; probe GET /healthz and /readyz from the orchestrator.
CMD ["api"]
