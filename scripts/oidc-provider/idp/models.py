from django.conf import settings
from django.db import models


class Profile(models.Model):
    """What Django's user model lacks for the ID token: whether the email address is verified."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idp_profile")
    email_verified = models.BooleanField(default=True)
