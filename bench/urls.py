from django.urls import path

from bench import views
from project.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("bench/plain-home/", views.plain_home, name="bench-plain-home"),
    path("bench/oauth-home/", views.oauth_home, name="bench-oauth-home"),
    path("bench/plain-profile/", views.plain_profile, name="bench-plain-profile"),
    path("bench/oauth-profile/", views.oauth_profile, name="bench-oauth-profile"),
    *site_urlpatterns,
]
