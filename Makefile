# mlsys: thin wrappers around uv and the components' CLIs. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
PY := $(UV) run --frozen python
SERVE ?= 1
BI_PORT ?= 8501
MLFLOW_PORT ?= 5000
API_PORT ?= 8000
AB_PORT ?= 8080
CLASSIFIER_PORT ?= 8100
PORTAL_PORT ?= 8502
# A seeded user (password: password) the demo makes a moderator.
MODERATOR ?= yunus_dog_love
# e.g. "--components 16 --limit 300": a quicker, weaker classifier.
MODERATION_ARGS ?=
# e.g. "--epochs 2 --limit 200": a quicker, weaker image embedding.
IMAGE_INDEX_ARGS ?=
POSTS ?= 10000
SEARCHES ?= 50000  # logged search sessions: what the ranker learns from
REAL_SALES := dataset/beverage/item_sale_records_202107_202112.csv
MLSYS_HOME ?= .mlsys
HOME_DIR = $(abspath $(MLSYS_HOME))
# What Make starts runs on this machine with the public development defaults (no secrets);
# unset, every component assumes production and refuses to start without its secrets.
MLSYS_ENVIRONMENT ?= development

export MLSYS_HOME
export MLSYS_ENVIRONMENT
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode compiled once at install (13 s here): a machine with PYTHONDONTWRITEBYTECODE set
# would otherwise compile every module a process imports, each time (the ML stack's
# imports: 15 s instead of 6.6 s per process; collecting the tests: 22 s instead of 11 s).
.venv/.synced: $(UV) uv.lock pyproject.toml */pyproject.toml
	$(UV) sync --frozen --all-packages --all-extras --compile-bytecode
	touch $@

.PHONY: install
install: .venv/.synced ## install uv and every workspace member into .venv

.PHONY: demo
demo: install ## forecasting (register, backtest, then the forecasting CronWorkflow through the local runner: validate, train, gate, predict; then the forecast-drift CronWorkflow: the drift check, retraining if it calls for it) and AIAnimals (generate, load, index, train the search ranker, learn similar words, train the no-animal classifier and the image embedding), then serve the BI, MLflow, the API and its web client, the A/B test proxy, the classifier, the detection and image-index consumers and the review portal (SERVE=0: stop after the jobs)
	$(PY) -m mlsys.data_registration register --master-dir dataset/beverage --sales $(REAL_SALES)
	$(PY) -m mlsys.ml backtest --from 2021-35 --to 2021-51 --output $(HOME_DIR)/backtest.json
	$(PY) -m mlsys.pipelines run infrastructure/argo/forecasting.yaml --runner process --show-logs --logs $(HOME_DIR)/pipelines/forecasting
	$(PY) -m mlsys.pipelines run infrastructure/argo/forecast-drift.yaml --runner process --show-logs --logs $(HOME_DIR)/pipelines/forecast-drift
	$(PY) -m mlsys.batch generate --output $(HOME_DIR)/aianimals --posts $(POSTS) --searches $(SEARCHES)
	$(PY) -m mlsys.batch initial-load --generated $(HOME_DIR)/aianimals
	$(PY) -m mlsys.batch search-index --idle-seconds 1
	$(PY) -m mlsys.search features
	$(PY) -m mlsys.search train-ranker --hidden-quality $(HOME_DIR)/aianimals/hidden_quality.csv --output $(HOME_DIR)/ranker.json
	$(PY) -m mlsys.search similar-words --synonym-queries $(HOME_DIR)/aianimals/synonym_queries.json --output $(HOME_DIR)/similar_words.json
	$(PY) -m mlsys.batch grant-role $(MODERATOR) moderator
	$(PY) -m mlsys.violation_detection train --output $(HOME_DIR)/moderation.json $(MODERATION_ARGS)
	$(PY) -m mlsys.search build-image-index --output $(HOME_DIR)/image_index.json $(IMAGE_INDEX_ARGS)
ifneq ($(SERVE),0)
	$(MAKE) --no-print-directory serve
endif

