# The buffering proxy in front of the web replicas: nginx from Debian's packages. It takes whole
# request bodies before it opens an upstream connection and whole responses before it hands the
# connection back, so slow clients hold no thread of a web replica.
# Build from docker/:  podman build -f proxy.Dockerfile -t convhub-proxy .
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default \
 && mkdir -p /var/cache/nginx/body /var/cache/nginx/proxy \
 && chown -R www-data:www-data /var/cache/nginx
COPY proxy/nginx.conf /etc/nginx/nginx.conf
COPY proxy/entrypoint.sh /usr/local/bin/convhub-proxy
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /proxy-health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
CMD ["convhub-proxy"]
