import json

from django.http import HttpResponse, JsonResponse
from oauth2_provider.views import ConnectDiscoveryInfoView


class DiscoveryView(ConnectDiscoveryInfoView):
    """DOT's discovery document, adjusted to what this provider does: ID tokens are signed with
    RS256 only (DOT always lists HS256 as well), and the grants and the RFC 8628 device
    authorization endpoint are listed (DOT leaves them out of the OpenID document)."""

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        data = json.loads(response.content)
        data["id_token_signing_alg_values_supported"] = ["RS256"]
        data["grant_types_supported"] = [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ]
        data["device_authorization_endpoint"] = self._get_endpoint_url(request, "device-authorization")
        out = JsonResponse(data)
        out["Access-Control-Allow-Origin"] = "*"
        return out


def signed_in(request):
    """Where a sign-in lands when it was not on its way to an authorization request."""
    who = request.user.get_username() if request.user.is_authenticated else "nobody"
    return HttpResponse(f"<!doctype html><title>Signed in</title><p id=signed-in>Signed in as {who}.</p>")
