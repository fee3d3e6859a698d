# Baton: one image for the web process (`baton serve`) and workers (`baton worker`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 baton

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY shell ./shell
COPY handlers ./handlers
COPY orchestrators ./orchestrators
COPY config ./config
RUN pip install .

USER baton
ENV BATON_HOST=0.0.0.0 BATON_PORT=8080 BATON_STATE_DIR=/home/baton/.baton
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["baton", "serve"]
