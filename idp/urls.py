from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views import RPInitiatedLogoutView

from idp import views

urlpatterns = [
    path("", views.home, name="idp-home"),
    # RP-Initiated Logout 1.0 §2: OPs must accept POST at the end-session endpoint. A relying party's
    # cross-site POST cannot carry our CSRF token, and the id_token_hint it carries is the proof instead
    # (without a valid hint DOT still asks the user to confirm).
    path("o/logout/", csrf_exempt(RPInitiatedLogoutView.as_view())),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path(
        "accounts/logout/",
        auth_views.LogoutView.as_view(template_name="registration/logged_out.html"),
        name="logout",
    ),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the language switcher (POST, CSRF)
    *staticfiles_urlpatterns(),  # empty unless DEBUG; lets gunicorn serve the admin's CSS in development
]
