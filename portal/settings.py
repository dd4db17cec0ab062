"""Settings for the PBX Messaging Portal: one module, driven by the environment.

With nothing set, the portal runs for development: DEBUG on, SQLite under var/, an embedded Celery broker
(kombu's filesystem transport) under var/broker/, console email. Production (DEBUG=false) refuses to start
without its secrets. Every variable is listed in .env.example and the README.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """The variable, stripped; empty counts as unset (compose passes unset variables as '')."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def require_in_production(name: str, dev_default: str) -> str:
    """Return the variable; a development default is allowed only while DEBUG is on."""
    value = env_str(name)
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off.")


# --------------------------------------------------------------------------------------------------------------
# Core
# --------------------------------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)
# pytest (8.2+) sets PYTEST_VERSION; test runs keep their files apart from a development portal's.
TESTING = "PYTEST_VERSION" in os.environ
VAR_DIR = Path(env_str("PORTAL_VAR_DIR") or BASE_DIR / ("var/test" if TESTING else "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = require_in_production("SECRET_KEY", "dev-only-insecure-secret-key-do-not-use-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public base URL Wavix and e-mails use to reach the portal (webhook URLs, invitation links).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "unfold.apps.BasicAppConfig",  # the admin's theme (templates before django.contrib.admin's); our own site
    "portal.apps.PortalAdminConfig",  # the admin, with access decided by tenants.access
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",  # sign-in lockout after repeated failures (see Auth, API)
    "django_otp",  # two-factor sign-in (tenants.two_factor)
    "django_otp.plugins.otp_totp",  # authenticator apps
    "django_otp.plugins.otp_static",  # recovery codes
    "tenants",
    "messaging",
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): signed in with a second factor
    "tenants.middleware.TwoFactorMiddleware",  # who must give (or first set up) a second factor, before anything
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "portal.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes requires: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.sandbox",
            ],
        },
    },
]

# The admin's theme (django-unfold). The sidebar is built per request by messaging.admin.navigation; the colours
# are Tailwind's blue, whose 600 keeps white text above WCAG's 4.5:1 (tests/test_accessibility.py runs axe-core).
# The platform's palette; a reseller's brand colour replaces it for its people (tenants.branding).
PORTAL_PRIMARY_COLORS = {
    "50": "oklch(97% .014 254.604)",
    "100": "oklch(93.2% .032 255.585)",
    "200": "oklch(88.2% .059 254.128)",
    "300": "oklch(80.9% .105 251.813)",
    "400": "oklch(70.7% .165 254.624)",
    "500": "oklch(62.3% .214 259.815)",
    "600": "oklch(54.6% .245 262.881)",
    "700": "oklch(48.8% .243 264.376)",
    "800": "oklch(42.4% .199 265.638)",
    "900": "oklch(37.9% .146 265.522)",
    "950": "oklch(28.2% .091 267.935)",
}
# Names, logo and colours per request: the reseller's brand for its people, the platform's for staff (functions named
# by path, which the theme calls with the request).
UNFOLD = {
    "SITE_TITLE": "tenants.branding.site_header",
    "SITE_HEADER": "tenants.branding.site_header",
    "SITE_SUBHEADER": "tenants.branding.site_subheader",
    "SITE_ICON": "tenants.branding.site_icon",
    "SITE_SYMBOL": "sms",
    "SITE_URL": None,
    "SITE_FAVICONS": [{"rel": "icon", "type": "image/svg+xml", "href": lambda request: static("portal/favicon.svg")}],
    "SHOW_VIEW_ON_SITE": False,
    "STYLES": [lambda request: static("portal/portal.css")],
    "COLORS": {"primary": "tenants.branding.primary_colors"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The portal's own look (portal.css, the favicon): `portal` is no app (its AppConfig is the admin's), so named here.
STATICFILES_DIRS = [BASE_DIR / "portal" / "static"]
# Uploaded registration documents: outside the web root and the static files, served only by a checked view.
PRIVATE_MEDIA_ROOT = Path(env_str("PRIVATE_MEDIA_ROOT") or VAR_DIR / "private").resolve()
REGISTRATION_DOCUMENT_MAX_BYTES = env_int("REGISTRATION_DOCUMENT_MAX_BYTES", 5 * 1024 * 1024)
# The daily digest to platform staff lists registrations waiting longer than this many days.
REGISTRATION_DIGEST_AFTER_DAYS = env_int("REGISTRATION_DIGEST_AFTER_DAYS", 3)
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --------------------------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
# Persistent connections: a new authenticated PostgreSQL connection per request is 10x slower here.
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 600)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True)}
else:
    # Django takes a Path for NAME; the stub's TypedDict says str.
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"}}  # type: ignore[typeddict-item]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and a Celery worker write at once: WAL lets readers continue during a write, the busy
    # timeout makes a writer wait instead of failing, and IMMEDIATE takes the write lock at BEGIN, so a
    # transaction never fails half-way when it upgrades from reading to writing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so a Celery worker started by a test sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = env_str("DB_APPLICATION_NAME", "portal")
    # Django turns psycopg's prepared statements off (prepare_threshold None), and then even a statement run with
    # prepare=True is not prepared. Its own cursors bind on the client and never prepare, so allowing them only
    # lets the one statement that asks be planned once per connection: the webhook intake's INSERT, whose
    # planning cost as much as running it (docs/benchmarks.md). Off behind a transaction-pooling PgBouncer
    # older than 1.21, which cannot follow a prepared statement from one server connection to another.
    if env_bool("DB_PREPARED_STATEMENTS", True):
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
    # Behind a PgBouncer in transaction-pooling mode each transaction may run on another server connection: no
    # server-side cursor (Django's .iterator() on PostgreSQL) may outlive its transaction (Django's documentation).
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DB_TRANSACTION_POOLING", False)

