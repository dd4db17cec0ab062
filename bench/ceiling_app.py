"""The portal's WSGI app plus one bench-only view, for bench/intake.py's same-run ceiling.

`POST /bench/insert/` goes through the same gunicorn, middleware and database connection handling as the
webhook intake, and does the least a view that stores something can do: one INSERT of the body, autocommitted.
It lives here, not in the portal's URLs, so production never serves it.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

django.setup()
settings.ROOT_URLCONF = "bench.ceiling_app"

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from portal.urls import urlpatterns as portal_urlpatterns  # noqa: E402


@csrf_exempt
def insert_one_row(request):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_ceiling (body) VALUES (%s)", [request.body])
    return JsonResponse({"status": 200, "detail": "Stored."})


urlpatterns = [path("bench/insert/", insert_one_row), *portal_urlpatterns]
application = get_wsgi_application()
