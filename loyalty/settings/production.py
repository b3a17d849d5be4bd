"""Production: the same settings as base, hardened; everything else comes from the environment."""

from django.core.exceptions import ImproperlyConfigured

from loyalty.env import env_bool, env_int
from loyalty.settings.base import *  # noqa: F403
from loyalty.settings.base import DATABASES, LOYALTY_ALLOW_INSECURE_CALLBACKS, REDIS_URL, SECRET_KEY

DEBUG = False

if SECRET_KEY.startswith("dev-only") or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be set to a long random value in production.")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production.")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production: tasks need real workers.")
if LOYALTY_ALLOW_INSECURE_CALLBACKS:
    raise ImproperlyConfigured("LOYALTY_ALLOW_INSECURE_CALLBACKS must never be on in production.")

# TLS terminates at the load balancer, which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
