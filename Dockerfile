# Basin broker image: built on Debian 12 from Debian's packages, run as a
# non-root user. Listens on 0.0.0.0:7878 inside the container.
#   docker build -t basin .
#   docker run --rm -p 7878:7878 basin
FROM debian:12 AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto \
      libboost-dev libboost-program-options-dev libspdlog-dev libjemalloc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY broker broker
COPY client client
COPY bench bench
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBASIN_BUILD_TESTS=OFF -DBASIN_BUILD_BENCH=OFF \
 && cmake --build build --target basind basinctl \
 && strip build/broker/basind build/client/basinctl

FROM debian:12-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libboost-program-options1.74.0 libspdlog1.10 libjemalloc2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home basin \
 && install -d -o basin -g basin -m 0750 /var/lib/basin
COPY --from=build /src/build/broker/basind /src/build/client/basinctl /usr/local/bin/
USER basin
# Durable queues live here; mount a volume to keep them across containers.
ENV BASIN_LISTEN=0.0.0.0:7878 BASIN_DATA_DIR=/var/lib/basin
VOLUME /var/lib/basin
EXPOSE 7878
HEALTHCHECK --interval=10s --timeout=3s CMD ["basinctl", "--addr", "127.0.0.1:7878", "health"]
ENTRYPOINT ["basind"]
