"""
Settings of the example site: a minimal Django project laid out like the real one
(`web_app/advisor/views.py` holds the site's own streaming generator).

Everything that differs between machines comes from the environment, so the same files run on a
laptop, in CI and behind gunicorn:

    DJANGO_SECRET_KEY      Django's own secret (signs the session cookie)
    DJANGO_DEBUG           "1" for development error pages (default off)
    IM_BRIDGE_URL          where im-bridge listens, e.g. http://127.0.0.1:8000
    IM_BRIDGE_JWT_SECRET   the HS256 secret shared with im-bridge's IM_AUTH_JWT_SECRET
    IM_BRIDGE_SECRET       the password im-bridge sends (HTTP Basic) when it calls the generator view;
                           the same value is in im-bridge's GENERATOR_HTTP_URL
"""
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    raise RuntimeError("set DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

# No database: the example keeps conversations in memory (SESSION_STORE) like the site it mirrors,
# and the demo login lives in a signed cookie.
DATABASES = {}
INSTALLED_APPS = [
    "django.contrib.sessions",
    "advisor",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_HTTPONLY = True
ROOT_URLCONF = "web_app.urls"
WSGI_APPLICATION = "web_app.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"

IM_BRIDGE_URL = os.environ.get("IM_BRIDGE_URL", "http://127.0.0.1:8000").rstrip("/")
IM_BRIDGE_JWT_SECRET = os.environ.get("IM_BRIDGE_JWT_SECRET", "")
IM_BRIDGE_SECRET = os.environ.get("IM_BRIDGE_SECRET", "")
# How long the JWT that proves "this is user X" to /im/register lives. It is used once, at once.
IM_BRIDGE_JWT_LIFETIME_SECONDS = 300

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "WARNING")},
}
