from django.urls import path

from . import im_bridge, views

urlpatterns = [
    # The site's own pages and API (stand-ins for what the real site already has).
    path("login", views.demo_login),
    path("api/chat/stream", views.chat_stream),
    # What connecting im-bridge adds: two views.
    path("api/im-bridge/generate", im_bridge.im_bridge_generate),
    path("api/im/token", im_bridge.im_token),
]
