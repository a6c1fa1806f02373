# One image for the code server, the webserver and the daemon (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    STUDYLLM_HOME=/opt/studyllm

WORKDIR /opt/studyllm/src
COPY pyproject.toml README.md ./
COPY studyllm_core ./studyllm_core
COPY studyllm_pipeline ./studyllm_pipeline
# The CPU build of torch keeps the image small; the `local` extra then uses it. For the Kubernetes
# deployment (deploy/multi-node): --build-arg EXTRAS=local,deploy --build-arg PACKAGES=s3fs (or gcsfs).
ARG EXTRAS=local
ARG PACKAGES=
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install --no-cache-dir ".[${EXTRAS}]" ${PACKAGES}

RUN mkdir -p "$DAGSTER_HOME" "$STUDYLLM_HOME/artifacts"
COPY studyllm_pipeline/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
COPY docker/workspace.yaml "$DAGSTER_HOME/workspace.yaml"
WORKDIR /opt/dagster/home