.PHONY: serve
serve: install ## serve what the last `make demo` made, without running its jobs again: the BI, MLflow, the API and its web client, the A/B test proxy, the classifier, the detection and image-index consumers and the review portal
	@test -f $(HOME_DIR)/aianimals.db || { echo "nothing to serve in $(HOME_DIR): run make demo first"; exit 1; }
	@echo "BI:     http://localhost:$(BI_PORT)"
	@echo "MLflow: http://localhost:$(MLFLOW_PORT)"
	@echo "API:    http://localhost:$(API_PORT)/v0/docs   (log in as dog_leigh / password; Ctrl-C stops all)"
	@echo "App:    http://localhost:$(API_PORT)/app/   (the web client; sign-ups' links are mailed into $(HOME_DIR)/mail)"
	@echo "A/B:    http://localhost:$(AB_PORT)  (the API behind the ranker-vs-likes experiment)"
	@echo "Portal: http://localhost:$(PORTAL_PORT)   (moderation: log in as $(MODERATOR) / password)"
	@echo "Classifier: http://localhost:$(CLASSIFIER_PORT)/docs   (the no-animal classifier; every post is judged)"
	@echo "Similar: POST /v0/animal/search/similar in the API's docs   (similar photos; new posts join the index)"
	trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	METRICS_PORT=9103 $(PY) -m mlsys.bi serve --port $(BI_PORT) & \
	$(PY) -m mlsys.api serve --port $(API_PORT) & \
	$(PY) -m mlsys.ab_test_proxy serve --config infrastructure/ab_test_proxy/experiment.yaml \
		--upstream http://127.0.0.1:$(API_PORT) --port $(AB_PORT) & \
	$(UV) run --frozen mlflow server --backend-store-uri sqlite:///$(HOME_DIR)/mlflow.db \
		--default-artifact-root $(HOME_DIR)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT) & \
	$(PY) -m mlsys.violation_detection serve --port $(CLASSIFIER_PORT) & \
	VIOLATION_DETECTION_URL=http://127.0.0.1:$(CLASSIFIER_PORT) METRICS_PORT=9101 \
		$(PY) -m mlsys.violation_detection consume & \
	METRICS_PORT=9104 $(PY) -m mlsys.violation_detection portal --port $(PORTAL_PORT) & \
	METRICS_PORT=9102 $(PY) -m mlsys.search image-index-consumer & \
	wait

.PHONY: monitoring
monitoring: ## Prometheus :9090 (the shipped configuration and alert rules, scraping what `make serve` runs) and the Pushgateway :9091 on localhost (Debian packages, installed if missing)
	bash infrastructure/scripts/monitoring.sh

.PHONY: services
services: ## make PostgreSQL :5432, Redis :6379 and RabbitMQ :5672 answer on localhost (installs the Debian packages if missing)
	bash infrastructure/scripts/services.sh

.PHONY: test test-fast
test: install ## run every test: unit, integration (`make services` first), e2e (Chromium), containers (`make engine standins build_all BASES=debian` first)
	$(UV) run --frozen pytest

test-fast: install ## unit tests only: no services, no browser, no containers, no model training at full size
	$(UV) run --frozen pytest -n auto -m "not integration and not e2e and not slow and not container"

.PHONY: properties
properties: install ## the schemathesis run at full size: 250 examples per route, over 2,000 requests on SQLite and on PostgreSQL (`make services` first)
	PROPERTY_EXAMPLES=250 $(UV) run --frozen pytest -s tests/api/test_openapi_properties.py

.PHONY: bench
bench: install ## registration throughput, pipeline cost at scale, search under load (wrk, open loop), soak, ranking, the classifier server, the similar-image index; JSON under .mlsys/bench/
	@command -v wrk >/dev/null || { echo "installing wrk (Debian package) for the load test"; apt-get install -y wrk >/dev/null; }
	$(UV) run --frozen python -m tests.bench

.PHONY: lint
lint: install ## ruff check, format check and the type checker (mypy)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

.PHONY: fmt
fmt: install ## ruff fix and format
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

# --- images: the root Dockerfile with each image's arguments from infrastructure/images.toml
IMAGES := $(shell $(PYTHON) infrastructure/images.py names)
REGISTRY ?= localhost:5000
# Images are tagged with the commit they are built from; what build_all built is recorded
# (infrastructure/images.built.env) and is what deploy_base, deploy_job and up name.
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
BUILT_RECORD ?= infrastructure/images.built.env
BUILT_TAG := $(shell sed -n 's/^TAG=//p' $(BUILT_RECORD) 2>/dev/null)
BUILT_REGISTRY := $(shell sed -n 's/^REGISTRY=//p' $(BUILT_RECORD) 2>/dev/null)
BUILD_TAG = $(or $(TAG),$(COMMIT))
DEPLOY_TAG = $(or $(TAG),$(BUILT_TAG))
# The registry built for, unless REGISTRY is given.
DEPLOY_REGISTRY = $(if $(filter file,$(origin REGISTRY)),$(or $(BUILT_REGISTRY),$(REGISTRY)),$(REGISTRY))
# The client: Debian's /usr/bin/docker builds with BuildKit without the buildx plugin.
DOCKER ?= $(firstword $(wildcard /usr/bin/docker) docker)
export DOCKER
# official: the Dockerfile's pinned python and uv images (pulled); debian: equivalents
# built here from Debian's archive and PyPI (`make base_images`), where nothing can be pulled.
BASES ?= official
IMAGES_PY = $(PYTHON) infrastructure/images.py
BUILD_IMAGE = $(IMAGES_PY) build $* --registry $(REGISTRY) --tag $(BUILD_TAG) --bases $(BASES) $(if $(filter 1,$(DRY_RUN)),--dry-run)

.PHONY: engine base_images standins build_all push_all
engine: ## a Docker engine with BuildKit and Compose v2 (installs Debian's docker.io and Compose v2 if missing, starts the daemon)
	bash infrastructure/scripts/engine.sh

base_images: ## the Dockerfile's bases built from Debian's archive and PyPI, for a machine that cannot pull (then: make build_all BASES=debian)
	bash infrastructure/scripts/base_images.sh

