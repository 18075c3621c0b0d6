"""Production settings: DEBUG off by default, a required secret, `check --deploy` clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = ROOT / "deploy" / "production.env"
SECURITY_ENV = {
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
}


def production_env() -> dict[str, str]:
    """The documented production environment (``deploy/production.env``)."""
    values = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def run_django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` with exactly ``env`` on top of a clean environment."""
    clean = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "backend.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_passes_with_the_documented_production_environment() -> None:
    env = production_env()
    assert env.keys() >= SECURITY_ENV
    result = run_django(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_fails_without_the_security_settings() -> None:
    env = {k: v for k, v in production_env().items() if k not in SECURITY_ENV}
    result = run_django(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    # W010: SESSION_COOKIE_SECURE (Django names the sessions app; it finds the
    # middleware by its path, and Pulse runs a subclass: backend.checks).
    for warning in ("security.W004", "security.W008", "security.W010", "security.W016"):
        assert warning in result.stderr


def test_debug_is_off_by_default() -> None:
    result = run_django(
        {"SECRET_KEY": "x" * 50},
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_secret_key_is_required_when_debug_is_off() -> None:
    result = run_django({}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_health_probes_are_not_redirected_to_https() -> None:
    script = (
        "from django.test import Client; "
        "print(Client().get('/healthz').status_code, Client().get('/graphql/').status_code)"
    )
    env = {**production_env(), "ALLOWED_HOSTS": "testserver"}
    result = run_django(env, "shell", "--no-imports", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "301"]


def test_deploy_checks_find_pulses_middleware_and_what_it_gates() -> None:
    from django.conf import settings
    from django.test import override_settings

    from backend.checks import check_security_with_pulse_middleware

    def ids(**overrides: object) -> set[str]:
        with override_settings(**overrides):
            return {m.id for m in check_security_with_pulse_middleware(None) if m.id}

    without_csrf = [p for p in settings.MIDDLEWARE if not p.endswith(".CsrfViewMiddleware")]
    without_security = [p for p in settings.MIDDLEWARE if not p.endswith(".SecurityMiddleware")]
    assert "security.W004" in ids(SECURE_HSTS_SECONDS=0)  # gated by SecurityMiddleware
    assert "security.W016" in ids(CSRF_COOKIE_SECURE=False)  # gated by CsrfViewMiddleware
    assert "pulse.W003" in ids(MIDDLEWARE=without_csrf)
    assert "security.W016" not in ids(MIDDLEWARE=without_csrf, CSRF_COOKIE_SECURE=False)
    assert {"pulse.W001", "security.W004"} & ids(
        MIDDLEWARE=without_security, SECURE_HSTS_SECONDS=0
    ) == {"pulse.W001"}
