# Basin broker image (docs/operations.md, "Container"): built on Debian 12 from
# Debian's packages; the runtime stage holds basind, basinctl and the packages
# of the shared libraries they load, computed from ldd at build time.
#   podman build --format docker -t basin .      (docker build -t basin .)
#   podman run --rm -p 7878:7878 -p 9464:9464 -v basin-data:/var/lib/basin basin
FROM debian:12 AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto \
      libboost-dev libboost-program-options-dev libspdlog-dev libjemalloc-dev \
      prometheus-cpp-dev libtoml11-dev libsystemd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what basind and basinctl are built from: a change to the tests, docs or
# benchmarks does not rebuild the image.
COPY CMakeLists.txt ./
COPY cmake cmake
COPY proto proto
COPY broker broker
COPY client client
COPY deploy/container/runtime-packages.sh /usr/local/bin/
# The build has no .git: the revision comes from the caller
# (--build-arg BASIN_REVISION=$(git rev-parse --short=12 HEAD)).
ARG BASIN_REVISION=unknown
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DBASIN_BUILD_TESTS=OFF -DBASIN_BUILD_BENCH=OFF -DBASIN_REVISION="$BASIN_REVISION" \
 && cmake --build build --target basind basinctl \
 && strip build/broker/basind build/client/basinctl \
 && runtime-packages.sh build/broker/basind build/client/basinctl > /runtime-packages \
 && cat /runtime-packages

FROM debian:12-slim
COPY --from=build /runtime-packages /usr/share/basin/runtime-packages
# The uid and gid are fixed (10001) so that a host directory can be given to
# them: chown 10001:10001 DIR before mounting it on /var/lib/basin.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $(cat /usr/share/basin/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 basin \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/basin \
      --shell /usr/sbin/nologin basin \
 && install -d -o basin -g basin -m 0750 /var/lib/basin
COPY --from=build /src/build/broker/basind /src/build/client/basinctl /usr/local/bin/
USER 10001:10001
# gRPC on 7878, metrics and the read-only dashboard on 9464, durable queues in
# /var/lib/basin (mount a volume there to keep them across containers).
# Plaintext by default, as a container's network is its own until a port is
# published: before publishing one beyond the host, mount a certificate and a
# users file and set BASIN_TLS_CERT, BASIN_TLS_KEY, BASIN_USERS and
# BASIN_ALLOW_INSECURE=false (docs/security.md, "Containers").
ENV BASIN_LISTEN=0.0.0.0:7878 BASIN_HTTP_LISTEN=0.0.0.0:9464 BASIN_DATA_DIR=/var/lib/basin \
    BASIN_ALLOW_INSECURE=true
VOLUME /var/lib/basin
EXPOSE 7878 9464
STOPSIGNAL SIGTERM
# basinctl health gives up after 5 s of its own: the timeout leaves it room.
HEALTHCHECK --interval=10s --timeout=8s --start-period=10s --retries=3 \
  CMD ["basinctl", "--addr", "127.0.0.1:7878", "health"]
ENTRYPOINT ["basind"]
