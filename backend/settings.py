"""Pulse settings, read from the environment (12-factor).

Every variable has a default that serves one machine: SQLite in the working directory
and the in-process channel layer. See the README's "Configuration" section.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from backend import logconfig

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Read an integer environment variable."""
    value = os.environ.get(name)
    return default if value is None or value == "" else int(value)


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated environment variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "pulse-insecure-development-key-only-used-when-DEBUG-is-on"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "backend.views.csrf_failure"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "strawberry_django",
    "users",
    "events",
    "schema.apps.SchemaConfig",
    "backend.apps.BackendConfig",  # its deploy checks (backend.checks)
]

# backend.checks runs these three of Django's checks itself, finding Pulse's subclasses
# of the middleware they look for (ids pulse.W001-W003), and the checks they gate.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

MIDDLEWARE = [
    "backend.metrics.HttpMetricsMiddleware",
    "backend.logcontext.RequestLogMiddleware",  # request_id (and user_id) on every line
    # Django's own, with their hooks on the event loop where they do no I/O.
    "backend.middleware.SecurityMiddleware",
    "backend.middleware.SessionMiddleware",
    "backend.middleware.CommonMiddleware",
    "backend.middleware.CsrfViewMiddleware",
    "backend.middleware.AuthenticationMiddleware",
    "users.middleware.BearerTokenMiddleware",
    "backend.middleware.MessageMiddleware",
    "backend.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "schema.urls"
ASGI_APPLICATION = "asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{Path.cwd() / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_POOL", True
):
    # Under ASGI each request runs its database work in a thread of its own, so Django's
    # persistent connections (CONN_MAX_AGE) are never reused; its connection pool
    # (psycopg_pool) is, and spares each request a new connection and its login.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
        "timeout": 10,  # seconds a request waits for a free connection, then fails
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (mutations in worker threads) wait for the lock instead of
    # failing at once; IMMEDIATE takes the write lock at BEGIN so upgrades cannot deadlock.
    # WAL lets readers run beside the writer and makes commits cheaper. Pulse's backend
    # makes one process's writers queue for their turn (fair, no sleep-and-retry).
    DATABASES["default"]["ENGINE"] = "backend.db.sqlite3"
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))

REDIS_URL = os.environ.get("REDIS_URL", "")
# Prefix of everything Pulse keeps in Redis (presence keys, cache keys, channel-layer
# groups): deployments (or test servers) sharing one Redis each need their own.
PULSE_REDIS_NAMESPACE = os.environ.get("PULSE_REDIS_NAMESPACE") or "pulse"
if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", PULSE_REDIS_NAMESPACE):
    raise ImproperlyConfigured("PULSE_REDIS_NAMESPACE: 1 to 40 letters, digits, _ or -")
if REDIS_URL:
    # The pub/sub layer delivers each group message to every subscribed process through
    # one Redis PUBLISH: exactly what a broadcast to one listener per process needs.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env_int("PULSE_INMEMORY_LAYER_CAPACITY", 10_000)},
        }
    }

# Login throttling counts in Django's cache: per process by default, shared through
# Redis when REDIS_URL is set (so every server process sees the same counts).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": PULSE_REDIS_NAMESPACE,
            "OPTIONS": {
                "pool_class": "backend.redis_pool.SharedConnectionPool",  # not one per request
                "socket_connect_timeout": 1,  # a cache that is away fails fast
                "socket_timeout": 1,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes speak plain HTTP
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Pulse's own knobs (README, "Configuration").
PULSE_TOKEN_TTL_SECONDS = env_int("PULSE_TOKEN_TTL_SECONDS", 30 * 24 * 3600)
PULSE_MAX_PAGE_SIZE = env_int("PULSE_MAX_PAGE_SIZE", 100)
PULSE_CONNECTION_INIT_TIMEOUT_SECONDS = env_int("PULSE_CONNECTION_INIT_TIMEOUT_SECONDS", 10)
PULSE_MAX_OPERATIONS_PER_SOCKET = env_int("PULSE_MAX_OPERATIONS_PER_SOCKET", 50)
PULSE_SUBSCRIBER_QUEUE_SIZE = env_int("PULSE_SUBSCRIBER_QUEUE_SIZE", 1000)
PULSE_REPLAY_BATCH_SIZE = env_int("PULSE_REPLAY_BATCH_SIZE", 200)
PULSE_KEEPALIVE_SECONDS = float(os.environ.get("PULSE_KEEPALIVE_SECONDS") or 15)
PULSE_FANOUT_WINDOW_SECONDS = float(os.environ.get("PULSE_FANOUT_WINDOW_SECONDS") or 0.05)
PULSE_PRESENCE_TIMEOUT_SECONDS = env_int("PULSE_PRESENCE_TIMEOUT_SECONDS", 60)

# Abuse limits (README, "Security"). Each rejected request gets a coded error.
PULSE_MAX_QUERY_DEPTH = env_int("PULSE_MAX_QUERY_DEPTH", 10)
PULSE_MAX_ALIASES = env_int("PULSE_MAX_ALIASES", 30)
PULSE_MAX_TOKENS = env_int("PULSE_MAX_TOKENS", 5000)
PULSE_MAX_REQUEST_BYTES = env_int("PULSE_MAX_REQUEST_BYTES", 1024 * 1024)
# PULSE_WS_MAX_MESSAGE_BYTES and PULSE_WS_MAX_UNSENT_BYTES are read by backend.server,
# which sets up daphne before Django.
PULSE_MAX_SOCKETS_PER_USER = env_int("PULSE_MAX_SOCKETS_PER_USER", 20)
PULSE_MAX_MENTIONS = env_int("PULSE_MAX_MENTIONS", 100)  # distinct @names per text
PULSE_LOGIN_MAX_FAILURES = env_int("PULSE_LOGIN_MAX_FAILURES", 10)
PULSE_LOGIN_WINDOW_SECONDS = env_int("PULSE_LOGIN_WINDOW_SECONDS", 15 * 60)
RATELIMIT_FAIL_OPEN = True  # a cache outage must not lock everyone out (it is logged)
# Django refuses larger form bodies itself; Pulse's ASGI guard answers 413 before that.
DATA_UPLOAD_MAX_MEMORY_SIZE = PULSE_MAX_REQUEST_BYTES

# Operations (README, "Operations"): Prometheus metrics and structured logs.
PULSE_METRICS_ENABLED = env_bool("PULSE_METRICS_ENABLED", True)
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
# One line per request at INFO (request_finished, with its id, user, status): the
# request_started line is for LOG_LEVEL=DEBUG (each line costs every request CPU).
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
# The client's address is bound by backend.logcontext (REMOTE_ADDR, as daphne resolves
# proxy headers), not guessed from X-Forwarded-For by django-ipware on every request.
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
LOG_FORMAT = os.environ.get("LOG_FORMAT") or ("console" if DEBUG else "json")
if LOG_FORMAT not in logconfig.LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or console, not {LOG_FORMAT!r}.")
LOGGING = logconfig.logging_config(LOG_FORMAT, LOG_LEVEL)
logconfig.configure_structlog()
