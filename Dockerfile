# One image for every memtail service (coordinator, workers, estimator, beat, migrate).
#   docker build --build-arg TORCH_VARIANT=cpu -t memtail .   # CPU-only hosts
ARG TORCH_VARIANT=cuda

# CUDA: the official PyTorch runtime image (Python 3.11, CUDA and cuDNN included).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime AS base-cuda

FROM python:3.11-slim AS base-cpu
RUN pip install --no-cache-dir torch torchvision --index-url https://download.pytorch.org/whl/cpu

FROM base-${TORCH_VARIANT}
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY memtail ./memtail
COPY services ./services
COPY migrations ./migrations
# torch is already in the base image; pip keeps it (the project does not pin a build).
RUN pip install -e '.[monitoring]' \
    && useradd --create-home --uid 10001 memtail \
    && mkdir -p /data && chown memtail /data
USER memtail
# Exec form everywhere (see docker-compose.yml) so SIGTERM reaches Celery directly.
CMD ["memtail", "--help"]
