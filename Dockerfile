# syntax=docker/dockerfile:1
# The one image pattern of every component: infrastructure/images.toml holds the build
# arguments of each image, `make build_all` passes them (built from the repository root):
#   python3 infrastructure/images.py build api --dry-run
# Pinned uv and Python; dependencies from uv.lock in their own layer; a slim runtime with
# only the virtual environment (the member and what it depends on) and a non-root user.
# uv in Docker: https://docs.astral.sh/uv/guides/integration/docker/
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11.11-slim-bookworm AS build
# The workspace member to install, e.g. mlsys-api; FILES: paths copied into /app with it.
ARG PACKAGE
ARG FILES=""
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# With --frozen, the lock alone says what to install: no member's pyproject.toml is needed
# for this layer, so it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN test -n "$PACKAGE" && uv sync --frozen --no-dev --no-install-workspace --package "$PACKAGE"
COPY . /src
WORKDIR /src
RUN UV_PROJECT_ENVIRONMENT=/app/.venv uv sync --frozen --no-dev --no-editable --package "$PACKAGE" \
    && mkdir /files && for path in $FILES; do cp -r --parents "$path" /files/; done

FROM python:3.11.11-slim-bookworm
# The process the container runs unless Kubernetes or compose name another.
ARG COMMAND
ARG APT_PACKAGES=""
# Directories the process writes that a volume is mounted on: made here, owned by its user,
# so that a new named volume (compose) starts with that owner instead of root.
ARG WRITABLE=""
# Debian's security updates are wanted, so the packages are unpinned.
# hadolint ignore=DL3008
RUN if [ -n "$APT_PACKAGES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $APT_PACKAGES \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && test -n "$COMMAND" && printf '#!/bin/sh\nexec %s\n' "$COMMAND" > /usr/local/bin/start \
    && chmod 755 /usr/local/bin/start \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin mlsys \
    && for path in $WRITABLE; do mkdir -p "$path" && chown 10001:10001 "$path"; done
COPY --from=build /app/.venv /app/.venv
COPY --from=build /files/ /app/
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /app
USER 10001
CMD ["start"]
