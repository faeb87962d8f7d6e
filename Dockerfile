# One image for the API and the worker, on the official TensorFlow GPU image.
# GPU: the worker sees the GPU through the NVIDIA container runtime (see docker-compose.yml).
# CPU only: build with --build-arg BASE=tensorflow/tensorflow:2.21.0 (same code, no CUDA).
ARG BASE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PRUNEKIT_HOME=/data \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /srv/prunekit
COPY pyproject.toml README.md ./
COPY app ./app
COPY core ./core
COPY worker ./worker
COPY prunekit ./prunekit
# The base image already ships TensorFlow 2.21; pip keeps it and adds the rest.
RUN python -m pip install --upgrade pip && python -m pip install .

RUN useradd --create-home --uid 1000 prunekit && mkdir -p /data && chown prunekit /data
USER prunekit
VOLUME ["/data"]
EXPOSE 8000

# The API by default; the worker overrides the command (docker-compose.yml).
CMD ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8000"]
