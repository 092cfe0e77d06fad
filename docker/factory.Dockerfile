# convhub reference factory with LibreOffice (headless), converting to PDF/PNG/ODF.
# Build from the repository root:  docker build -f docker/factory.Dockerfile -t convhub-factory .
# The base install (no `server` extra): the factory needs only the standard library's XML-RPC client.
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/var/lib/convhub-factory

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui \
      python3-uno python3 python3-venv poppler-utils fonts-dejavu fonts-liberation2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/convhub
COPY pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
COPY protocol ./protocol
# Debian's python3 is 3.11 (as convhub requires); the venv sees the system's python3-uno.
RUN python3 -m venv --system-site-packages /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir . \
 && useradd --system --uid 10002 --home-dir /var/lib/convhub-factory --create-home --shell /usr/sbin/nologin factory

ENV PATH=/opt/venv/bin:$PATH
USER factory
# Secret from the environment (CONVHUB_FACTORY_SECRET) or a mounted file (--config).
CMD ["convhub", "factory", "run", "--server", "http://web:8080", "--name", "factory-1"]
