"""Keep secrets out of error reports and log lines."""

import logging
import re
from collections.abc import Mapping

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
    """Mask webhook secrets in a record: its message, its arguments and the traceback it carries. django.request
    logs the path of every 4xx and 5xx answer; gunicorn's error log the request line it could not parse and the URI
    of a request that failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {key: _masked(value) for key, value in record.args.items()}
        elif record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_masked(arg) for arg in args)
        record.msg = _masked(record.msg)
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set: the traceback is formatted once, here, masked.
            record.exc_text = mask_webhook_secret(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask_webhook_secret(record.stack_info)
        return True


def _masked(value):
    """A string masked; anything else as it is, unless its text shows a secret (an exception gunicorn logs whole)."""
    if isinstance(value, str):
        return mask_webhook_secret(value)
    if isinstance(value, int | float) or value is None:
        return value
    text = str(value)
    masked = mask_webhook_secret(text)
    return value if masked == text else masked


_webhook_secrets = WebhookSecretFilter()


class GunicornLogger(Logger):
    """gunicorn's logger, minus webhook secrets in its access log and its error log
    (`--logger-class portal.logging.GunicornLogger`)."""

    def setup(self, cfg):
        super().setup(cfg)
        self.error_log.addFilter(_webhook_secrets)  # once: setup runs again on every reload

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: mask_webhook_secret(v) if isinstance(v, str) else v for k, v in atoms.items()}
