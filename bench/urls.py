from django.urls import path

from bench import views
from project.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("bench/plain-profile/", views.plain_profile, name="bench-plain-profile"),
    path("bench/oauth-profile/", views.oauth_profile, name="bench-oauth-profile"),
    *site_urlpatterns,
]
