from django.urls import path

from oauth_client import views
from oauth_client.backchannel import BackchannelLogoutView

app_name = "oauth_client"

# Each provider has its own URLs (/login/<name>/, /callback/<name>/, /backchannel-logout/<name>/); the short forms
# serve a site's only provider, or the one named "default" ("login/" shows a chooser when there are several).
urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/<slug:provider>/", views.login_view, name="login"),
    path("callback/", views.CallbackView.as_view(), name="callback"),
    path("callback/<slug:provider>/", views.CallbackView.as_view(), name="callback"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("backchannel-logout/", BackchannelLogoutView.as_view(), name="backchannel_logout"),
    path("backchannel-logout/<slug:provider>/", BackchannelLogoutView.as_view(), name="backchannel_logout"),
    # The client's public keys (private_key_jwt), for providers that fetch them from a registered jwks_uri.
    path("jwks.json", views.jwks_view, name="jwks"),
]
