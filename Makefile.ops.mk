# Operations targets; included from the main Makefile (`include Makefile.ops.mk`).
PY ?= .venv/bin/python
PYTEST ?= $(PY) -m pytest -p no:cacheprovider

.PHONY: ops-setup chromium rabbitmq-management test-ops compose-check topology topology-short

ops-setup: chromium rabbitmq-management

chromium:
	scripts/install-chromium.sh

rabbitmq-management:
	scripts/enable-rabbitmq-management.sh

# Metrics, ops page (incl. headless Chromium), request log, Flower on Redis and RabbitMQ, compose file.
test-ops: ops-setup
	$(PYTEST) -q tests/integration/ops tests/unit/test_compose.py

compose-check:
	$(PYTEST) -q tests/unit/test_compose.py

# Full multi-process topology: 2 gunicorn web workers, 2 Celery workers, beat, 8 factories,
# 2,000 jobs over SOAP, on PostgreSQL + RabbitMQ and then Redis.
topology: rabbitmq-management
	CONVHUB_TOPOLOGY_JOBS=$${CONVHUB_TOPOLOGY_JOBS:-2000} $(PYTEST) -q -s --timeout=1800 tests/e2e/test_topology.py

topology-short:
	$(PYTEST) -q tests/e2e/test_topology.py

# docker/compose.yaml built and run with podman, checked from the host (scripts/test-docker.sh):
# builds the images (cached layers), brings the stack up, converts an ODT over SOAP into a 2-page
# PDF, checks /healthz, /metrics and Flower, tears it down (also on failure). Root, Debian.
# Bounded: CONVHUB_DOCKER_TIMEOUT seconds in all (default 3600); measured ~13 min cold (no images;
# on a loaded 2-core machine), ~3 min warm (images cached).
.PHONY: test-docker
test-docker: install
	CONVHUB_DOCKER_TIMEOUT=$${CONVHUB_DOCKER_TIMEOUT:-3600} bash scripts/test-docker.sh
