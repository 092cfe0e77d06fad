# convhub server image: web (gunicorn), Celery worker, beat, Flower and the operator CLI.
# Build from the repository root:  docker build -f docker/server.Dockerfile -t convhub-server .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONVHUB_DATA_DIR=/var/lib/convhub

WORKDIR /opt/convhub
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY tasks ./tasks
COPY protocol ./protocol
# constraints.txt pins every transitive dependency to the versions the test suite ran with.
RUN pip install --no-cache-dir -c constraints.txt '.[server]' \
 && useradd --system --uid 10001 --home-dir /var/lib/convhub --shell /usr/sbin/nologin convhub \
 && mkdir -p /var/lib/convhub \
 && chown convhub:convhub /var/lib/convhub

USER convhub
VOLUME ["/var/lib/convhub"]
EXPOSE 8080 5555
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
CMD ["convhub", "web", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
