# syntax=docker/dockerfile:1
# The jitgate server: `gate serve` as a non-root user with all state in one volume,
# /var/lib/jitgate. Runs with a read-only root file system (`docker run --read-only`).
# Configuration comes from GATE_* variables and from files mounted at /etc/jitgate.
# See docs/operations.md, "Container".
#
# Multi-arch (linux/amd64, linux/arm64): the build stage runs on the build machine's own
# platform and cross-compiles for TARGETARCH, so rustc never runs under QEMU emulation
# (which would make an arm64 release build take many times longer). Only the runtime
# stage is the target platform's.

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG BUILDARCH
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# aws-lc, jemalloc and SQLite have C parts: an arm64 build on amd64 needs Debian's cross
# gcc and arm64 glibc (the same glibc 2.36 as the bookworm runtime image below).
RUN if [ "$TARGETARCH" = "$BUILDARCH" ]; then \
      echo "native build for $TARGETARCH"; \
    elif [ "$TARGETARCH" = arm64 ] && [ "$BUILDARCH" = amd64 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu=4:12.2.0-3 libc6-dev-arm64-cross=2.36-8cross1 \
      && rm -rf /var/lib/apt/lists/*; \
    else \
      echo "building for $TARGETARCH on $BUILDARCH is not set up" >&2; exit 1; \
    fi
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu ;; \
      arm64) echo aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
# Used only when the target is aarch64 (Debian also names its native arm64 gcc so).
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# `gate --version` names the commit: the build context has no .git, so the release
# workflow passes them (build.rs reads GATE_BUILD_COMMIT and GATE_BUILD_DATE).
ARG GATE_BUILD_COMMIT=""
ARG GATE_BUILD_DATE=""
ENV GATE_BUILD_COMMIT=$GATE_BUILD_COMMIT \
    GATE_BUILD_DATE=$GATE_BUILD_DATE
WORKDIR /src
COPY . .
# jemalloc's configure takes its archiver and nm from AR and NM, not from the target's
# AR_<triple>: set them for a cross build, and keep host C code on the host's tools.
RUN if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      export AR=aarch64-linux-gnu-ar NM=aarch64-linux-gnu-nm \
        AR_x86_64_unknown_linux_gnu=ar CC_x86_64_unknown_linux_gnu=gcc; \
    fi \
    && cargo build --release --locked --bin gate --target "$(cat /rust-target)" \
    && install -D -m 0755 "target/$(cat /rust-target)/release/gate" /out/gate \
    && install -d -m 0700 /out/data

# glibc, libgcc_s, CA certificates, /etc/nsswitch.conf and a nonroot user (65532), no
# shell: the dynamically linked glibc binary built above needs no more.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gate /usr/local/bin/gate
COPY --from=build --chown=65532:65532 /out/data /var/lib/jitgate
ENV GATE_CONFIG=/etc/jitgate/gate.yaml \
    GATE_DATA_DIR=/var/lib/jitgate \
    GATE_LISTEN=0.0.0.0:8080
# The working directory is the volume too: nothing relative lands on the read-only root
# (SQLite puts temporary files in the first writable of $TMPDIR, /var/tmp, /tmp and `.`).
WORKDIR /var/lib/jitgate
VOLUME ["/var/lib/jitgate"]
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gate"]
CMD ["serve"]
