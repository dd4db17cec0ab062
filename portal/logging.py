"""Keep secrets out of error reports."""

import re

from django.views.debug import SafeExceptionReporterFilter


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