# --------------------------------------------------------------------------------------------------------------
# Wavix, and the built-in Wavix sandbox and fake 3CX
# --------------------------------------------------------------------------------------------------------------

# The sandbox simulates Wavix (and 3CX inboxes) under /sandbox/; on for development, off in production.
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", DEBUG)
WAVIX_API_URL = env_str("WAVIX_API_URL") or (
    f"{PUBLIC_BASE_URL}/sandbox/wavix" if SANDBOX_ENABLED else "https://api.wavix.com"
)
WAVIX_CONNECT_TIMEOUT = env_int("WAVIX_CONNECT_TIMEOUT", 5)
WAVIX_READ_TIMEOUT = env_int("WAVIX_READ_TIMEOUT", 15)
# How often the portal compares numbers and sender IDs with Wavix (relay-URL drift, new allow-listings).
WAVIX_SYNC_MINUTES = env_int("WAVIX_SYNC_MINUTES", 5)
# How often the portal reads each account's outbound texts back from Wavix's log: those 3CX sent straight to Wavix
# (trunks on 3CX's Wavix template) appear in the message log at most this late (messaging/services/mirror.py).
WAVIX_MIRROR_SECONDS = env_int("WAVIX_MIRROR_SECONDS", 60)
if WAVIX_MIRROR_SECONDS < 1:
    raise ImproperlyConfigured(f"WAVIX_MIRROR_SECONDS={WAVIX_MIRROR_SECONDS} must be at least 1.")
