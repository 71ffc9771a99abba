from django.core.management.base import BaseCommand
from django.db import transaction
from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = (
        "Create or update a confidential client: authorization-code grant (and the RFC 8628 device "
        "grant), RS256 ID tokens, no consent screen. The secret is stored hashed; send it in plain "
        "text with client_secret_basic or client_secret_post."
    )

    def add_arguments(self, parser):
        parser.add_argument("client_id")
        parser.add_argument("--secret", required=True)
        parser.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris")
        parser.add_argument("--name", default=None)

    @transaction.atomic
    def handle(self, *args, client_id, secret, redirect_uris, name, **options):
        Application = get_application_model()
        app = Application.objects.filter(client_id=client_id).first()
        created = app is None
        if created:
            app = Application(client_id=client_id)
        app.name = name or client_id
        app.client_type = Application.CLIENT_CONFIDENTIAL
        app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
        app.redirect_uris = " ".join(redirect_uris)
        app.algorithm = Application.RS256_ALGORITHM
        app.skip_authorization = True
        app.hash_client_secret = True
        app.client_secret = secret  # hashed by the field as it is saved
        app.full_clean(exclude=["client_secret", "user"])
        app.save()
        self.stdout.write(f"{'created' if created else 'updated'} client {client_id}")
