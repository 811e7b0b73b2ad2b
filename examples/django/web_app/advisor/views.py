"""
The site's own advisor: a streaming reply generator and the in-memory store of conversations.

This mirrors the real site's `web_app/advisor/views.py`: `generate_stream_response()` yields the
answer in pieces and `SESSION_STORE` keeps each conversation's turns. Here the "model" is a
deterministic, offline stand-in (no network, no randomness), so the example and its end-to-end test
behave the same everywhere; in the real site this is where the LLM call lives.

Nothing in this file knows about im-bridge. `im_bridge.py` (next to it) adapts it.
"""
import json
import threading
import time

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

# session id -> list of {"role": "user" | "assistant", "content": str}, oldest first.
SESSION_STORE = {}
SESSION_LOCK = threading.Lock()

# Seconds between pieces: slow enough that a reader sees the text arrive in pieces.
PIECE_DELAY_SECONDS = 0.02
PIECE_CHARACTERS = 6


def compose_answer(message, history):
    """The whole answer for `message` given the earlier turns (deterministic)."""
    earlier_user_turns = [turn["content"] for turn in history if turn.get("role") == "user"]
    lines = [
        "【顾问 Advisor】收到 / received: " + message,
        "我看到了 {} 条历史消息 / I see {} earlier messages.".format(len(history), len(history)),
    ]
    if earlier_user_turns:
        lines.append("你上一条说的是 / your previous message was: " + earlier_user_turns[-1])
    else:
        lines.append("这是我们对话的开始 / this is the start of our conversation.")
    return "\n".join(lines)


def generate_stream_response(message, session_id=None, history=None):
    """
    Yields the answer to `message` in pieces.

    `history` (earlier turns, oldest first) defaults to the session's turns in SESSION_STORE. When
    the generator finishes, the question and the answer are appended to that session.
    """
    if history is None:
        with SESSION_LOCK:
            history = list(SESSION_STORE.get(session_id, []))
    answer = compose_answer(message, history)
    for start in range(0, len(answer), PIECE_CHARACTERS):
        if start:
            time.sleep(PIECE_DELAY_SECONDS)
        yield answer[start : start + PIECE_CHARACTERS]
    if session_id is not None:
        with SESSION_LOCK:
            turns = SESSION_STORE.setdefault(session_id, [])
            turns.append({"role": "user", "content": message})
            turns.append({"role": "assistant", "content": answer})


def site_user_id(request):
    """
    The logged-in site user's id, or None. The real site uses its own login here, e.g.
    `str(request.user.pk) if request.user.is_authenticated else None`.
    """
    return request.session.get("user_id")


@require_POST
@csrf_exempt  # the demo login takes JSON from a test client; a real login form keeps CSRF on
def demo_login(request):
    """A stand-in for the site's login: `{"username": "…"}` becomes the session's user id."""
    try:
        username = json.loads(request.body or b"{}").get("username")
    except (ValueError, AttributeError):
        username = None
    if not isinstance(username, str) or not username.strip() or len(username) > 64:
        return JsonResponse({"error": {"code": "bad_request", "message": "username: 1-64 characters"}}, status=400)
    request.session.cycle_key()
    request.session["user_id"] = username.strip()
    # The page sends this back as X-CSRFToken on its POSTs (with the csrftoken cookie).
    return JsonResponse({"user_id": username.strip(), "csrf_token": get_token(request)})


@require_POST
@csrf_exempt  # demo only: the real site's chat endpoint sits behind its own login and CSRF token
def chat_stream(request):
    """The site's existing web chat endpoint: streams plain text for the logged-in user."""
    user_id = site_user_id(request)
    if user_id is None:
        return HttpResponse(status=401)
    try:
        message = json.loads(request.body)["message"]
    except (ValueError, KeyError, TypeError):
        return HttpResponse(status=400)
    pieces = generate_stream_response(message, session_id="web:" + user_id)
    return StreamingHttpResponse(pieces, content_type="text/plain; charset=utf-8")
