# gradserve: built and unit-tested in debian:bookworm, run from
# debian:bookworm-slim with only the runtime libraries.
#   docker build -t gradserve .
#   podman build --format=docker --network=host -t gradserve .
#   docker run -p 50051:50051 gradserve [--workers=2 --threads_per_worker=1 ...]

FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY tools/install-deps.sh /src/tools/install-deps.sh
RUN apt-get update \
 && /src/tools/install-deps.sh build \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGRADSERVE_PYTHON_TESTS=OFF \
 && cmake --build /build \
 && ctest --test-dir /build --output-on-failure -j"$(nproc)" \
 && strip /build/server/gradserve /build/client/gradctl

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libdnnl2 libgomp1 ocl-icd-libopencl1 libzip4 libonnx1 libcpp-httplib0.11 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gradserve
COPY --from=build /build/server/gradserve /build/client/gradctl /usr/local/bin/
USER gradserve
EXPOSE 50051
# The address the health check asks; set it when --address moves the port.
ENV GRADSERVE_HEALTH_ADDRESS=127.0.0.1:50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD gradctl --server="$GRADSERVE_HEALTH_ADDRESS" --timeout=4 health
STOPSIGNAL SIGTERM
ENTRYPOINT ["gradserve"]
CMD ["--address=0.0.0.0:50051"]