# First wait before a task retries a call Wavix could not take; it doubles (with jitter) up to 10 minutes.
WAVIX_RETRY_BACKOFF_SECONDS = env_int("WAVIX_RETRY_BACKOFF_SECONDS", 15)
# /metrics answers a request carrying `Authorization: Bearer <METRICS_TOKEN>` (or a signed-in platform user).
METRICS_TOKEN = env_str("METRICS_TOKEN")
# A message "sending" longer than this lost its worker mid-call: it is settled by asking Wavix (by tag).
OUTBOUND_UNKNOWN_AFTER_SECONDS = env_int("OUTBOUND_UNKNOWN_AFTER_SECONDS", 120)
# Calls to Wavix one account's drain keeps in flight at once: with one, a drain sends at most 1 / round-trip.
OUTBOUND_SENDS_IN_FLIGHT = env_int("OUTBOUND_SENDS_IN_FLIGHT", 4)
# POSTs to 3CX one relay drain keeps in flight at once, each for a different conversation (a conversation's texts
# still go one after another), no trunk more than half of them: with one, a drain forwards at most 1 / round-trip.
RELAY_FORWARDS_IN_FLIGHT = env_int("RELAY_FORWARDS_IN_FLIGHT", 16)
# The relay's partitions: webhook events and deliveries are spread over this many by a hash of their conversation,
# and each drain works only the partitions it leases, so workers on any number of machines share the relay while each
# conversation keeps its order (messaging/models/relay.py). Change it only with the relay drained (no pending events
# or deliveries): rows already stored keep the partition they were given.
RELAY_PARTITIONS = env_int("RELAY_PARTITIONS", 64)
# A drain leases at most RELAY_PARTITIONS / RELAY_DRAIN_SHARE busy partitions at a time, so a burst is split among up
# to this many drains at once (a drain takes more as it finishes its own).
RELAY_DRAIN_SHARE = env_int("RELAY_DRAIN_SHARE", 8)
if not 1 <= RELAY_DRAIN_SHARE <= RELAY_PARTITIONS <= 32767:
    raise ImproperlyConfigured("RELAY_PARTITIONS must be 1–32767 and RELAY_DRAIN_SHARE 1–RELAY_PARTITIONS.")
# Webhooks from Wavix: bodies larger than this are refused (413).
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 64 * 1024)
# 3CX's provider endpoint: wrong or missing keys from one address, counted over PROVIDER_AUTH_WINDOW_SECONDS; past
# the limit that address gets 429 until the window ends, whatever key it sends.
PROVIDER_AUTH_FAILURE_LIMIT = env_int("PROVIDER_AUTH_FAILURE_LIMIT", 20)
PROVIDER_AUTH_WINDOW_SECONDS = env_int("PROVIDER_AUTH_WINDOW_SECONDS", 600)
# Message texts, media links and raw webhook bodies are purged after each reseller's retention period
# (Reseller.message_retention_days, default 90); this is the longest a reseller may choose.
MESSAGE_RETENTION_MAX_DAYS = env_int("MESSAGE_RETENTION_MAX_DAYS", 365)
if MESSAGE_RETENTION_MAX_DAYS < 1:
    raise ImproperlyConfigured(f"MESSAGE_RETENTION_MAX_DAYS={MESSAGE_RETENTION_MAX_DAYS} must be at least 1.")

# Forwarding to 3CX. Private, loopback and link-local destinations are refused (SSRF guard) unless allowed:
# the sandbox's fake 3CX inboxes live on loopback.
THREECX_ALLOW_PRIVATE_ADDRESSES = env_bool("THREECX_ALLOW_PRIVATE_ADDRESSES", SANDBOX_ENABLED)
THREECX_CONNECT_TIMEOUT = env_int("THREECX_CONNECT_TIMEOUT", 5)
THREECX_READ_TIMEOUT = env_int("THREECX_READ_TIMEOUT", 10)

# --------------------------------------------------------------------------------------------------------------
# Redis, cache and Celery
# --------------------------------------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
EMBEDDED_BROKER_DIR = Path(env_str("EMBEDDED_BROKER_DIR") or VAR_DIR / "broker")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # Shared by the web server and workers on one machine, unlike the per-process local-memory cache.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",  # type: ignore[dict-item]  # FileBasedCache takes a Path; the stub says str
        }
    }

# Redis redelivers an unacknowledged task after this long; no task may wait in the broker longer
# (long waits live in the database, see DESIGN.md).
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
if CELERY_BROKER_URL:
    # Short socket timeouts: a webhook must not wait on a dead broker (its events are swept up later).
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
    CELERY_BROKER_CONNECTION_TIMEOUT = 2
