"""Test settings: the real settings, with a throwaway secret and fast hashing."""

import os

os.environ.setdefault("SECRET_KEY", "pulse-tests-only-secret-key-0123456789-abcdefghijklmnop")

from backend.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
