# lg-deploy: API and workers (`serve`), or workers only (`worker`), against LG_DEPLOY_DATABASE_URL.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LG_DEPLOY_HOST=0.0.0.0 \
    LG_DEPLOY_PORT=8000 \
    LG_DEPLOY_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lg_deploy ./lg_deploy
COPY sql ./sql
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin lgdeploy

USER lgdeploy
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["lg-deploy", "serve"]
