from django.urls import path

from accounts import views
from oauth_client import SessionListView

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("account/", views.profile, name="profile"),
    path("account/sensitive/", views.sensitive, name="sensitive"),
    path("account/sessions/", SessionListView.as_view(), name="sessions"),
    path("account/userinfo.json", views.userinfo_json, name="userinfo_json"),
]
