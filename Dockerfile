# syntax=docker/dockerfile:1
# The project in one image: BVLC Caffe built by the top-level CMakeLists.txt
# (the pinned source, caffe_build/patches and the build flags scripts/install.sh
# uses, plus CUDA), pycaffe with the Python layer, and the project's .venv.
#
#   docker build -t fer-sparse .                                  # CUDA + cuDNN
#   docker build -t fer-sparse:cpu --build-arg DEVICE=cpu .       # CPU only
#   docker run --gpus all -v DATA:/data -v RUNS:/runs fer-sparse caffe train -solver prototxt/...
#
# Build arguments, mounts and limits: docs/docker.md.

# gpu: CUDA 12.8 + cuDNN 9 on Ubuntu 22.04; cpu: plain Ubuntu 22.04.
ARG DEVICE=gpu
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG CPU_IMAGE=ubuntu:22.04
ARG SOURCE_IMAGE=debian:12-slim

# --- the pinned Caffe source ------------------------------------------------
# Fetched on Debian, where scripts/fetch_caffe_source.sh is at home (Debian's
# own keyring and mirror). A tarball already in caffe_build/source/ (same
# name, checked against the same sha256) is used as it is: offline builds.
FROM ${SOURCE_IMAGE} AS source
COPY scripts/fetch_caffe_source.sh /src/scripts/fetch_caffe_source.sh
COPY caffe_build/ /src/caffe_build/
RUN /src/scripts/fetch_caffe_source.sh /src/caffe_build/source > /src/tarball-path

# --- the base images each DEVICE builds and runs on ---------------------------
FROM ${CUDA_DEVEL_IMAGE} AS build-base-gpu
FROM ${CPU_IMAGE} AS build-base-cpu
FROM ${CUDA_RUNTIME_IMAGE} AS runtime-base-gpu
FROM ${CPU_IMAGE} AS runtime-base-cpu

# --- Caffe, through the project's CMake build ---------------------------------
# hadolint ignore=DL3006
FROM build-base-${DEVICE} AS caffe
ARG DEVICE
# cuDNN for the CUDA build (OFF builds Caffe's own convolution kernels).
ARG USE_CUDNN=ON
# Compute capabilities: Ampere (80, 86), Ada (89), Hopper (90); PTX for the
# last. `docker build` sees no GPU, so they are named, never detected.
ARG CUDA_ARCH="80 86 89 90"
ARG BUILD_JOBS=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
COPY caffe_build/debian-packages.txt /src/caffe_build/debian-packages.txt
RUN apt-get update \
    && grep -v -e '^\s*#' -e '^\s*$' /src/caffe_build/debian-packages.txt \
       | xargs apt-get install -y -q --no-install-recommends \
    && rm -rf /var/lib/apt/lists/*
COPY CMakeLists.txt /src/CMakeLists.txt
COPY caffe_build/ /src/caffe_build/
COPY --from=source /src/caffe_build/source/ /src/caffe_build/source/
RUN if [ "$DEVICE" = gpu ]; then use_cuda=ON; else use_cuda=OFF; fi \
    && cmake -S /src -B /build \
        -DCAFFE_SOURCE_TARBALL=/src/caffe_build/source/caffe_1.0.0+git20180821.99bd997.orig.tar.gz \
        -DCAFFE_INSTALL_PREFIX=/opt/caffe \
        -DCAFFE_PYTHON_EXECUTABLE=/usr/bin/python3 \
        -DCAFFE_USE_CUDA="$use_cuda" \
        -DCAFFE_USE_CUDNN="$USE_CUDNN" \
        -DCAFFE_CUDA_ARCH="$CUDA_ARCH" \
        -DCAFFE_BUILD_JOBS="$BUILD_JOBS" \
    && cmake --build /build \
    && date -u +%FT%TZ > /opt/caffe/.fer-build-complete \
    && rm -rf /build

# --- the image: Caffe + the project installed by scripts/install.sh -----------
# hadolint ignore=DL3006
FROM runtime-base-${DEVICE} AS final
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /opt/fer-sparse
COPY --from=caffe /opt/caffe /opt/caffe
COPY . /opt/fer-sparse
# install.sh installs caffe_build/debian-packages.txt, makes .venv and the
# caffe wrapper; FER_CAFFE_PREFIX makes it use the Caffe built above.
RUN FER_CAFFE_PREFIX=/opt/caffe bash scripts/install.sh \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip
# The repo's data/ and runs/ are the mounts, so the commands of README.md and
# the committed prototxt paths (data/prepared/..., runs/...) work unchanged.
RUN ln -s /data /opt/fer-sparse/data \
    && ln -s /runs /opt/fer-sparse/runs
ENV PATH=/opt/fer-sparse/.venv/bin:$PATH \
    VIRTUAL_ENV=/opt/fer-sparse/.venv \
    PYTHONUNBUFFERED=1
CMD ["caffe", "--version"]
