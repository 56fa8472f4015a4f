# syntax=docker/dockerfile:1
# The pagecache renderer. Build: docker build -t pagecache .
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.py pyproject.toml README.rst ./
COPY renderer renderer
COPY healthcheck healthcheck
COPY devstack devstack
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home pagecache
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV ADDRESS=0.0.0.0 PORT=8888 PROCESSES=0
EXPOSE 8888
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8888/healthcheck/live', timeout=2)"]
ENTRYPOINT ["pagecache-renderer"]
