from django.urls import path

from oauth_client import views
from oauth_client.backchannel import BackchannelLogoutView

app_name = "oauth_client"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("callback/", views.CallbackView.as_view(), name="callback"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("backchannel-logout/", BackchannelLogoutView.as_view(), name="backchannel_logout"),
]
