from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse


def home(request: HttpRequest) -> HttpResponse:
    discovery_url = reverse("oauth2_provider:oidc-connect-discovery-info")
    return render(request, "idp/home.html", {"discovery_url": discovery_url})
