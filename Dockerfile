# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target varnish -t pagecache-varnish .   (Varnish 7.1 + xkey and var + varnish/default.vcl)
#   docker build -t pagecache .                            (the renderer; the default, last stage)

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY setup.py pyproject.toml README.rst ./
COPY renderer renderer
COPY healthcheck healthcheck
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM debian:bookworm-slim AS varnish
RUN apt-get update \
    && apt-get install -y --no-install-recommends varnish=7.1.1-2+deb12u1 varnish-modules=0.20.0-2 \
    && rm -rf /var/lib/apt/lists/*
COPY varnish/default.vcl /etc/varnish/default.vcl
# The deployment mounts its own directory over /etc/varnish/site (deploy/varnish, the k8s ConfigMap).
COPY varnish/backends.vcl /etc/varnish/site/backends.vcl
RUN useradd --system --uid 10002 --no-create-home varnishd \
    && mkdir -p /var/lib/varnish && chown 10002 /var/lib/varnish
# Unprivileged from the start, so no jail is needed to drop privileges (-j none).
USER 10002
# 6081: readers (pages only). 6082: renderers' purges and bans (never published to the outside).
EXPOSE 6081 6082
ENTRYPOINT ["varnishd", "-F", "-j", "none", "-n", "/var/lib/varnish", "-a", "public=:6081", "-a", "admin=:6082", "-f", "/etc/varnish/default.vcl", "-p", "vcl_path=/etc/varnish:/etc/varnish/site"]
# The cache's size is the deployment's to set (the manifest's args), sized to its memory limit.
CMD ["-s", "malloc,256m"]

FROM python:3.11-slim-bookworm AS renderer
RUN useradd --system --uid 10001 --no-create-home pagecache
# Dependencies exactly as locked, each checked against its hash (requirements.lock, made by
# uv pip compile; the README has the command), then the service itself without resolving again.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER 10001
ENV ADDRESS=0.0.0.0 PORT=8888 PROCESSES=0
EXPOSE 8888
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/healthcheck/live', timeout=2)"]
# SIGTERM: stop accepting, finish requests in flight, close pools.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pagecache-renderer"]
