# The one image pattern of every component: infrastructure/images.toml holds the build
# arguments of each image, `make build_all` passes them (built from the repository root):
#   python3 infrastructure/images.py build api --dry-run
# Pinned uv and Python; dependencies from uv.lock in their own layer; a slim runtime with
# only the virtual environment (the member and what it depends on) and a non-root user.
# uv in Docker: https://docs.astral.sh/uv/guides/integration/docker/
# No `# syntax=` line: BuildKit's built-in Dockerfile frontend reads the cache and secret
# mounts below, and a frontend image cannot be pulled where no registry is reachable.

# The bases: the official pinned images by default; `make build_all BASES=debian` passes
# equivalents built from Debian's archive and PyPI (`make base_images`) instead.
# checkov:skip=CKV_DOCKER_7: checkov reads `FROM ${ARG}` as untagged; the defaults are pinned (test_dockerfiles resolves them)
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE}
# The workspace member to install, e.g. mlsys-api; FILES: paths copied into /app with it.
ARG PACKAGE
# Its optional dependency groups to install with it, e.g. "classifier" (space-separated).
ARG EXTRAS=""
ARG FILES=""
# The process the container runs unless Kubernetes or compose name another.
ARG COMMAND
ARG APT_PACKAGES=""
# Directories the process writes that a volume is mounted on: made here, owned by its user,
# so that a new named volume (compose) starts with that owner instead of root.
ARG WRITABLE=""
# Python's bytecode: empty, compiled for the whole environment; else only for what importing
# these modules imports, as the process's first start would on a writable disk (the API's
# environment has 160 MB of bytecode, mostly of modules it never imports).
ARG BYTECODE=""
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
# The environment is made where it runs, from mounts that leave nothing behind: uv itself,
# the sources, uv's downloads (a cache shared by every image's build:
# https://docs.docker.com/build/cache/optimize/) and, where PyPI is reached through a TLS
# proxy, its CA (`images.py build` passes SSL_CERT_FILE's file as a secret when that is
# set). So the image holds one copy of the environment and nothing of the build.
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PYTHON=python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock alone (with --frozen no member's pyproject.toml is
# read): this layer is rebuilt only when the lock changes. The packages' own test suites,
# which no process imports, go in the layer that made them (pandas' alone is 46 MB).
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv,id=mlsys-uv \
    --mount=type=secret,id=ca_bundle \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    if [ -f /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi; \
    bytecode=--compile-bytecode; if [ -n "$BYTECODE" ]; then bytecode=--no-compile-bytecode; fi; \
    set --; for extra in $EXTRAS; do set -- "$@" --extra "$extra"; done; \
    test -n "$PACKAGE" \
    && uv sync --frozen --no-dev --no-install-workspace --package "$PACKAGE" "$@" "$bytecode" \
    && find /app/.venv/lib/python3*/site-packages -mindepth 2 -type d -name tests -prune \
      -exec rm -rf {} +
# Then the member and the workspace packages it depends on, and its files.
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv,id=mlsys-uv \
    --mount=type=secret,id=ca_bundle \
    --mount=type=bind,target=/src,readwrite \
    if [ -f /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi; \
    bytecode=--compile-bytecode; if [ -n "$BYTECODE" ]; then bytecode=--no-compile-bytecode; fi; \
    set --; for extra in $EXTRAS; do set -- "$@" --extra "$extra"; done; \
    uv sync --frozen --no-dev --no-editable --package "$PACKAGE" "$@" "$bytecode" \
    && for path in $FILES; do cp -r --parents "$path" /app/; done \
    && if [ -n "$BYTECODE" ]; then MLFLOW_DISABLE_TELEMETRY=true /app/.venv/bin/python -P -c \
      'import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]' $BYTECODE; fi
# No git in the images: MLflow's run tags would try it and print a page of warnings per run.
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true \
    GIT_PYTHON_REFRESH=quiet
WORKDIR /app
USER 10001
CMD ["start"]
