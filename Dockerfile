# syntax=docker/dockerfile:1
# OrcaRouter gateway image.
#
#   docker build -t orcarouter:local .
#   docker run --rm -p 8080:8080 -e OPENAI_API_KEY=sk-... orcarouter:local
#
# Stage 1 installs the locked dependencies and the project into /app/.venv with uv; stage 2
# copies only that virtual environment onto a clean python:3.11-slim and runs it as a non-root
# user. Several replicas sharing PostgreSQL and Redis: see docs/deployment.md and deploy/.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

# The same uv the Makefile pins.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# Build the virtual environment at the path it will run from (its scripts name it), with the
# image's own interpreter, compiled to bytecode, copied rather than linked from uv's cache.
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src

# Dependencies first, from the lock file alone, so a source change does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed as a regular (non-editable) package, so the runtime stage
# needs the virtual environment and nothing from /src.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable \
    && /app/.venv/bin/orcarouter --help >/dev/null


FROM ${PYTHON_IMAGE} AS runtime

# A fixed uid/gid, so volume permissions and Kubernetes' runAsUser can name it.
RUN groupadd --system --gid 10001 orca \
    && useradd --system --uid 10001 --gid orca --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin orca \
    && mkdir -p /data \
    && chown orca:orca /data

# Owned by root and read-only for the gateway's user.
COPY --from=build /app/.venv /app/.venv

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORCAROUTER_HOST=0.0.0.0 \
    ORCAROUTER_PORT=8080 \
    ORCAROUTER_DATA_DIR=/data

# The data dir: the SQLite database when no ORCAROUTER_DATABASE_URL is set, and the gateway's
# local files (such as its usage journal) in every case.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# Liveness only (the process answers); orchestrators that route traffic should also check
# /readyz (see deploy/). Python instead of curl, which the slim image lacks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ORCAROUTER_PORT', '8080') + '/healthz', timeout=4)"]

# uvicorn drains on SIGTERM: open streams finish and queued usage records are written.
STOPSIGNAL SIGTERM
CMD ["orcarouter", "serve"]
