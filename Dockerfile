# The nipype-brainrecon BIDS App image.  See docs/docker.md.
#
#   docker build -t nipype-brainrecon:$V --build-arg VERSION=$V .
#       (V: the package version, `python3 -c "exec(open('nipype_brainrecon/_version.py').read()); print(__version__)"`)
#   docker run --rm -u $(id -u):$(id -g) -v BIDS:/data:ro -v OUT:/out nipype-brainrecon:$V /data /out participant
#
# Build arguments:
#   BASE_IMAGE       a Debian/Ubuntu image; python3 (>= 3.10) + venv are installed with apt when absent
#                    (CUDA flavour: nvidia/cuda:12.8.1-runtime-ubuntu24.04 with a CUDA TORCH_INDEX)
#   TORCH_VERSION    torch release; empty (default): tools/constraints-docker.txt's pin, the one CI tests
#                    (the package itself asks only for torch>=2.1); another value fails the build
#   TORCH_INDEX      pip index serving torch (CPU wheels by default; .../whl/cu128 for CUDA)
#   WITH_VALIDATOR   1: include bids-validator-deno (~120 MB) so inputs are validated as usual
#   VERSION          the package version, checked against the installed package (labels, --version)
#   IMAGE_NAME       recorded with VERSION in the outputs' GeneratedBy.Container.Tag
#   BUILD_DATE, VCS_REF  optional label values
# Every Python package is pinned by tools/constraints-docker.txt (PIP_CONSTRAINT in the build stage).
# The image holds git (apt), DataLad and git-annex (pip, the package's [datalad] extra) for --datalad.
# A wheels/ folder in the build context is used for torch (and any other wheel) before the index;
# a certs/ca-certificates.crt there is used by pip during the build only (TLS-intercepting proxies).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- python3 with venv, from the base or from apt ----
FROM ${BASE_IMAGE} AS base
RUN if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then \
        export DEBIAN_FRONTEND=noninteractive \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -c "import sys; assert sys.version_info >= (3, 10), sys.version"

