# The sse2kafka container image: the daemon alone on debian:bookworm-slim, as a non-root user.
#
#   podman build --format docker -t sse2kafka .     (docker build -t sse2kafka . works the same)
#   podman run -d --read-only --cap-drop=ALL -e KAFKA_BROKERS=kafka:9092 \
#     -v sse2kafka-state:/var/lib/sse2kafka sse2kafka
#
# The default config (/etc/sse2kafka/sse2kafka.yaml, from deploy/sse2kafka.yaml) reads the
# brokers from $KAFKA_BROKERS; mount your own config over it, or at another path and pass
# `-c PATH`. Checkpoints live in the volume /var/lib/sse2kafka: keep it across restarts, or every
# stream starts again at its live edge. `podman stop` / `docker stop` send SIGTERM: the daemon
# flushes in-flight events (kafka.flush_timeout, 10s by default) and exits 0; give the stop
# timeout more than that (`--stop-timeout 30`).
# The HEALTHCHECK requests /healthz on the admin endpoint at $SSE2KAFKA_ADMIN_LISTEN, which the
# default config also listens on; a config of your own needs `admin.listen` at that address.
# Needs `--format docker` with podman/buildah, which drop HEALTHCHECK from OCI images.

FROM debian:bookworm AS build
# Downloaded packages stay in a build cache, so a change of install-deps.sh does not fetch again.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    --mount=type=bind,source=scripts/install-deps.sh,target=/tmp/install-deps.sh \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >/etc/apt/apt.conf.d/keep-cache \
 && /tmp/install-deps.sh --build-only
WORKDIR /src
COPY . .
# Only the daemon: tests and benchmarks are built and run by scripts/test.sh, not here. The
# optimisation of the tested RelWithDebInfo build, without the debug info that would be stripped.
# The build tree is a cache, so a rebuild compiles only what changed.
ARG JOBS=
RUN --mount=type=cache,target=/var/cache/sse2kafka-build \
    cmake -S . -B /var/cache/sse2kafka-build -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" \
          -DSSE2KAFKA_WERROR=ON -DBUILD_TESTING=OFF -DSSE2KAFKA_BENCH=OFF >/dev/null \
 && cmake --build /var/cache/sse2kafka-build --target sse2kafka -j "${JOBS:-$(nproc)}" \
 && install -D -m 0755 -s /var/cache/sse2kafka-build/sse2kafka /out/sse2kafka

FROM debian:bookworm-slim
RUN --mount=type=bind,source=scripts/install-deps.sh,target=/tmp/install-deps.sh \
    /tmp/install-deps.sh --runtime-only \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 sse2kafka \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sse2kafka --no-create-home \
            --shell /usr/sbin/nologin sse2kafka \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/sse2kafka
COPY --from=build /out/sse2kafka /usr/bin/sse2kafka
COPY deploy/sse2kafka.yaml /etc/sse2kafka/sse2kafka.yaml

LABEL org.opencontainers.image.title="sse2kafka" \
      org.opencontainers.image.description="Server-Sent Events feeds into Kafka, one record per event"
ENV SSE2KAFKA_ADMIN_LISTEN=127.0.0.1:9464
USER 10001:10001
VOLUME /var/lib/sse2kafka
STOPSIGNAL SIGTERM
# bash's /dev/tcp: the slim image has no HTTP client, and the daemon needs none.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/bin/bash", "-c", "a=${SSE2KAFKA_ADMIN_LISTEN:-127.0.0.1:9464}; exec 3<>/dev/tcp/${a%:*}/${a##*:} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r -t 4 _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["/usr/bin/sse2kafka"]
CMD ["-c", "/etc/sse2kafka/sse2kafka.yaml"]
