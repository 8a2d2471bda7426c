# Build: docker build -t opgate .
# Run:   docker run -p 4337:4337 -p 9464:9464 opgate serve --upstream URL --listen 0.0.0.0:4337 --metrics-listen 0.0.0.0:9464
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin opgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 opgate
COPY --from=build /src/target/release/opgate /usr/local/bin/opgate
COPY config /etc/opgate
USER opgate
EXPOSE 4337 9464
# The slim image has no curl: opgate asks its own /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s CMD ["opgate", "health"]
ENTRYPOINT ["opgate"]
CMD ["serve", "--config", "/etc/opgate/example.toml", "--listen", "0.0.0.0:4337", "--metrics-listen", "0.0.0.0:9464"]
