# convhub reference factory with LibreOffice (headless), converting to PDF/PNG/ODF.
# Build from the repository root:  docker build -f docker/factory.Dockerfile -t convhub-factory .
# BASE: any Debian bookworm image (see server.Dockerfile). The base install (no `server` extra):
# the factory needs only the standard library's XML-RPC client.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/var/lib/convhub-factory \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui \
      python3-uno python3 python3-venv poppler-utils fonts-dejavu-core fonts-liberation2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --home-dir /var/lib/convhub-factory --create-home --shell /usr/sbin/nologin factory \
 && python3 -m venv --system-site-packages /opt/venv

WORKDIR /opt/convhub
COPY pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
COPY protocol ./protocol
# Debian's python3 is 3.11 (as convhub requires); the venv sees the system's python3-uno.
RUN pip install --no-cache-dir . \
 && rm -rf build *.egg-info

USER factory
# Secret from the environment (CONVHUB_FACTORY_SECRET) or a mounted file (--config).
CMD ["convhub", "factory", "run", "--server", "http://web:8080", "--name", "factory-1"]
