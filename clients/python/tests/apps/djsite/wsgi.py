"""WSGI entry point of the test project (wrapped in wsgiref's validator)."""

import os
import warnings
from wsgiref.validate import WSGIWarning, validator

from django.core.wsgi import get_wsgi_application

warnings.simplefilter("error", WSGIWarning)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

application = validator(get_wsgi_application())
