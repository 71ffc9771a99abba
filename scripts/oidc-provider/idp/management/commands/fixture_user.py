from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from idp.models import Profile


def yes_no(value):
    v = value.strip().lower()
    if v in ("yes", "true", "1", "on"):
        return True
    if v in ("no", "false", "0", "off"):
        return False
    raise CommandError(f"expected yes or no, got {value!r}")


class Command(BaseCommand):
    help = "Create or update a user. --groups replaces the user's groups (creating groups as needed)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--groups", default=None, help="comma-separated group names; '' for none")
        parser.add_argument("--email-verified", default="yes", type=yes_no, metavar="yes|no")
        parser.add_argument("--rename-to", default=None, help="give the existing user a new username (same sub)")

    @transaction.atomic
    def handle(self, *args, username, password, email, groups, email_verified, rename_to, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if rename_to:
            user.username = rename_to
        user.email = email
        user.is_active = True
        user.set_password(password)
        user.save()
        Profile.objects.update_or_create(user=user, defaults={"email_verified": email_verified})
        if groups is not None:
            names = [g.strip() for g in groups.split(",") if g.strip()]
            user.groups.set([Group.objects.get_or_create(name=n)[0] for n in names])
        self.stdout.write(f"{'created' if created else 'updated'} user {user.username} (sub {user.pk})")
