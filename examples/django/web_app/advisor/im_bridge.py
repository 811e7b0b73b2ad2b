"""
The two views that connect the site to im-bridge (docs/django.md walks through them):

1. `im_bridge_generate`: im-bridge's `http` generator POSTs each user message here
   (GENERATOR_HTTP_URL); the view streams the site's own `generate_stream_response()` back as
   server-sent events, the format docs/generators.md describes.
2. `im_token`: the browser asks the site for its NIM login; the site proves who the user is to
   im-bridge's `/im/register` with a short-lived JWT and hands back accid + token (+ expires_at).
"""
import base64
import hmac
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .jwt import user_token
from .views import SESSION_LOCK, SESSION_STORE, generate_stream_response, site_user_id


def _from_im_bridge(request):
    """im-bridge sends the credentials of GENERATOR_HTTP_URL as HTTP Basic authentication."""
    if not settings.IM_BRIDGE_SECRET:
        return False  # fail closed: no secret configured means nobody may call this view
    expected = "Basic " + base64.b64encode(("im-bridge:" + settings.IM_BRIDGE_SECRET).encode()).decode()
    return hmac.compare_digest(request.headers.get("Authorization", ""), expected)


def _valid_history(history):
    return isinstance(history, list) and all(
        isinstance(turn, dict)
        and turn.get("role") in ("user", "assistant")
        and isinstance(turn.get("content"), str)
        for turn in history
    )


@csrf_exempt  # a server-to-server call without a browser session; authenticated just below
@require_POST
def im_bridge_generate(request):
    if not _from_im_bridge(request):
        return HttpResponse(status=401)
    try:
        payload = json.loads(request.body)
        message = payload["message"]
        history = payload["history"]
        accid = payload["accid"]
    except (ValueError, KeyError, TypeError):
        return HttpResponse(status=400)
    if not isinstance(message, str) or not isinstance(accid, str) or not _valid_history(history):
        return HttpResponse(status=400)

    # im-bridge owns the conversation (it stores it and clears it on /reset) and sends the recent
    # turns with every message; the site's store mirrors them so generate_stream_response() reads
    # them exactly as it reads a web chat's session.
    session_id = "im:" + accid
    with SESSION_LOCK:
        SESSION_STORE[session_id] = [{"role": turn["role"], "content": turn["content"]} for turn in history]

    def events():
        try:
            for piece in generate_stream_response(message, session_id=session_id):
                if piece:
                    yield "data: " + json.dumps({"delta": piece}, ensure_ascii=False) + "\n\n"
            yield "data: [DONE]\n\n"
        except Exception as error:  # the 200 is already sent: report the failure in the stream
            yield "event: error\ndata: " + json.dumps({"message": str(error)}) + "\n\n"

    response = StreamingHttpResponse(events(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass pieces on as they come
    return response


@require_POST  # CSRF stays on: the browser calls this with the site's session cookie
def im_token(request):
    """The logged-in user's NIM login: `{"accid", "token", "bot", "expires_at"}` from im-bridge."""
    user_id = site_user_id(request)
    if user_id is None:
        return JsonResponse({"error": {"code": "unauthorized", "message": "log in first"}}, status=401)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = {}
    refresh = isinstance(body, dict) and body.get("refresh") is True

    jwt = user_token(user_id, settings.IM_BRIDGE_JWT_SECRET, settings.IM_BRIDGE_JWT_LIFETIME_SECONDS)
    bridge_request = urllib.request.Request(
        settings.IM_BRIDGE_URL + "/im/register",
        data=json.dumps({"user_id": user_id, "refresh": refresh}).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + jwt},
        method="POST",
    )
    try:
        with urllib.request.urlopen(bridge_request, timeout=10) as answer:
            registration = json.loads(answer.read())
    except urllib.error.HTTPError as error:
        # im-bridge's error body is JSON {"error": {"code", "message"}}: pass it on with its status.
        try:
            detail = json.loads(error.read())
        except ValueError:
            detail = {"error": {"code": "im_bridge_error", "message": "im-bridge answered %d" % error.code}}
        return JsonResponse(detail, status=error.code if 400 <= error.code < 600 else 502)
    except (urllib.error.URLError, TimeoutError, ValueError):
        return JsonResponse({"error": {"code": "im_bridge_unreachable", "message": "im-bridge is unreachable"}}, status=502)

    response = JsonResponse(
        {key: registration.get(key) for key in ("accid", "token", "bot", "expires_at")},
    )
    response["Cache-Control"] = "no-store"  # a login token: no cache may keep it
    return response
