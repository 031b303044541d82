# nudge-sync as a container, e.g. for a scheduled in-place refresh next to the databases of
# docker-compose.yml:  docker compose run --rm nudge-sync run --store 'qdrant+http://qdrant:6333?collection=docs'
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY nudge_sync ./nudge_sync
COPY connectors ./connectors
RUN pip install --no-cache-dir '.[qdrant,chroma,parquet]' 'pymilvus>=2.6' \
    && useradd --create-home nudge
USER nudge
ENTRYPOINT ["nudge-sync"]
CMD ["--help"]
