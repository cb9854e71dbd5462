# syntax=docker/dockerfile:1
# One multi-stage build, one target per service, always built from the repository root:
#   docker build --target gateway    -t modelrouter/gateway .
#   docker build --target router     -t modelrouter/router .
#   docker build --target workers    -t modelrouter/workers .
#   docker build --target accounting -t modelrouter/accounting .
#   docker build --target migrate    -t modelrouter/migrate .   (Alembic, run once per release)
# Layers change in the order the inputs do: pyproject.toml (dependencies), then proto/, then code.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# ---- build stages: nothing below reaches a runtime image except what is COPY'd --from ----------

# Generated protobuf/gRPC code is not committed; grpcio-tools lives in this stage only.
FROM python-base AS protos
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
RUN pip install --no-cache-dir grpcio-tools==1.85.1
COPY proto/ proto/
RUN mkdir -p libs/protos \
    && find proto -name '*.proto' -print0 \
      | xargs -0 python -m grpc_tools.protoc -Iproto --python_out=libs/protos --pyi_out=libs/protos \
          --grpc_python_out=libs/protos \
    && find libs/protos/modelrouter -type d -exec touch {}/__init__.py \;

# One virtualenv per service: the shared dependencies first (a layer every service reuses), then
# the service's extra. `pip install '.[x]'` installs dependencies only (the project has no packages).
# DL3013 is ignored on these lines because every version is pinned (==) in pyproject.toml.
FROM python-base AS deps-common
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN pip install --no-cache-dir .

FROM deps-common AS deps-gateway
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[gateway]'

FROM deps-common AS deps-router
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[router]'

FROM deps-common AS deps-workers
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[workers]'

FROM deps-common AS deps-accounting
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[accounting]'

# ---- runtime base: non-root user, source roots on PYTHONPATH -----------------------------------

FROM python-base AS runtime
# A numeric USER below, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/libs:/app/libs/protos:/app/services
WORKDIR /app
COPY deploy/docker/healthcheck.py /usr/local/bin/healthcheck.py
# The services stop taking work on SIGTERM and drain (DRAIN_TIMEOUT_S); exec-form CMDs below make
# python PID 1 so the signal reaches it.
STOPSIGNAL SIGTERM

# ---- service targets ----------------------------------------------------------------------------
# Code is owned by root (the service cannot rewrite itself); Tilt's dev builds pass
# APP_FILES_OWNER=10001 so live update can sync files into the running container.

FROM runtime AS gateway
ARG APP_FILES_OWNER=root
COPY --from=deps-gateway /opt/venv /opt/venv
COPY --from=protos --chown=${APP_FILES_OWNER} /src/libs/protos /app/libs/protos
COPY --chown=${APP_FILES_OWNER} config/ /app/config/
COPY --chown=${APP_FILES_OWNER} libs/common/ /app/libs/common/
COPY --chown=${APP_FILES_OWNER} services/gateway/ /app/services/gateway/
USER 10001
ENV GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py", "http://127.0.0.1:8000/ready"]
CMD ["python", "-m", "gateway"]

FROM runtime AS router
ARG APP_FILES_OWNER=root
COPY --from=deps-router /opt/venv /opt/venv
COPY --from=protos --chown=${APP_FILES_OWNER} /src/libs/protos /app/libs/protos
COPY --chown=${APP_FILES_OWNER} config/ /app/config/
COPY --chown=${APP_FILES_OWNER} libs/common/ /app/libs/common/
COPY --chown=${APP_FILES_OWNER} services/router/ /app/services/router/
USER 10001
ENV ROUTER_LISTEN=0.0.0.0:50051
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py", "grpc://127.0.0.1:50051"]
CMD ["python", "-m", "router"]

FROM runtime AS workers
ARG APP_FILES_OWNER=root
COPY --from=deps-workers /opt/venv /opt/venv
COPY --from=protos --chown=${APP_FILES_OWNER} /src/libs/protos /app/libs/protos
COPY --chown=${APP_FILES_OWNER} libs/common/ /app/libs/common/
COPY --chown=${APP_FILES_OWNER} services/workers/ /app/services/workers/
USER 10001
ENV HEALTH_HOST=0.0.0.0 HEALTH_PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py", "http://127.0.0.1:8081/ready"]
CMD ["python", "-m", "workers"]

FROM runtime AS accounting
ARG APP_FILES_OWNER=root
COPY --from=deps-accounting /opt/venv /opt/venv
COPY --from=protos --chown=${APP_FILES_OWNER} /src/libs/protos /app/libs/protos
COPY --chown=${APP_FILES_OWNER} libs/common/ /app/libs/common/
COPY --chown=${APP_FILES_OWNER} services/accounting/ /app/services/accounting/
USER 10001
ENV HEALTH_HOST=0.0.0.0 HEALTH_PORT=8082
EXPOSE 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py", "http://127.0.0.1:8082/ready"]
CMD ["python", "-m", "accounting"]

# The schema migration: the accounting image, run from Alembic's directory, once to completion.
# Its own target (and image name) so Tilt's process-restart wrapper never wraps it.
FROM accounting AS migrate
WORKDIR /app/services/accounting
HEALTHCHECK NONE
CMD ["python", "-m", "alembic", "upgrade", "head"]
