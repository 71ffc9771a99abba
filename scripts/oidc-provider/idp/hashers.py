from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2-SHA256 at a test-only cost: user passwords and client secrets stay hashed (as in a
    real deployment of DOT >= 2) without costing a second of CPU per login or token request."""

    algorithm = "pbkdf2_sha256_fast"
    iterations = 1000