standins: base_images ## PostgreSQL, Redis, RabbitMQ, Prometheus and Pushgateway images built from Debian packages, standing in for the official ones where nothing can be pulled (the container tests, make up BASES=debian)
	@$(IMAGES_PY) standins $(if $(filter 1,$(DRY_RUN)),--dry-run)

build_all: $(if $(filter debian,$(BASES)),$(if $(filter 1,$(DRY_RUN)),,base_images)) $(addprefix build-,$(IMAGES)) ## build every image of infrastructure/images.toml, print their sizes, record the tag (REGISTRY, TAG: the commit; BASES=debian; DRY_RUN=1 prints the commands)
	@$(IMAGES_PY) record --registry $(REGISTRY) --tag $(BUILD_TAG) --output $(BUILT_RECORD) $(if $(filter 1,$(DRY_RUN)),--dry-run)
push_all: $(addprefix push-,$(IMAGES)) ## build and push every image to REGISTRY

build-%:
	@$(BUILD_IMAGE)

push-%:
	@$(BUILD_IMAGE) --push

.PHONY: argo dashboards
dashboards: install ## build the Grafana dashboards from infrastructure/monitoring/dashboards.py into infrastructure/manifests/monitoring/dashboards/
	$(UV) run --frozen python infrastructure/monitoring/dashboards.py

argo: install ## compile the Hera definitions in infrastructure/argo/ to their YAML (image placeholders: deploy_job sets REGISTRY and TAG)
	$(UV) run --frozen python infrastructure/argo/compile.py

# --- Kubernetes: DRY_RUN=1 prints every command and manifest, and needs no cluster ------
DEPLOY = DRY_RUN=$(DRY_RUN) RENDER_DIR=$(RENDER_DIR) REGISTRY=$(DEPLOY_REGISTRY) TAG=$(DEPLOY_TAG) bash infrastructure/scripts/deploy.sh

.PHONY: initialize_deployment deploy_base deploy_job vendor_argo port_forward moderator delete_namespaces
initialize_deployment: ## create the namespaces (data, mlflow, argo, beverage-sales-forecasting, search-engine, aianimals, monitoring)
	$(DEPLOY) initialize
deploy_base: secrets ## the namespaces, PostgreSQL, MLflow, Argo, the BI, Elasticsearch, the AIAnimals backend, initial loads, monitoring (Prometheus, Pushgateway, Grafana)
	$(DEPLOY) base
deploy_job: ## create the Argo CronWorkflows (weekly registration, forecasting DAG, search ranker, image index, classifier retraining)
	$(DEPLOY) job
vendor_argo: ## render Argo's install of release ARGO_VERSION from a checkout of argo-workflows at ARGO_SOURCE into manifests/argo (review the diff, commit)
	bash infrastructure/scripts/vendor_argo.sh $(ARGO_SOURCE) $(ARGO_VERSION)
port_forward: ## BI on :8501, MLflow on :5001, Argo on :2746, AIAnimals API on :8000, the review portal on :8502, Grafana on :3000
	DRY_RUN=$(DRY_RUN) bash infrastructure/scripts/port_forward.sh
moderator: ## HANDLE=name: make an AIAnimals user a moderator on the cluster (register them in the app first: seeded users' passwords are random)
	@test -n "$(HANDLE)" || { echo "HANDLE=<the user's handle name> is required" >&2; exit 2; }
	$(if $(filter 1,$(DRY_RUN)),@echo +) kubectl -n aianimals exec deployment/outbox-relay -- python -m mlsys.batch grant-role $(HANDLE) moderator
delete_namespaces: ## delete every namespace of the platform (and its data)
	$(DEPLOY) delete

# --- docker compose: the same stack on one host ------------------------------------------
# BASES=debian: the stand-ins of infrastructure/standins for what cannot be pulled, and no
# Elasticsearch (infrastructure/standins/compose.yaml; docker-compose.yaml is unchanged).
COMPOSE_FILES = -f docker-compose.yaml $(if $(filter debian,$(BASES)),-f infrastructure/standins/compose.yaml)
COMPOSE = $(if $(filter 1,$(DRY_RUN)),@echo docker compose,REGISTRY=$(REGISTRY) TAG=$(BUILD_TAG) $(DOCKER) compose) $(COMPOSE_FILES) --env-file env.secret

.PHONY: up down
up: secrets $(if $(filter debian,$(BASES)),standins) build_all ## build the images, then run the whole stack (both products) with docker compose (BASES=debian: where nothing can be pulled)
	$(COMPOSE) up --detach
	@echo "BI: http://localhost:8501  MLflow: http://localhost:5000  API: http://localhost:8000/v0/docs  Portal: http://localhost:8502"
down: ## stop the compose stack (volumes are kept; `docker compose down -v` drops them)
	$(COMPOSE) down

.PHONY: secrets
secrets: ## write random credentials (database, broker, search, token key) for Kubernetes and compose (git-ignored, kept if present)
	DRY_RUN=$(DRY_RUN) bash infrastructure/scripts/make_secrets.sh

.PHONY: clean
clean: ## remove the local state (MLSYS_HOME, default .mlsys) of the embedded profile
	rm -rf $(HOME_DIR)
