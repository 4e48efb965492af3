# One image for every part of the service: the API, the Celery workers, Flower and the migrations.
# docker-compose.yml picks the start command of each (they are the lists in epochal/commands.py).
#
#   docker build -t epochal:cpu .                                        # CPU TensorFlow
#   docker build -t epochal:gpu --build-arg TENSORFLOW_EXTRA=and-cuda .  # GPU TensorFlow
#
# TENSORFLOW_EXTRA: the pip extra of TensorFlow to install. Empty (the default) installs plain
# `tensorflow`, which trains on the CPU. `and-cuda` installs `tensorflow[and-cuda]` at the version
# pinned in requirements/base.txt, which brings the CUDA and cuDNN libraries as wheels; the host
# then only needs the NVIDIA driver and the NVIDIA container toolkit.

# --- build stage: a virtual environment with the pinned requirements -----------------------------
FROM python:3.11-slim AS build
ARG TENSORFLOW_EXTRA=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements/ /tmp/requirements/
WORKDIR /tmp
RUN set -eu; \
    extra=""; \
    if [ -n "$TENSORFLOW_EXTRA" ]; then \
        extra="$(sed -n "s/^tensorflow==/tensorflow[$TENSORFLOW_EXTRA]==/p" requirements/base.txt)"; \
        if [ -z "$extra" ]; then echo "requirements/base.txt has no tensorflow== pin" >&2; exit 1; fi; \
    fi; \
    /opt/venv/bin/pip install -r requirements/base.txt -c requirements/constraints.txt ${extra:+"$extra"}

# --- runtime stage: the environment, the service code and a non-root user ------------------------
FROM python:3.11-slim AS runtime
# The service's version (its git commit: `--build-arg EPOCHAL_VERSION=$(git rev-parse HEAD)`), which model cards
# record for every training; the image has no .git to read it from. Unset, the package's release is recorded.
ARG EPOCHAL_VERSION=""
ENV EPOCHAL_VERSION=$EPOCHAL_VERSION \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    EPOCHAL_DATA_DIR=/data
RUN groupadd --system --gid 10001 epochal \
    && useradd --system --uid 10001 --gid epochal --create-home --home-dir /home/epochal epochal \
    && mkdir -p /data \
    && chown epochal:epochal /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config.py alembic.ini ./
COPY epochal/ epochal/
COPY training/ training/
COPY models/ models/
COPY infra/ infra/
COPY domain/ domain/
COPY upkeep/ upkeep/
COPY worker/ worker/
COPY api/ api/
COPY migrations/ migrations/
RUN python -m compileall -q /app
# The numeric id lets an orchestrator verify runAsNonRoot.
USER 10001:10001
# /data is where the dataset loaders look first (EPOCHAL_DATA_DIR); docker-compose.yml mounts a
# named volume there. The state folder (EPOCHAL_STATE_DIR) is only used by the embedded defaults.
EXPOSE 8000 5555
# The API, as epochal.commands.api_argv("0.0.0.0", 8000); compose gives each service its command.
CMD ["python", "-m", "epochal.api_server", "--host", "0.0.0.0", "--port", "8000"]
