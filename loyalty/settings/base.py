"""Settings shared by every deployment; everything that varies comes from the environment."""

from pathlib import Path

import dj_database_url

from loyalty.env import BASE_DIR, env_bool, env_float, env_int, env_list, env_str

VAR_DIR = Path(env_str("LOYALTY_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-secret-key-change-me")
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "loyalty",
    "points",
    "rewards",
    "integrations",
    "integrations.eai",
    "integrations.partner",
    "integrations.follower",
    "loyalty.engagement",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "loyalty.middleware.RequestSizeLimitMiddleware",
    # Django's browser middleware, skipped on the credential-only API contracts (middleware.py).
    "loyalty.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "loyalty.middleware.BrowserCsrfViewMiddleware",
    "loyalty.middleware.BrowserAuthenticationMiddleware",
    "loyalty.middleware.BrowserMessageMiddleware",
    "loyalty.middleware.BrowserXFrameOptionsMiddleware",
    "loyalty.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "loyalty.urls"
WSGI_APPLICATION = "loyalty.wsgi.application"

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
            ],
        },
    },
]

# Database: DATABASE_URL, or a SQLite file under var/ for the embedded first run.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'loyalty.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        # A reused connection is checked before each request's first query, so a connection
        # the server dropped is replaced instead of failing the request; without the check such
        # a request gets the 503 of DatabaseUnavailableMiddleware. On PostgreSQL the check is a
        # look at the socket (loyalty/backends/postgresql), a SELECT 1 only when it shows data.
        conn_health_checks=env_bool("DB_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "loyalty.backends.postgresql"
if DATABASES["default"]["ENGINE"] == "loyalty.backends.postgresql" and env_bool(
    "DB_PREPARED_STATEMENTS", True
):
    # The hot paths' hand-written statements (loyalty/sql.py) are prepared on first use on
    # each connection. Off for a pooler that cannot keep prepared statements (PgBouncer
    # before 1.21 in transaction mode).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # SQLite serialises writers; a busy timeout turns lock contention into waiting, not errors.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Members sign in to the portal; sessions expire (two weeks is Django's default; a loyalty
# wallet is closer to a bank than to a forum).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 8)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
LOGIN_URL = "/portal/login/"
CSRF_FAILURE_VIEW = "loyalty.portal.views.csrf_failure"
LOGIN_REDIRECT_URL = "/portal/"
LOGOUT_REDIRECT_URL = "/portal/login/"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# Request bodies above this are refused with 413 (loyalty/middleware.py). 1000 follower
# transactions take about 250 KB.
LOYALTY_MAX_BODY_BYTES = env_int("LOYALTY_MAX_BODY_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = LOYALTY_MAX_BODY_BYTES

# --- Redis, cache and Celery --------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "loyalty.cache.RedisCache",  # Django's, reusing its Redis clients
            "LOCATION": env_str("CACHE_URL", REDIS_URL),
            # A Redis that stops answering must not hang requests: the rate limiter lets
            # requests through when its cache is down (integrations/partner/api.py).
            "OPTIONS": {
                "socket_connect_timeout": env_int("CACHE_SOCKET_TIMEOUT_SECONDS", 2),
                "socket_timeout": env_int("CACHE_SOCKET_TIMEOUT_SECONDS", 2),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Every countdown and retry delay must stay below the broker's visibility timeout, or Redis
# would hand the same message to a second worker while the first still waits (loyalty/celery.py
# refuses to start otherwise).
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": 3,
    "socket_timeout": 5,
}
# A request that committed must not hang on a broker that is down: publish fails fast and the
# outbox sweeper sends the message later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "loyalty")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# --- Outbox -------------------------------------------------------------------------------
# Deliveries are retried with exponential backoff and jitter for up to this long.
OUTBOX_RETRY_WINDOW_SECONDS = env_int("OUTBOX_RETRY_WINDOW_SECONDS", 24 * 60 * 60)
OUTBOX_BACKOFF_BASE_SECONDS = env_int("OUTBOX_BACKOFF_BASE_SECONDS", 5)
OUTBOX_BACKOFF_MAX_SECONDS = env_int("OUTBOX_BACKOFF_MAX_SECONDS", 60 * 60)
# A retry due sooner than this is scheduled as a Celery countdown; later ones wait for the
# sweeper. Must stay below CELERY_BROKER_VISIBILITY_TIMEOUT.
OUTBOX_COUNTDOWN_MAX_SECONDS = env_int("OUTBOX_COUNTDOWN_MAX_SECONDS", 60)
OUTBOX_DELIVERY_TIMEOUT_SECONDS = env_int("OUTBOX_DELIVERY_TIMEOUT_SECONDS", 10)
# How long a worker may hold a message it is sending before the sweeper may send it again.
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 120)
OUTBOX_SWEEP_INTERVAL_SECONDS = env_int("OUTBOX_SWEEP_INTERVAL_SECONDS", 15)

# Callback and webhook URLs: https to public addresses only, unless this development switch
# is on (never in production; see DESIGN.md).
LOYALTY_ALLOW_INSECURE_CALLBACKS = env_bool("LOYALTY_ALLOW_INSECURE_CALLBACKS", False)
# The fast lane of the hottest contract calls (loyalty/fast_lane.py); off, Django serves them.
LOYALTY_FAST_LANE = env_bool("LOYALTY_FAST_LANE", True)

# --- APIs ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "loyalty.negotiation.JsonFirstNegotiation",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty platform API",
    "DESCRIPTION": (
        "Points ledger, two-phase deduction, partner, follower, rewards and profile APIs."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"ClaimStatusEnum": "rewards.models.ClaimStatus.values"},
}

OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("OAUTH_ACCESS_TOKEN_EXPIRE_SECONDS", 3600),
    "SCOPES": {
        "points:earn": "Earn points through the partner Point API",
        "points:burn": "Redeem points through the partner Point API",
        "points:read": "Read point balances",
        "customers:read": "Read customer profiles",
        "customers:write": "Create and change customer profiles",
        "rewards:admin": "Manage reward types, inventories, operations and claims",
        "follower:write": "Push balances and transactions as the point master",
        "member": "A member's own data (authorization-code flow with PKCE)",
    },
    "PKCE_REQUIRED": True,
    "SCOPES_BACKEND_CLASS": "integrations.clients.ClientScopes",
    "DEFAULT_SCOPES": ["__all__"],
}

# --- Platform -----------------------------------------------------------------------------
# Issuer of the SSO tokens handed to rewards vendors.
LOYALTY_ISSUER = env_str("LOYALTY_ISSUER", "loyalty-platform")
# Behind a proxy, the header carrying the client address (e.g. HTTP_X_FORWARDED_FOR); empty
# means trust only the socket's peer address.
LOYALTY_TRUSTED_PROXY_HEADER = env_str("LOYALTY_TRUSTED_PROXY_HEADER", "")
# SSO signing keys (seed 000): size, and how long a new key is published before it signs.
LOYALTY_SSO_RSA_KEY_BITS = env_int("LOYALTY_SSO_RSA_KEY_BITS", 2048)
LOYALTY_SSO_KEY_PUBLISH_AHEAD_SECONDS = env_int("LOYALTY_SSO_KEY_PUBLISH_AHEAD_SECONDS", 360)

# Partner Point API (seed 001).
PARTNER_API_RATE = env_str("PARTNER_API_RATE", "50/s")
PARTNER_SWEEP_AFTER_SECONDS = env_int("PARTNER_SWEEP_AFTER_SECONDS", 60)
# Accepted requests are processed by at most this many drainer tasks at once (one per slot);
# about the workers' total concurrency.
PARTNER_DRAIN_SLOTS = env_int("PARTNER_DRAIN_SLOTS", 4)
# A drainer with nothing to do looks for more this long before it frees its slot.
PARTNER_DRAIN_LINGER_SECONDS = env_float("PARTNER_DRAIN_LINGER_SECONDS", 0.05)
PARTNER_GIVE_UP_AFTER_SECONDS = env_int("PARTNER_GIVE_UP_AFTER_SECONDS", 24 * 60 * 60)
PARTNER_SIGNATURE_WINDOW_SECONDS = env_int("PARTNER_SIGNATURE_WINDOW_SECONDS", 300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