else:
    # The embedded default: kombu's filesystem transport needs no server, so a laptop runs everything.
    CELERY_BROKER_URL = "filesystem://"
    for sub in ("queue", "processed", "control"):
        (EMBEDDED_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(EMBEDDED_BROKER_DIR / "queue"),
        "data_folder_out": str(EMBEDDED_BROKER_DIR / "queue"),
        "processed_folder": str(EMBEDDED_BROKER_DIR / "processed"),
        "control_folder": str(EMBEDDED_BROKER_DIR / "control"),
        "store_processed": False,
    }

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # results live in the database rows the tasks update
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task is acknowledged after it ran, and requeued if its worker died: every task claims its row with a
# conditional update, so running twice is safe and losing one is not.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90)
# Separate queues so a bulk send or a number sync never delays forwarding an inbound text.
WORKER_QUEUES = ("inbound", "outbound", "sync")
CELERY_TASK_QUEUES = [Queue(name) for name in WORKER_QUEUES]
CELERY_TASK_DEFAULT_QUEUE = "sync"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_ROUTES = {
    "messaging.tasks.inbound_*": {"queue": "inbound"},
    "messaging.tasks.relay_*": {"queue": "inbound"},
    "messaging.tasks.outbound_*": {"queue": "outbound"},
}
# Celery closes Django's connection around every task unless this is set; a reconnect per task costs
# two thirds of a worker's throughput here. portal.celery also drops broken or expired connections.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# Beat keeps its schedule in memory: the default shelve file, truncated by a killed beat, stops beat from
# starting at all (seen here). The schedule is static and every periodic job is idempotent and frequent.
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"
CELERY_BEAT_SCHEDULE = {
    **{
        f"heartbeat-{queue}": {
            "task": "messaging.tasks.worker_heartbeat",
            "schedule": crontab(),  # every minute
            "args": (queue,),
            "options": {"queue": queue, "expires": 55},
        }
        for queue in WORKER_QUEUES
    },
    # Retries that fell due, and events stored while the broker was down: at most this late. It also gives failing
    # trunks their early try (relay.PROBE_EVERY, 15 s: one every 20 s with this period).
    "relay-sweep": {"task": "messaging.tasks.relay_sweep", "schedule": 10.0, "options": {"expires": 9}},
    "outbound-sweep": {"task": "messaging.tasks.outbound_sweep", "schedule": 10.0, "options": {"expires": 9}},
    "wavix-reconcile-all": {
        "task": "messaging.tasks.wavix_reconcile_all",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 300},
    },
    "wavix-mirror-all": {
        "task": "messaging.tasks.wavix_mirror_all",
        "schedule": float(WAVIX_MIRROR_SECONDS),
        "options": {"expires": max(WAVIX_MIRROR_SECONDS - 1, 1)},
    },
    "wavix-check-all": {
        "task": "messaging.tasks.wavix_check_all",
        "schedule": crontab(minute=f"*/{WAVIX_SYNC_MINUTES}"),
        "options": {"expires": 120},
    },
    # The dashboard's daily counts: today and yesterday often (new texts, delivery reports), the fortnight its
    # charts show hourly (reports that came days late).
    "message-counts-recent": {
        "task": "messaging.tasks.message_counts_rollup",
        "schedule": crontab(minute="*/5"),
        "args": (2,),
        "options": {"queue": "sync", "expires": 240},
    },
    "message-counts-fortnight": {
        "task": "messaging.tasks.message_counts_rollup",
        "schedule": crontab(minute=17),
        "args": (15,),
        "options": {"queue": "sync", "expires": 1800},
    },
    # Message content past each reseller's retention period, purged in small batches at a quiet hour.
    "retention-purge": {
        "task": "messaging.tasks.retention_purge",
        "schedule": crontab(hour=3, minute=41),
        "options": {"queue": "sync", "expires": 6 * 3600},
    },
    # Reviewers get one e-mail a morning listing registrations that have waited too long.
    "registrations-review-digest": {
        "task": "messaging.tasks.registrations_review_digest",
        "schedule": crontab(hour=7, minute=0),
        "options": {"queue": "sync", "expires": 3600},
    },
}

# --------------------------------------------------------------------------------------------------------------
# Secrets at rest
# --------------------------------------------------------------------------------------------------------------

# Comma-separated Fernet keys, newest first: new secrets are encrypted with the first, every key decrypts.
# Rotate by putting a new key in front, running `manage.py rotate_secrets`, then dropping the old key.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off.")
    FIELD_ENCRYPTION_KEYS = ["ZGV2LW9ubHktZmllbGQta2V5LWRvLW5vdC11c2UtISE="]  # development only

