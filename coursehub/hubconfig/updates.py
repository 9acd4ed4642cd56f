"""Courses the hub updates itself (webhooks, auto_update, the staff's button) -> `course_updates`."""

from __future__ import annotations

from traitlets.config import Config

from coursehub.hubconfig.auth import Secrets
from coursehub.hubconfig.runtime import Runtime
from coursehub.settings import Settings


def apply_course_updates(settings: Settings, runtime: Runtime, c: Config, secrets: Secrets) -> None:
    """Webhook secrets (resolved here, at the edge) and what the hub's builder needs.

    Always handed on the local backend: staff and admins update courses from the home page.
    """
    hooks = {
        course.name: secrets(course.webhook_secret, f"course '{course.name}' webhook_secret")
        for course in settings.courses
        if course.webhook_secret
    }
    c.Authenticator.course_updates = {
        "webhook_secrets": hooks,
        "state_dir": str(runtime.paths.root),
        # The hub builds as `coursehub course update` does, from the same settings.
        "settings": settings.model_dump_json(),
    }
