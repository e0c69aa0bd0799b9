from django.urls import path

from bench import views
from project.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("bench/plain-profile/", views.plain_profile, name="bench-plain-profile"),
    *site_urlpatterns,
]