# --------------------------------------------------------------------------------------------------------------
# Auth, API
# --------------------------------------------------------------------------------------------------------------

# django-axes refuses sign-ins after LOGIN_FAILURE_LIMIT failures for one e-mail from one address (the pair,
# so a stranger cannot lock a colleague out of the office's shared address), for LOGIN_LOCKOUT_MINUTES; a new
# failure during the lockout starts it again. Its backend only watches: ModelBackend still checks passwords.
# API tokens and Wavix's webhooks never call authenticate(), so they are unaffected. Tests sign in hundreds of
# times, so lockout is off under pytest unless a test turns it on.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", not TESTING)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "portal.admin.lockout_username"  # the e-mail as the login form reads it: trimmed, lower
AXES_LOCKOUT_CALLABLE = "portal.admin.locked_out"
AXES_RESET_ON_SUCCESS = True
# Successful sign-ins are not logged to the database (a table nobody purges); failures are, in AccessAttempt.
AXES_DISABLE_ACCESS_LOG = True
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured(f"LOGIN_FAILURE_LIMIT={AXES_FAILURE_LIMIT} must be at least 1.")

# Two-factor sign-in (tenants.two_factor): reseller admins and platform staff must set it up, everyone else may;
# API tokens are not affected. Off in tests unless a test turns it on (as the lockout is), so that tests which sign
# in with force_login need no code.
TWO_FACTOR_ENFORCED = env_bool("TWO_FACTOR_ENFORCED", not TESTING)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "PBX Messaging Portal")  # the name authenticator apps show

LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# How long an invitation link works (tenants.services.invitation_of_link), and Django's password-reset links too.
PASSWORD_RESET_TIMEOUT = env_int("INVITE_LINK_TTL_SECONDS", 3 * 24 * 3600)
if TESTING:
    # PBKDF2's cost is the point in production and only slowness in a test that creates hundreds of users.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.authentication.AccessPermission"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.authentication.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_token": env_str("API_TOKEN_RATE", "600/min")},
    # Keyset pagination: no COUNT(*) over a million messages, stable under inserts.
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    # DRF's own JSON parser answers a deeply nested body or a lone UTF-16 surrogate with a 500.
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PBX Messaging Portal API",
    "DESCRIPTION": "Tenants, 3CX trunks, Wavix numbers, sender IDs and messages. Authenticate with "
    "`Authorization: Token <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CountryPolicyEnum": "messaging.models.CountryRule.Policy",
        "MessageStatusEnum": "messaging.models.Message.Status",
        "RegistrationStatusEnum": "messaging.models.SenderIDCountry.Status",
        "TenantStatusEnum": "tenants.models.Tenant.Status",
    },
}

# --------------------------------------------------------------------------------------------------------------
# E-mail
# --------------------------------------------------------------------------------------------------------------

EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 10
else:
    if not DEBUG:
        raise ImproperlyConfigured("EMAIL_HOST must be set when DEBUG is off (invites are sent by e-mail).")
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "PBX Messaging Portal <noreply@localhost>")

# --------------------------------------------------------------------------------------------------------------
# Security
# --------------------------------------------------------------------------------------------------------------

# POST data in error reports is filtered by name too: api_key, secrets, webhook URLs, passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "portal.logging.SecretsReporterFilter"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Only directives that need no change to the pages: the setup wizard and the API docs use inline scripts, so
# script-src stays open; no framing, no plugins, no <base> hijack, forms post only to the portal.
CONTENT_SECURITY_POLICY = "base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --------------------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Webhook URLs carry their secret in the path, which Django logs for every 4xx and 5xx answer.
    "filters": {"webhook_secrets": {"()": "portal.logging.WebhookSecretFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["webhook_secrets"]},
        # httpx logs every request at INFO; the portal logs what each Wavix call meant instead.
        "httpx": {"level": "WARNING"},
        # axes.apps announces its configuration at every start of every process.
        "axes.apps": {"level": "WARNING"},
    },
}

# --------------------------------------------------------------------------------------------------------------
# Portal
# --------------------------------------------------------------------------------------------------------------

# The demo data and its printed login exist only for development and the sandbox.
DEMO_ENABLED = env_bool("DEMO_ENABLED", DEBUG)
