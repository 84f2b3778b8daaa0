# syntax=docker/dockerfile:1
# The revtrace image: one image, every role (`revtrace collector | evaluator |
# dashboard | db migrate | up`, and `python -m sync_engine` for the demo).
# Build: docker build -t revtrace:0.1.0 .

# --- build: wheels for revtrace and its server dependencies -------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tracer ./tracer
COPY collector ./collector
COPY sla_rules ./sla_rules
COPY dashboard ./dashboard
COPY revtrace ./revtrace
COPY sync_engine ./sync_engine
RUN pip wheel --wheel-dir /wheels ".[server]"

# --- runtime -----------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "revtrace[server]" \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/revtrace --create-home revtrace
# Roles listen on every interface inside the container; publish ports deliberately.
ENV REVTRACE_DATA_DIR=/var/lib/revtrace \
    REVTRACE_HTTP_HOST=0.0.0.0 \
    REVTRACE_DASHBOARD_HOST=0.0.0.0
USER revtrace
WORKDIR /var/lib/revtrace
VOLUME ["/var/lib/revtrace"]
# 4318 OTLP/HTTP (+ /healthz, /readyz, /metrics), 4317 OTLP/gRPC, 8501 dashboard
EXPOSE 4318 4317 8501
ENTRYPOINT ["revtrace"]
CMD ["up"]
