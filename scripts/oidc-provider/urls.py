from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from idp.views import DiscoveryView, signed_in

urlpatterns = [
    # Ahead of DOT's own route of the same path, which it shadows.
    re_path(r"^o/\.well-known/openid-configuration/?$", DiscoveryView.as_view()),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/done/", signed_in, name="signed-in"),
]
