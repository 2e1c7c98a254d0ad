# maas-usage as a container image: built in a Rust stage, run as a non-root user from a slim
# Debian base (CA certificates for the cloud's HTTPS; no shell needed at run time). Used by
# deploy/kubernetes/. Not built in this project's CI (its machines have no container daemon).
#   docker build -t maas-usage:0.1.0 .
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/maas-usage

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 maas-usage \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/maas-usage --no-create-home maas-usage \
 && mkdir -p /var/lib/maas-usage && chown 65532:65532 /var/lib/maas-usage
COPY --from=build /src/target/release/maas-usage /usr/bin/maas-usage
USER 65532:65532
ENV XDG_STATE_HOME=/var/lib
VOLUME ["/var/lib/maas-usage"]
EXPOSE 9464
ENTRYPOINT ["/usr/bin/maas-usage"]
CMD ["--help"]
