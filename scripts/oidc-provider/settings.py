"""Settings of the test OpenID Connect provider (scripts/oidc-provider.sh).

Everything that differs between providers lives in the folder named by OIDC_PROVIDER_DIR,
so several can run at once:
  DIR/port               the TCP port (the issuer is http://127.0.0.1:PORT/o)
  DIR/secret_key         Django's SECRET_KEY
  DIR/keys/signing.pem   the RSA key that signs new ID tokens
  DIR/keys/inactive-*.pem  earlier keys, still published in the JWKS (after rotate-key)
  DIR/db.sqlite3         users, clients, grants, tokens
Optional environment: OIDC_PROVIDER_ACCESS_TOKEN_SECONDS (300), OIDC_PROVIDER_ID_TOKEN_SECONDS
(300), OIDC_PROVIDER_DEVICE_INTERVAL (1), OIDC_PROVIDER_DEBUG (off).
"""

import os
from pathlib import Path

if not os.environ.get("OIDC_PROVIDER_DIR"):
    raise RuntimeError("OIDC_PROVIDER_DIR is not set (use scripts/oidc-provider.sh)")
DIR = Path(os.environ["OIDC_PROVIDER_DIR"]).resolve()


def _read(name, default=""):
    try:
        return (DIR / name).read_text().strip()
    except FileNotFoundError:
        return default


PORT = _read("port", "8000")
ISSUER = f"http://127.0.0.1:{PORT}/o"

SECRET_KEY = _read("secret_key") or "oidc-provider-test-only-secret-key-not-for-production"
DEBUG = os.environ.get("OIDC_PROVIDER_DEBUG", "") not in ("", "0", "no", "off", "false")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth2_provider",
    "idp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "urls"
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
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Cookies are not isolated by port: give each provider its own names, so two providers (and the
# relying party itself) on 127.0.0.1 do not overwrite one another's session in one browser.
SESSION_COOKIE_NAME = f"oidc_session_{PORT}"
CSRF_COOKIE_NAME = f"oidc_csrf_{PORT}"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/accounts/done/"

# User passwords and (DOT >= 2) client secrets are stored hashed. Django's default PBKDF2 costs
# about a second per check on a small machine; a cheap PBKDF2 keeps logins and token requests fast.
PASSWORD_HASHERS = ["idp.hashers.FastPBKDF2PasswordHasher"]

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False


def _keys():
    keys = DIR / "keys"
    active = _read("keys/signing.pem")
    inactive = [p.read_text() for p in sorted(keys.glob("inactive-*.pem"), reverse=True)] if keys.is_dir() else []
    return active, inactive


OIDC_RSA_PRIVATE_KEY, OIDC_RSA_PRIVATE_KEYS_INACTIVE = _keys()


def use_device_code_once(request):
    from idp.validators import use_device_code_once as hook  # not importable before apps load

    hook(request)


OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RSA_PRIVATE_KEY": OIDC_RSA_PRIVATE_KEY,
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": OIDC_RSA_PRIVATE_KEYS_INACTIVE,
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post"],
    "OIDC_JWKS_MAX_AGE_SECONDS": 60,
    "OAUTH2_VALIDATOR_CLASS": "idp.validators.Validator",
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "Your user name and groups",
        "email": "Your email address",
        "groups": "Your groups",
    },
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("OIDC_PROVIDER_ACCESS_TOKEN_SECONDS", "300")),
    "ID_TOKEN_EXPIRE_SECONDS": int(os.environ.get("OIDC_PROVIDER_ID_TOKEN_SECONDS", "300")),
    "REFRESH_TOKEN_EXPIRE_SECONDS": 3600,
    # RFC 9700 gates (DOT 3.x defaults them off and warns): S256 only, no implicit or password grant.
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    # RFC 8628 device authorization grant: the user enters the code at /o/device/.
    "OAUTH_DEVICE_VERIFICATION_URI": f"{ISSUER}/device/",
    "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": f"{ISSUER}/device/?user_code={{user_code}}",
    "DEVICE_FLOW_INTERVAL": int(os.environ.get("OIDC_PROVIDER_DEVICE_INTERVAL", "1")),
    "EXTRA_SERVER_KWARGS": {"post_token": [use_device_code_once]},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "INFO"},
        "oauth2_provider": {"handlers": ["stderr"], "level": "INFO"},
        "oauthlib": {"handlers": ["stderr"], "level": "INFO"},
    },
}
