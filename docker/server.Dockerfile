# convhub server image: web (granian), Celery worker, beat, Flower and the operator CLI.
# Build from the repository root:  docker build -f docker/server.Dockerfile -t convhub-server .
# BASE is any Debian bookworm image; bookworm's python3 is 3.11, as convhub requires. Where no
# registry is reachable, scripts/make-base-image.sh makes localhost/convhub-base:bookworm by
# debootstrap and scripts/build-images.sh passes it with --build-arg BASE=...
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONVHUB_DATA_DIR=/var/lib/convhub \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --home-dir /var/lib/convhub --shell /usr/sbin/nologin convhub \
 && mkdir -p /var/lib/convhub \
 && chown convhub:convhub /var/lib/convhub

WORKDIR /opt/convhub
# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml or constraints.txt
# change. constraints.txt pins every transitive dependency to the versions the test suite ran with.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['server']))" >/tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md ./
COPY app ./app
COPY tasks ./tasks
COPY protocol ./protocol
COPY docker/init.sh /usr/local/bin/convhub-init
RUN pip install --no-cache-dir --no-deps -c constraints.txt '.[server]' \
 && rm -rf build *.egg-info

USER convhub
VOLUME ["/var/lib/convhub"]
EXPOSE 8080 5555
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
CMD ["convhub", "web", "--host", "0.0.0.0", "--port", "8080", "--workers", "2", "--threads", "8"]
