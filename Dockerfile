FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORTAL_VAR_DIR=/var/lib/portal
WORKDIR /app
COPY pyproject.toml ./
COPY portal ./portal
COPY tenants ./tenants
COPY messaging ./messaging
COPY templates ./templates
COPY manage.py Procfile ./
RUN pip install --no-cache-dir . && useradd --system portal && mkdir -p /var/lib/portal && chown portal /var/lib/portal
USER portal
# Production storage (hashed names and a manifest); the placeholder secrets exist only for this build step.
RUN DEBUG=false SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=build-only ALLOWED_HOSTS=build EMAIL_HOST=build \
    python manage.py collectstatic --noinput --verbosity 0
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-", "--logger-class", "portal.logging.GunicornLogger"]
