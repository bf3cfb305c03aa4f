# One image for every newsflow service (compose.yaml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The source tree is the code that runs (data files included); pip supplies the dependencies
    # and the `newsflow` command.
    PYTHONPATH=/app \
    NEWSFLOW_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY newsflow ./newsflow
COPY tasks ./tasks
COPY workers ./workers
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin newsflow \
    && mkdir -p /data/index \
    && chown -R newsflow /data

# Celery refuses nothing as root but warns; a worker parsing hostile HTML has no need for root.
USER newsflow
VOLUME ["/data"]
EXPOSE 5555 8080 9108
CMD ["newsflow", "--help"]
