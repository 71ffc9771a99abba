from oauth2_provider.models import AbstractApplication, get_device_grant_model
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError
from oauth2_provider.oauth2_validators import OAuth2Validator

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


def _email_verified(user):
    profile = getattr(user, "idp_profile", None)
    return True if profile is None else bool(profile.email_verified)


def _groups(user):
    return sorted(user.groups.values_list("name", flat=True))


class Validator(OAuth2Validator):
    # Which scope releases each claim. `groups` comes with `profile` (so `openid profile email`
    # is enough for every claim) and also with a scope of its own, `groups`.
    oidc_claim_scope = dict(OAuth2Validator.oidc_claim_scope, groups="profile")
    extra_claim_scopes = {"groups": {"groups"}}

    # Request-agnostic (no `request` parameter): DOT then lists these in the discovery
    # document's claims_supported, and calls each value with the oauthlib request.
    def get_additional_claims(self):
        return {
            "preferred_username": lambda r: r.user.get_username(),
            "email": lambda r: r.user.email,
            "email_verified": lambda r: _email_verified(r.user),
            "groups": lambda r: _groups(r.user),
        }

    def get_oidc_claims(self, token, token_handler, request):
        claims = super().get_oidc_claims(token, token_handler, request)
        granted = set(request.scopes or [])
        for name, value in self.get_claim_dict(request).items():
            if name not in claims and self.extra_claim_scopes.get(name, set()) & granted:
                claims[name] = value(request) if callable(value) else value
        return claims

    # DOT keeps one grant type per client. The fixture clients are registered for the
    # authorization-code grant; let them use the device authorization grant (RFC 8628) too.
    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        if grant_type == DEVICE_CODE and request.client.allows_grant_type(
            AbstractApplication.GRANT_AUTHORIZATION_CODE, AbstractApplication.GRANT_DEVICE_CODE
        ):
            return True
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)


def use_device_code_once(request):
    """oauthlib post-token hook of the device grant (settings: EXTRA_SERVER_KWARGS["post_token"]).

    Runs after the client, grant type and scopes were checked, just before the token is made. DOT
    leaves an approved device code `authorized`, so every later poll would get a fresh token; here
    the code is used up (marked expired) by the one token response it buys.
    """
    model = get_device_grant_model()
    used = model.objects.filter(
        device_code=request.device_code, client_id=request.client.client_id, status=model.AUTHORIZED
    ).update(status=model.EXPIRED)
    if used != 1:
        raise InvalidGrantError("The device code was already used.", request=request)
