"""WSGI entry point (gunicorn web_app.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web_app.settings")
application = get_wsgi_application()
