"""Keep secrets out of error reports and log lines."""

import logging
import re

from django.views.debug import SafeExceptionReporterFilter
from gunicorn.glogging import Logger


class SecretsReporterFilter(SafeExceptionReporterFilter):
    """Also hide POST fields named like secrets: Django hides them only in views marked sensitive."""

    hidden_settings = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|DATABASE_URL|REDIS_URL|BROKER", flags=re.I)
    hidden_post = re.compile(r"api_key|secret|token|password|webhook_url", flags=re.I)

    def get_post_parameters(self, request):
        params = super().get_post_parameters(request)
        if request is None or not params:
            return params
        cleansed = params.copy()
        for name in cleansed:
            if self.hidden_post.search(name):
                cleansed[name] = self.cleansed_substitute
        return cleansed


# Wavix's webhook URLs carry the account's secret as a path segment (Wavix sends no signature): every line that
# logs a request path must go through this.
_WEBHOOK_SECRET = re.compile(r"(/webhooks/wavix/)[^/?\s\"]+")


def mask_webhook_secret(text: str) -> str:
    """The text with the secret of any webhook URL in it replaced by ***."""
    return _WEBHOOK_SECRET.sub(r"\1***", text)


class WebhookSecretFilter(logging.Filter):
    """Mask webhook secrets in a record's message: django.request logs the path of every 4xx and 5xx answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(mask_webhook_secret(a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str):
            record.msg = mask_webhook_secret(record.msg)
        return True


class GunicornLogger(Logger):
    """gunicorn's logger, minus webhook secrets in its access log (`--logger-class portal.logging.GunicornLogger`)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: mask_webhook_secret(v) if isinstance(v, str) else v for k, v in atoms.items()}
