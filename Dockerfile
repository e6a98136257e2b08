# syntax=docker/dockerfile:1
# The project in one image: BVLC Caffe built by the top-level CMakeLists.txt
# (the pinned source, caffe_build/patches and the build flags scripts/install.sh
# uses, plus CUDA), pycaffe with the Python layer, and the project's .venv.
#
#   docker build -t fer-sparse .                                  # CUDA + cuDNN
#   docker build -t fer-sparse:cpu --build-arg DEVICE=cpu .       # CPU only
#   docker run --gpus all -v DATA:/data -v RUNS:/runs fer-sparse caffe train -solver prototxt/...
#
# Build arguments, mounts, offline builds and what has been built where:
# docs/docker.md. scripts/docker_check.sh builds and runs the CPU image in CI.

# gpu: NVIDIA's CUDA 12.8 + cuDNN 9 images (Ubuntu 22.04); cpu: Debian 12,
# the platform the project is tested on.
ARG DEVICE=gpu
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG CPU_IMAGE=debian:12-slim
ARG SOURCE_IMAGE=debian:12-slim

# --- the pinned Caffe source and the wheelhouse -------------------------------
# Fetched on Debian, where scripts/fetch_caffe_source.sh is at home (Debian's
# own keyring and mirror). A tarball already in caffe_build/source/ (same
# name, checked against the same sha256) is used as it is; wheels in
# caffe_build/wheels/ make pip offline in the final stage. Both only pass
# through this stage, so neither ends up in the image.
FROM ${SOURCE_IMAGE} AS source
COPY scripts/fetch_caffe_source.sh /src/scripts/fetch_caffe_source.sh
COPY caffe_build/ /src/caffe_build/
RUN /src/scripts/fetch_caffe_source.sh /src/caffe_build/source > /src/tarball-path \
    && mkdir -p /src/caffe_build/wheels

# --- the project's files, without the build inputs above ----------------------
FROM ${SOURCE_IMAGE} AS project
COPY . /opt/fer-sparse
RUN rm -rf /opt/fer-sparse/caffe_build/source /opt/fer-sparse/caffe_build/wheels

# --- the base images each DEVICE builds and runs on ---------------------------
# Each gets a label of its own: a stage that is only a FROM is the base image
# itself, and podman/buildah 4.3 (Debian 12) with --layers=false then deletes
# that image once per such stage at the end of the build and fails on the
# second (CPU_IMAGE is the base of two).
FROM ${CUDA_DEVEL_IMAGE} AS build-base-gpu
LABEL org.fer-sparse.stage=build-base-gpu
FROM ${CPU_IMAGE} AS build-base-cpu
LABEL org.fer-sparse.stage=build-base-cpu
FROM ${CUDA_RUNTIME_IMAGE} AS runtime-base-gpu
LABEL org.fer-sparse.stage=runtime-base-gpu
FROM ${CPU_IMAGE} AS runtime-base-cpu
LABEL org.fer-sparse.stage=runtime-base-cpu

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
# CMakeLists.txt reads caffe_build/ (patches, ...) relative to itself.
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
# The non-root account `fer` (docker run --user fer); match these to your own
# ids to have its files in runs/ owned by you.
ARG FER_UID=1000
ARG FER_GID=1000
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /opt/fer-sparse
COPY --from=caffe /opt/caffe /opt/caffe
COPY --from=project /opt/fer-sparse /opt/fer-sparse
# install.sh installs caffe_build/debian-packages.txt, makes .venv and the
# caffe wrapper; FER_CAFFE_PREFIX makes it use the Caffe built above. With
# wheels in the build context pip installs from them alone (no index, so no
# certificate or network needed); without, from the package index.
RUN --mount=type=bind,from=source,source=/src/caffe_build/wheels,target=/tmp/wheels \
    if [ -n "$(find /tmp/wheels -name '*.whl' -print -quit)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels; fi \
    && FER_CAFFE_PREFIX=/opt/caffe bash scripts/install.sh \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip
# The repo's data/ and runs/ are the mounts, so the commands of README.md and
# the committed prototxt paths (data/prepared/..., runs/...) work unchanged.
RUN ln -s /data /opt/fer-sparse/data \
    && ln -s /runs /opt/fer-sparse/runs \
    && groupadd --gid "$FER_GID" fer \
    && useradd --uid "$FER_UID" --gid "$FER_GID" --create-home --shell /bin/bash fer
# FER_CAFFE_PREFIX: scripts/main.sh and scripts/test.sh (which run install.sh)
# keep using the Caffe above. Any --user may run the image: nothing is
# written below /opt/fer-sparse, matplotlib's cache goes to /tmp.
ENV PATH=/opt/fer-sparse/.venv/bin:$PATH \
    VIRTUAL_ENV=/opt/fer-sparse/.venv \
    FER_CAFFE_PREFIX=/opt/caffe \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# Says which of /data and /runs is missing instead of letting a run fail
# inside Caffe.
ENTRYPOINT ["/opt/fer-sparse/scripts/docker_entrypoint.sh"]
CMD ["caffe", "--version"]