# ---- the virtual environment, built apart so wheels and build files stay out of the image ----
FROM base AS build
ARG TORCH_VERSION=
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG WITH_VALIDATOR=1
ARG VERSION=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
WORKDIR /src
# Every pip call below (and the build backend pip installs for /src) obeys the pins.
ENV PIP_CONSTRAINT=/src/tools/constraints-docker.txt
# torch first and pinned (PyPI's default build is a multi-GB CUDA one), then the package.
RUN set -eu; \
    if [ -z "$VERSION" ]; then \
        echo "pass --build-arg VERSION=<package version> (see nipype_brainrecon/_version.py)" >&2; \
        exit 1; \
    fi; \
    pinned=$(sed -n 's/^torch==//p' "$PIP_CONSTRAINT"); \
    TORCH_VERSION=${TORCH_VERSION:-$pinned}; \
    if [ "$TORCH_VERSION" != "$pinned" ]; then \
        echo "TORCH_VERSION=$TORCH_VERSION differs from torch==$pinned in" \
             "tools/constraints-docker.txt: leave TORCH_VERSION out or change both" >&2; \
        exit 1; \
    fi; \
    if [ -f certs/ca-certificates.crt ]; then export PIP_CERT=/src/certs/ca-certificates.crt; fi; \
    links=""; \
    if ls wheels/*.whl >/dev/null 2>&1; then links="--find-links /src/wheels"; fi; \
    python3 -m venv /opt/brainrecon; \
    pip=/opt/brainrecon/bin/pip; \
    $pip install -q --upgrade pip; \
    if ls wheels/torch-"$TORCH_VERSION"*.whl >/dev/null 2>&1; then \
        $pip install -q wheels/torch-"$TORCH_VERSION"*.whl; \
    else \
        $pip install -q --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple \
            "torch==$TORCH_VERSION"; \
    fi; \
    extra=""; \
    if [ "$WITH_VALIDATOR" = 1 ]; then extra="bids-validator-deno>=2.0"; fi; \
    $pip install -q $links "/src[datalad]" $extra "torch==$TORCH_VERSION"; \
    $pip check; \
    got=$(/opt/brainrecon/bin/brainrecon --version | awk '{print $2}'); \
    if [ "$VERSION" != "$got" ]; then \
        echo "VERSION build argument ($VERSION) differs from the package version ($got):" \
             "pass --build-arg VERSION=$got" >&2; \
        exit 1; \
    fi; \
    # the C++ test binaries of torch (~130 MB) are never run
    site=$(/opt/brainrecon/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))"); \
    rm -rf "$site"/torch/test "$site"/torch/bin/test_*

# ---- the runtime image ----
FROM base
ARG VERSION=
ARG IMAGE_NAME=nipype-brainrecon
ARG BUILD_DATE=
ARG VCS_REF=
# git for DataLad (git-annex comes with the package's [datalad] extra, in the virtual environment).
# The system git configuration gives commits made by --datalad an identity and trusts mounted
# datasets owned by another uid; override the identity with -e GIT_AUTHOR_NAME=... (see docs/docker.md).
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && git config --system user.name "nipype-brainrecon container" \
    && git config --system user.email "brainrecon@container.invalid" \
    && git config --system safe.directory "*" \
    && git config --system init.defaultBranch main
COPY --from=build /opt/brainrecon /opt/brainrecon

# Threads: one per BLAS/OpenMP pool by default; the heavy nodes raise torch's and BLAS's to
# --omp-nthreads themselves, so parallel nodes do not oversubscribe the CPUs (override with -e).
# Any -u uid:gid works: HOME and every cache live in a world-writable folder; models come from
# mounted folders and the hub is not reached unless HF_HUB_OFFLINE=0 is passed.
ENV PATH=/opt/brainrecon/bin:$PATH \
    HOME=/home/brainrecon \
    XDG_CACHE_HOME=/home/brainrecon/.cache \
    MPLCONFIGDIR=/home/brainrecon/.config/matplotlib \
    HF_HOME=/home/brainrecon/.cache/huggingface \
    TORCH_HOME=/home/brainrecon/.cache/torch \
    NIPYPE_NO_ET=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1 \
    LANG=C.UTF-8 \
    BRAINRECON_CONTAINER_IMAGE=${IMAGE_NAME}:${VERSION} \
    BRAINRECON_CONTAINER_TYPE=docker

# Warm matplotlib's font cache once, then open HOME to every user.
RUN mkdir -p "$XDG_CACHE_HOME" "$MPLCONFIGDIR" /home/brainrecon/.nipype /models /work \
    && /opt/brainrecon/bin/python -c "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot" \
    && chmod -R a+rwX /home/brainrecon /work \
    && brainrecon --version \
    && datalad --version && git annex version --raw

LABEL org.label-schema.schema-version="1.0" \
      org.label-schema.name="nipype-brainrecon" \
      org.label-schema.description="BIDS App: reconstruct seen images from fMRI with latent diffusion (Takagi & Nishimoto 2023)" \
      org.label-schema.version="${VERSION}" \
      org.label-schema.url="https://github.com/nipype-brainrecon/nipype-brainrecon" \
      org.label-schema.vcs-url="https://github.com/nipype-brainrecon/nipype-brainrecon" \
      org.label-schema.vcs-ref="${VCS_REF}" \
      org.label-schema.build-date="${BUILD_DATE}" \
      org.label-schema.docker.cmd="docker run --rm -u \$(id -u):\$(id -g) -v BIDS:/data:ro -v OUT:/out ${IMAGE_NAME}:${VERSION} /data /out participant" \
      org.opencontainers.image.title="nipype-brainrecon" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/nipype-brainrecon/nipype-brainrecon" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /work
ENTRYPOINT ["brainrecon"]
CMD ["--help"]
