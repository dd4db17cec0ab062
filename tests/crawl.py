"""Walk every admin page and API endpoint a signed-in user can reach, for the tests that look at all of them."""

from collections.abc import Iterator

from django.contrib import admin
from django.http import HttpResponse
from django.urls import NoReverseMatch, URLPattern, reverse

from messaging.services.setup import STEP_KEYS

# Pages that change something on GET do not exist; these only need arguments a crawl cannot guess.
SKIP = {"view_on_site", "autocomplete", "password_reset_confirm"}


def body_of(response: HttpResponse) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return headers + "\n" + content.decode("utf-8", "replace")


def _kwargs_for(pattern: URLPattern, object_ids: list[str]) -> Iterator[dict]:
    names = list(pattern.pattern.converters) if hasattr(pattern.pattern, "converters") else []
    if not names:
        yield {}
        return
    if set(names) - {"object_id", "step", "pk"}:
        return
    for object_id in object_ids:
        kwargs = {name: object_id for name in names if name in ("object_id", "pk")}
        if "step" in names:
            for step in STEP_KEYS:
                yield {**kwargs, "step": step}
        else:
            yield kwargs


def admin_urls(user) -> Iterator[str]:
    """Every admin URL for every row `user` can see (up to 3 per model), custom pages included."""
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    seen = set()
    for pattern in admin.site.get_urls():
        if isinstance(pattern, URLPattern) and pattern.name and pattern.name not in SKIP:
            for kwargs in _kwargs_for(pattern, []):
                url = _reverse(pattern.name, kwargs)
                if url and url not in seen:
                    seen.add(url)
                    yield url
    for model_admin in admin.site._registry.values():
        if not model_admin.has_view_permission(request):
            continue
        ids = [str(pk) for pk in model_admin.get_queryset(request).values_list("pk", flat=True)[:3]]
        for pattern in model_admin.get_urls():
            if not isinstance(pattern, URLPattern) or not pattern.name or pattern.name in SKIP:
                continue
            for kwargs in _kwargs_for(pattern, ids):
                url = _reverse(pattern.name, kwargs)
                if url and url not in seen:
                    seen.add(url)
                    yield url
    for app_label in sorted({model._meta.app_label for model in admin.site._registry}):
        url = reverse("admin:app_list", kwargs={"app_label": app_label})
        if url not in seen:
            yield url


def _reverse(name: str, kwargs: dict) -> str | None:
    try:
        return reverse(f"admin:{name}", kwargs=kwargs)
    except NoReverseMatch:
        return None


def api_urls(client) -> Iterator[str]:
    """Every API list, and the detail of every row on the first page of each."""
    from portal.urls import router

    for prefix, _, _ in router.registry:
        url = f"/api/v1/{prefix}/"
        yield url
        response = client.get(url)
        if response.status_code != 200:
            continue  # a list this client may not read (a tenant viewer and the people): no rows to open
        rows = response.json()
        rows = rows["results"] if isinstance(rows, dict) else rows
        for row in rows[:3]:
            key = row.get("id", row.get("country"))
            yield f"{url}{key}/"
    yield "/api/v1/usage/"
    yield "/api/schema/"
    yield "/api/docs/"
